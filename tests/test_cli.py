"""``flask fogredis ...`` against real redis-servers, Redis down included."""

from __future__ import annotations

import time

import click
import pytest
from click.testing import Result
from flask import Flask
from flask_jwt_extended import create_access_token, decode_token

from flask_fogredis import FogRedis
from flask_fogredis._connections import translated
from flask_fogredis.cli import command_state, fogredis_cli, reported_errors

from .conftest import ServerFactory, make_app
from .jwt_helpers import bearer, jwt_app
from .servers import RedisServer, free_port

PASSWORD = "cli-secret-pw"
DAYS_30 = 30 * 24 * 3600


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["fogredis", *args])


@pytest.fixture
def secured(redis_factory: ServerFactory) -> RedisServer:
    return redis_factory(password=PASSWORD)


def test_ping(secured: RedisServer) -> None:
    app = make_app(REDIS_URL=secured.url)
    FogRedis(app)
    result = run(app, "ping")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"PONG from redis://:***@127.0.0.1:{secured.port}/0 in ")
    assert PASSWORD not in result.output


def test_info(secured: RedisServer) -> None:
    admin = secured.admin()
    admin.set("a", 1)
    admin.set("b", 2)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    app = make_app(REDIS_URL=secured.url, REDIS_POOL_SIZE=7)
    FogRedis(app)
    result = run(app, "info")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    assert lines["url"].strip() == f"redis://:***@127.0.0.1:{secured.port}/0"
    version = admin.info("server")["redis_version"]
    assert lines["server"].strip().startswith(f"Redis {version} (standalone, master), up ")
    assert "maxmemory-policy allkeys-lru" in lines["memory"]
    assert "max no limit" in lines["memory"]
    assert lines["keys"].strip() == "db0=2"
    assert lines["evicted keys"].strip() == "0"
    assert lines["pool"].strip().startswith("7 connections per process")
    assert PASSWORD not in result.output


def test_info_on_the_embedded_store() -> None:
    app = make_app(REDIS_URL="memory://")
    FogRedis(app)
    result = run(app, "info")
    assert result.exit_code == 0, result.output
    assert "embedded in-process store" in result.output


def test_revoke_a_jti_then_its_token_is_refused(redis_server: RedisServer) -> None:
    app, _, _ = jwt_app(redis_server.url)
    with app.app_context():
        token = create_access_token("ada")
        jti = decode_token(token)["jti"]
    client = app.test_client()
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    result = run(app, "revoke", jti)
    assert result.exit_code == 0, result.output
    assert f"Revoked token {jti} for 30 days" in result.output
    assert client.get("/protected", headers=bearer(token)).status_code == 401
    # As long as any token of the app can live (the 30-day refresh tokens).
    assert DAYS_30 - 60 < redis_server.admin().ttl(f"fog:jwt:jti:{jti}") <= DAYS_30


def test_revoke_for_a_given_time(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    FogRedis(app)
    result = run(app, "revoke", "some-jti", "--seconds", "90")
    assert result.exit_code == 0, result.output
    assert "for 0:01:30" in result.output
    assert 0 < redis_server.admin().ttl("fog:jwt:jti:some-jti") <= 90
    assert run(app, "revoke", "x", "--seconds", "0").exit_code == 2


def test_revoke_user_logs_them_out_everywhere(redis_server: RedisServer) -> None:
    app, _, _ = jwt_app(redis_server.url)
    with app.app_context():
        tokens = [create_access_token("ada"), create_access_token("ada")]
        other = create_access_token("bob")
    result = run(app, "revoke-user", "ada")
    assert result.exit_code == 0, result.output
    assert "Revoked every token of ada issued up to now for 30 days" in result.output
    client = app.test_client()
    for token in tokens:
        assert client.get("/protected", headers=bearer(token)).status_code == 401
    assert client.get("/protected", headers=bearer(other)).status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["ping"],
        ["info"],
        ["revoke", "jti"],
        ["revoke-user", "ada"],
        ["clear-cache", "ns"],
        ["warm", "/"],
    ],
)
def test_every_command_exits_3_when_redis_is_down(secured: RedisServer, args: list[str]) -> None:
    app = make_app(REDIS_URL=secured.url)
    FogRedis(app)
    secured.kill()
    start = time.monotonic()
    result = run(app, *args)
    assert time.monotonic() - start < 5
    assert result.exit_code == 3, result.output
    assert result.output.startswith("Error: Redis at redis://:***@127.0.0.1:")
    assert PASSWORD not in result.output
    assert "Traceback" not in result.output


def test_ping_of_an_unresponsive_server_answers_within_the_bound(silent_port: int) -> None:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{silent_port}/0")
    FogRedis(app)
    start = time.monotonic()
    result = run(app, "ping")
    assert time.monotonic() - start < 1.5
    assert result.exit_code == 3
    assert "did not answer PING within 1 s." in result.output


