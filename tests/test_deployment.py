"""docker-compose.yml, checked without Docker: each Redis service's flags run
on a real redis-server, its health check runs as written, and the app
service's command serves /health/redis against them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from .processes import ROOT, Gunicorn, http
from .servers import RedisServer, free_port, require

PASSWORD = "compose-test-password-0451"
JWT_KEY = "compose-test-jwt-key-that-is-long-enough-for-hs256"
DEMO_PASSWORD = "compose-demo-password-9c2e"
METRICS_TOKEN = "compose-metrics-token-long-enough-for-the-app-77"
SECRETS = {
    "REDIS_PASSWORD": PASSWORD,
    "JWT_SECRET_KEY": JWT_KEY,
    "DEMO_PASSWORD": DEMO_PASSWORD,
    "REDIS_METRICS_TOKEN": METRICS_TOKEN,
}


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


def _app_env(env: dict[str, str], main_port: int, cache_port: int, port: int) -> dict[str, str]:
    """The app service's environment as compose would build it from ``env``
    (the .env file), pointed at this machine's servers and port."""
    app = _compose()["services"]["app"]
    built = {name: _substitute(str(value), env) for name, value in app["environment"].items()}
    built["REDIS_URL"] = built["REDIS_URL"].replace("@redis:6379", f"@127.0.0.1:{main_port}")
    built["REDIS_CACHE_URL"] = built["REDIS_CACHE_URL"].replace(
        "@redis-cache:6379", f"@127.0.0.1:{cache_port}"
    )
    built["BIND"] = f"127.0.0.1:{port}"
    # The service's tmpfs, here a fresh directory.
    shared = Path(tempfile.mkdtemp(prefix="fogredis-metrics-"))
    assert built["PROMETHEUS_MULTIPROC_DIR"] in app["tmpfs"]
    built["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    # Nothing of the test run's own environment may make the app lenient.
    built["FLASK_DEBUG"] = ""
    return built


def _start_app(env: dict[str, str], log: Path, port: int) -> Gunicorn:
    command = _compose()["services"]["app"]["command"]
    assert command[0] == "gunicorn"
    return Gunicorn(command[-1], env, *command[1:-1], log=log, port=port)


def _run_app_healthcheck(port: int) -> int:
    check = _compose()["services"]["app"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    code = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in check[2:]]
    return subprocess.run([sys.executable, *code], timeout=10).returncode


def test_app_service_command_serves_health(tmp_path: Path) -> None:
    require("redis-cli")
    main = _redis_from_compose("redis", tmp_path)
    cache = _redis_from_compose("redis-cache", tmp_path)
    app = _compose()["services"]["app"]
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    port = free_port()
    gunicorn = _start_app(
        _app_env(SECRETS, main.port, cache.port, port), tmp_path / "app.log", port
    )
    try:
        status, _, body = http(f"http://127.0.0.1:{port}/health/redis")
        assert status == 200, body
        assert _run_app_healthcheck(port) == 0
        assert gunicorn.request("/metrics")[0] == 401
        scraped = gunicorn.request("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped[0] == 200
        login = {"username": "admin", "password": DEMO_PASSWORD}
        assert gunicorn.request("/auth/login", "POST", login)[0] == 200
        default = {"username": "admin", "password": "demo-password"}
        assert gunicorn.request("/auth/login", "POST", default)[0] == 401
        # Liveness is the process alone: Redis going away must not make
        # Docker replace the container.
        main.stop()
        cache.stop()
        deadline = time.monotonic() + 10  # past the health check's cached result
        while http(f"http://127.0.0.1:{port}/health/redis")[0] != 503:
            assert time.monotonic() < deadline, "/health/redis still 200 with Redis down"
            time.sleep(0.2)
        assert _run_app_healthcheck(port) == 0
    finally:
        gunicorn.stop()
        main.stop()
        cache.stop()
    log = (tmp_path / "app.log").read_text()
    for secret in SECRETS.values():
        assert secret not in log


def test_the_app_service_needs_every_secret() -> None:
    environment = " ".join(str(v) for v in _compose()["services"]["app"]["environment"].values())
    for name in ("JWT_SECRET_KEY", "DEMO_PASSWORD", "REDIS_METRICS_TOKEN"):
        with pytest.raises(KeyError, match=name):
            _substitute(environment, {**SECRETS, name: ""})


def test_the_app_is_published_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for published in service.get("ports", []):
            assert str(published).startswith("127.0.0.1:"), (name, published)
    assert _compose()["services"]["app"]["ports"]


def test_the_app_service_refuses_the_env_example_values(tmp_path: Path) -> None:
    """A .env copied from .env.example and not edited: the app does not
    start, and says which variables to set without repeating their values."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    port = free_port()
    env = _app_env(example, free_port(), free_port(), port)
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        _start_app(env, tmp_path / "app.log", port).stop()
    log = (tmp_path / "app.log").read_text()
    for name in ("JWT_SECRET_KEY", "DEMO_PASSWORD", "REDIS_METRICS_TOKEN"):
        assert name in log
        assert example[name] not in log


def test_make_run_starts_the_demo_with_known_credentials(tmp_path: Path) -> None:
    """`make run` from a fresh checkout, no setup: debug mode, the demo
    password, on loopback. Runs the recipe's server line as make prints it,
    on a free port."""
    require("make")
    printed = subprocess.run(
        ["make", "-s", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in printed.splitlines() if "gunicorn" in line and "wsgi:app" in line)
    assert "FLASK_DEBUG=1" in line
    port = free_port()
    line = line.replace(
        ".venv/bin/gunicorn", f"{sys.executable} -m gunicorn --bind 127.0.0.1:{port}"
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {*SECRETS, "FLASK_DEBUG", "REDIS_URL", "REDIS_CACHE_URL"}
    }
    env["REPORTS_DATABASE"] = str(tmp_path / "reports.sqlite3")
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", f"exec env {line}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, _, _ = http(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, (tmp_path / "run.log").read_text()
        login = {"username": "admin", "password": "demo-password"}
        assert http(f"http://127.0.0.1:{port}/auth/login", "POST", login)[0] == 200
    finally:
        process.terminate()
        process.wait(15)


def test_the_image_runs_what_the_app_service_runs() -> None:
    """No engine here to build it: check the Dockerfile against compose."""
    import json

    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == _compose()["services"]["app"]["command"]
    for needed in ("[jwt,", "gunicorn", "example_app", "wsgi.py", "gunicorn.conf.py"):
        assert needed in dockerfile


def test_debug_mode_refuses_an_address_other_hosts_reach(tmp_path: Path) -> None:
    env = {**os.environ, "FLASK_DEBUG": "1", "PYTHONPATH": str(ROOT)}
    for name in (*SECRETS, "REDIS_URL", "REDIS_CACHE_URL"):
        env.pop(name, None)
    env["REPORTS_DATABASE"] = str(tmp_path / "reports.sqlite3")
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    refused = subprocess.run(
        [*command, "--bind", f"0.0.0.0:{free_port()}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "Debug mode serves known demo credentials" in refused.stderr
