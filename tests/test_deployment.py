"""docker-compose.yml, checked without Docker: each Redis service's flags run
on a real redis-server, its health check runs as written, and the app
service's command serves /health/redis against them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from .processes import ROOT, Gunicorn, http
from .servers import RedisServer, free_port, require

PASSWORD = "compose-test-password-0451"
JWT_KEY = "compose-test-jwt-key-that-is-long-enough-for-hs256"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _substitute(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:?message} and ${NAME:-default}."""

    def value(match: re.Match[str]) -> str:
        name, how, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if how.endswith("?"):
            raise KeyError(f"{name}: {rest}")
        return rest

    return re.sub(r"\$\{(\w+)(:?[?-])?([^}]*)\}", value, text)


def _redis_from_compose(name: str, tmp_path: Path) -> RedisServer:
    service = _compose()["services"][name]
    command = [_substitute(str(part), {"REDIS_PASSWORD": PASSWORD}) for part in service["command"]]
    assert command[0] == "redis-server"
    # The service's own flags, exactly, plus where this machine runs it.
    server = RedisServer(tmp_path / name, *command[1:], password=PASSWORD, exact=True)
    return server.start()


def _run_healthcheck(name: str, port: int, tmp_path: Path, password: str | None) -> int:
    """The service's health check as written, with redis-cli pointed at the
    test server's port instead of the container's 6379."""
    test = _compose()["services"][name]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    shim = tmp_path / f"bin-{name}"
    shim.mkdir(exist_ok=True)
    (shim / "redis-cli").write_text(f'#!/bin/sh\nexec {require("redis-cli")} -p {port} "$@"\n')
    (shim / "redis-cli").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}"}
    if password:
        env["REDISCLI_AUTH"] = password
    return subprocess.run(["sh", "-c", test[1]], env=env, timeout=10).returncode


def test_the_password_is_required() -> None:
    redis_service = _compose()["services"]["redis"]
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        _substitute(" ".join(redis_service["command"]), {})


def test_main_redis_runs_with_the_compose_flags(tmp_path: Path) -> None:
    server = _redis_from_compose("redis", tmp_path)
    try:
        config = server.admin().config_get("*")
        assert config["requirepass"] == PASSWORD
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["maxmemory"] == str(256 * 1024 * 1024)
        assert config["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        assert _run_healthcheck("redis", server.port, tmp_path, PASSWORD) == 0
        assert _run_healthcheck("redis", server.port, tmp_path, None) != 0
    finally:
        server.stop()


def test_cache_redis_runs_with_the_compose_flags(tmp_path: Path) -> None:
    server = _redis_from_compose("redis-cache", tmp_path)
    try:
        config = server.admin().config_get("*")
        assert config["requirepass"] == PASSWORD
        assert (config["appendonly"], config["save"]) == ("no", "")
        assert config["maxmemory-policy"] == "allkeys-lru"
        assert _run_healthcheck("redis-cache", server.port, tmp_path, PASSWORD) == 0
    finally:
        server.stop()


def test_app_service_command_serves_health(tmp_path: Path) -> None:
    require("redis-cli")
    compose = _compose()
    main = _redis_from_compose("redis", tmp_path)
    cache = _redis_from_compose("redis-cache", tmp_path)
    app = compose["services"]["app"]
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    port = free_port()
    env = {
        name: _substitute(str(value), {"REDIS_PASSWORD": PASSWORD, "JWT_SECRET_KEY": JWT_KEY})
        for name, value in app["environment"].items()
    }
    env["REDIS_URL"] = env["REDIS_URL"].replace("@redis:6379", f"@127.0.0.1:{main.port}")
    env["REDIS_CACHE_URL"] = env["REDIS_CACHE_URL"].replace(
        "@redis-cache:6379", f"@127.0.0.1:{cache.port}"
    )
    env["BIND"] = f"127.0.0.1:{port}"
    command = app["command"]
    assert command[0] == "gunicorn"
    gunicorn = Gunicorn(command[-1], env, *command[1:-1], log=tmp_path / "app.log", port=port)
    try:
        status, _, body = http(f"http://127.0.0.1:{port}/health/redis")
        assert status == 200, body
        check = app["healthcheck"]["test"]
        assert check[:2] == ["CMD", "python"]
        code = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in check[2:]]
        assert subprocess.run([sys.executable, *code], timeout=10).returncode == 0
    finally:
        gunicorn.stop()
        main.stop()
        cache.stop()
    assert PASSWORD not in (tmp_path / "app.log").read_text()


def test_the_image_runs_what_the_app_service_runs() -> None:
    """No engine here to build it: check the Dockerfile against compose."""
    import json

    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == _compose()["services"]["app"]["command"]
    for needed in ("[jwt,", "gunicorn", "example_app", "wsgi.py", "gunicorn.conf.py"):
        assert needed in dockerfile