@pytest.mark.parametrize(
    "auth", ["", ":not-the-password-at-all@", "someone:not-the-password-at-all@"]
)
@pytest.mark.parametrize("args", [["ping"], ["info"], ["revoke", "jti"], ["revoke-user", "ada"]])
def test_refused_credentials_are_named_as_such(
    secured: RedisServer, auth: str, args: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(REDIS_URL=f"redis://{auth}127.0.0.1:{secured.port}/0")
    FogRedis(app)
    result = run(app, *args)
    assert result.exit_code == 3, result.output
    assert "refused the credentials" in result.output
    assert "check the" in result.output and "password in REDIS_URL" in result.output
    assert "did not answer" not in result.output and "timeout" not in result.output
    for text in (result.output, caplog.text):
        assert "not-the-password-at-all" not in text and PASSWORD not in text


@pytest.mark.parametrize(
    "args",
    [["revoke", "jti"], ["revoke-user", "ada"], ["clear-cache", "ns"], ["warm", "/"]],
)
@pytest.mark.parametrize("url", ["memory://", "memory://shared"])
def test_writing_to_the_embedded_store_exits_1_saying_why(url: str, args: list[str]) -> None:
    app = make_app(REDIS_URL=url)
    FogRedis(app)
    result = run(app, *args)
    assert result.exit_code == 1, result.output
    assert "memory://" in result.output and "process" in result.output
    assert "Revoked" not in result.output and "Removed" not in result.output


def test_the_cache_on_the_embedded_store_is_refused_too(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_CACHE_URL="memory://")
    FogRedis(app)
    result = run(app, "clear-cache", "ns")
    assert result.exit_code == 1
    assert "REDIS_CACHE_URL is memory://" in result.output
    assert run(app, "revoke", "jti").exit_code == 0


def test_a_refused_command_exits_1(redis_server: RedisServer) -> None:
    redis_server.admin().replicaof("127.0.0.1", str(free_port()))
    app = make_app(REDIS_URL=redis_server.url)
    FogRedis(app)
    result = run(app, "revoke", "jti")
    assert result.exit_code == 1, result.output
    assert "ReadOnlyError" in result.output


def test_prefix_chooses_the_redis(redis_factory: ServerFactory) -> None:
    main, cache = redis_factory(), redis_factory()
    app = make_app(REDIS_URL=main.url, CACHE_REDIS_URL=cache.url)
    FogRedis(app)
    FogRedis(app, config_prefix="CACHE_REDIS")
    assert f":{main.port}/" in run(app, "ping").output
    result = run(app, "--prefix", "CACHE_REDIS", "ping")
    assert result.exit_code == 0
    assert f":{cache.port}/" in result.output
    unknown = run(app, "--prefix", "NOPE", "ping")
    assert unknown.exit_code == 2
    assert "CACHE_REDIS, REDIS" in unknown.output


def test_the_only_fogredis_is_chosen_whatever_its_prefix(redis_server: RedisServer) -> None:
    app = make_app(STORE_URL=redis_server.url)
    FogRedis(app, config_prefix="STORE")
    assert run(app, "ping").exit_code == 0


def test_other_modules_can_add_commands_to_the_group(secured: RedisServer) -> None:
    @fogredis_cli.command("count-keys")
    def count_keys() -> None:
        state = command_state()
        with reported_errors(), translated(state.settings):
            click.echo(f"{state.client.dbsize()} keys")

    try:
        app = make_app(REDIS_URL=secured.url)
        fog = FogRedis(app)
        with app.app_context():
            fog.set("k", "v")
        up = run(app, "count-keys")
        assert (up.exit_code, up.output) == (0, "1 keys\n")
        secured.kill()
        down = run(app, "count-keys")
        assert down.exit_code == 3
        assert down.output.startswith("Error: Redis at redis://:***@")
        assert PASSWORD not in down.output
    finally:
        fogredis_cli.commands.pop("count-keys", None)


def test_clear_cache(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    with app.app_context():
        for n in range(3):
            fog.cache_set("users", str(n), "v")
        fog.cache_set("other", "0", "kept")
    result = run(app, "clear-cache", "users")
    assert (result.exit_code, result.output) == (
        0,
        "Removed 3 entries from cache namespace 'users'.\n",
    )
    with app.app_context():
        assert fog.cache_get("other", "0") == "kept"
    assert run(app, "clear-cache", "").exit_code == 1


def test_warm(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    calls: list[str] = []

    @app.get("/report")
    @fog.cached("reports")
    def report() -> str:
        calls.append("computed")
        return "report"

    result = run(app, "warm", "/report", "/absent")
    assert result.exit_code == 1
    assert "200 /report" in result.output and "404 /absent" in result.output
    assert calls == ["computed"]
    assert app.test_client().get("/report").headers["X-Cache"] == "HIT"
    assert run(app, "warm", "/report").exit_code == 0
    assert calls == ["computed", "computed"]
