"""Revocation against real redis-servers and real gunicorn workers."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import redis
from flask_jwt_extended import create_access_token
from werkzeug.test import TestResponse

from flask_fogredis import EvictionPolicyError, FogRedis, RedisCommandError, RedisUnavailableError

from .conftest import ServerFactory
from .jwt_helpers import bearer, jwt_app
from .processes import Gunicorn, workers_answering
from .servers import RedisServer

PASSWORD = "hunter2-but-longer"


def _commandstats(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_the_check_is_one_round_trip(redis_server: RedisServer) -> None:
    app, _fog, _ = jwt_app(redis_server.url)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
    assert client.get("/protected", headers=bearer(token)).status_code == 200  # warm up
    admin = redis_server.admin()
    before = _commandstats(admin)
    for _ in range(5):
        assert client.get("/protected", headers=bearer(token)).status_code == 200
    after = _commandstats(admin)
    sent = {name: after[name] - before.get(name, 0) for name in after}
    sent = {name: calls for name, calls in sent.items() if calls and name != "info"}
    assert sent == {"mget": 5}


def test_revoked_on_one_worker_refused_by_every_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = Gunicorn(
        "tests.apps.jwt_app:app",
        {"REDIS_URL": redis_server.url},
        "--workers",
        "3",
        log=tmp_path / "gunicorn.log",
    )
    try:
        _, _, body = server.request("/login/alice", "POST")
        token = json.loads(body)["token"]
        assert workers_answering(server, "/protected", bearer(token), 200) >= 2
        status, _, body = server.request("/logout", "POST", headers=bearer(token))
        assert (status, json.loads(body)) == (200, {"revoked": True})
        assert workers_answering(server, "/protected", bearer(token), 401, requests=60) >= 2
    finally:
        server.stop()


def test_redis_down_fails_closed_with_503(redis_factory: ServerFactory) -> None:
    server = redis_factory(password=PASSWORD)
    app, fog, _ = jwt_app(server.url, REDIS_JWT_RETRY_AFTER=7)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    server.kill()
    response = client.get("/protected", headers=bearer(token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.is_json
    text = response.get_data(as_text=True)
    for secret in (PASSWORD, "127.0.0.1", str(server.port), "redis://"):
        assert secret not in text
    with app.app_context(), pytest.raises(RedisUnavailableError):
        fog.revoke_token(token)
    with app.app_context(), pytest.raises(RedisUnavailableError):
        fog.revoke_all_tokens("alice")
    server.start()
    assert client.get("/protected", headers=bearer(token)).status_code == 200


def test_redis_down_fails_open_when_configured(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app, _, _ = jwt_app(redis_server.url, REDIS_JWT_FAIL_OPEN=True)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        for _ in range(20):
            assert client.get("/protected", headers=bearer(token)).status_code == 200
    warnings = [r for r in caplog.records if "accepted unchecked" in r.getMessage()]
    assert len(warnings) == 1


def test_revocations_survive_a_restart_with_aof(redis_factory: ServerFactory) -> None:
    server = redis_factory("--appendonly", "yes", "--appendfsync", "always")
    app, fog, _ = jwt_app(server.url)
    client = app.test_client()
    with app.app_context():
        token, other = create_access_token("alice"), create_access_token("bob")
        fog.revoke_token(token)
        fog.revoke_all_tokens("bob")
    server.admin().shutdown()
    assert server.process is not None
    server.process.wait(10)
    server.start()
    assert client.get("/protected", headers=bearer(token)).status_code == 401
    assert client.get("/protected", headers=bearer(other)).status_code == 401


@pytest.mark.parametrize(
    ("policy", "warns"), [("allkeys-lru", True), ("volatile-ttl", True), ("noeviction", False)]
)
def test_eviction_policy_warning(
    redis_factory: ServerFactory, caplog: pytest.LogCaptureFixture, policy: str, warns: bool
) -> None:
    server = redis_factory("--maxmemory-policy", policy, "--maxmemory", "64mb")
    app, fog, _ = jwt_app(server.url)
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"), app.app_context():
        token = create_access_token("alice")
        fog.revoke_token(token)
        fog.revoke_token(create_access_token("bob"))
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 401
    messages = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(messages) == (1 if warns else 0)
    if warns:
        assert policy in messages[0] and "noeviction" in messages[0]


def test_strict_eviction_refuses_an_evicting_redis(redis_factory: ServerFactory) -> None:
    server = redis_factory("--maxmemory-policy", "allkeys-lru")
    app, fog, _ = jwt_app(server.url, REDIS_JWT_STRICT_EVICTION=True)
    with app.app_context():
        token = create_access_token("alice")
        with pytest.raises(EvictionPolicyError, match="noeviction"):
            fog.revoke_token(token)
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 503
    server.admin().config_set("maxmemory-policy", "noeviction")
    with app.app_context():
        assert fog.revoke_token(token) is True


def test_policy_is_read_once_not_per_request(redis_server: RedisServer) -> None:
    app, _, _ = jwt_app(redis_server.url)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
    for _ in range(10):
        client.get("/protected", headers=bearer(token))
    assert _commandstats(redis_server.admin()).get("config|get") == 1


def test_a_second_fogredis_does_not_check_revocations(redis_factory: ServerFactory) -> None:
    main, other = redis_factory(), redis_factory()
    app, fog, _ = jwt_app(main.url, CACHE_REDIS_URL=other.url)
    second = FogRedis(app, config_prefix="CACHE_REDIS")
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
        second.set("k", "v")
    for _ in range(3):
        assert client.get("/protected", headers=bearer(token)).status_code == 200
    assert "cmdstat_mget" not in other.admin().info("commandstats")
    other.kill()
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    assert fog is not second


def _assert_unavailable(response: TestResponse, retry_after: str, *secrets: str) -> None:
    """503 JSON with Retry-After, naming no host, port or credential."""
    assert response.status_code == 503
    assert response.headers["Retry-After"] == retry_after
    assert response.is_json
    text = response.get_data(as_text=True)
    for secret in ("127.0.0.1", "redis://", *secrets):
        assert secret not in text


# Busy-waits on Redis's clock for ARGV[1] microseconds: a long script.
_BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000000 + tonumber(t[2]) - start > tonumber(ARGV[1])
return 1
"""


def test_a_busy_redis_is_a_503_or_passes_under_fail_open(redis_factory: ServerFactory) -> None:
    """While a Lua script runs past busy-reply-threshold, Redis answers BUSY."""
    server = redis_factory("--busy-reply-threshold", "100", password=PASSWORD)
    closed, _, _ = jwt_app(server.url, REDIS_JWT_RETRY_AFTER=3)
    opened, _, _ = jwt_app(server.url, REDIS_JWT_FAIL_OPEN=True)
    with closed.app_context():
        token = create_access_token("alice")
    for app in (closed, opened):  # connected, eviction policy read
        assert app.test_client().get("/protected", headers=bearer(token)).status_code == 200
    script = threading.Thread(target=server.admin().eval, args=(_BUSY_SCRIPT, 0, 2_500_000))
    script.start()
    try:
        time.sleep(0.5)
        response = closed.test_client().get("/protected", headers=bearer(token))
        _assert_unavailable(response, "3", PASSWORD, str(server.port))
        assert opened.test_client().get("/protected", headers=bearer(token)).status_code == 200
    finally:
        script.join(10)
    assert closed.test_client().get("/protected", headers=bearer(token)).status_code == 200


def test_an_acl_without_the_command_is_a_503(redis_factory: ServerFactory) -> None:
    server = redis_factory(password=PASSWORD)
    user_password = "app-user-password-0123456789"
    server.admin().acl_setuser(
        "fogapp",
        enabled=True,
        passwords=[f"+{user_password}"],
        keys=["*"],
        commands=["+@all", "-mget"],
    )
    url = f"redis://fogapp:{user_password}@127.0.0.1:{server.port}/0"
    closed, _, _ = jwt_app(url, REDIS_JWT_RETRY_AFTER=2)
    opened, _, _ = jwt_app(url, REDIS_JWT_FAIL_OPEN=True)
    with closed.app_context():
        token = create_access_token("alice")
    response = closed.test_client().get("/protected", headers=bearer(token))
    _assert_unavailable(response, "2", user_password, "fogapp", str(server.port))
    assert opened.test_client().get("/protected", headers=bearer(token)).status_code == 200


def test_on_a_read_only_replica_the_check_answers_and_revoking_says_why_not(
    redis_factory: ServerFactory,
) -> None:
    """The check only reads (MGET): a replica answers it. Revoking writes:
    the replica refuses it with READONLY, raised without the password."""
    primary = redis_factory(password=PASSWORD)
    replica = redis_factory(
        "--replicaof", "127.0.0.1", str(primary.port), "--masterauth", PASSWORD, password=PASSWORD
    )
    main, fog, _ = jwt_app(primary.url)
    on_replica, fog_replica, _ = jwt_app(replica.url)
    with main.app_context():
        revoked, other = create_access_token("alice"), create_access_token("bob")
        fog.revoke_token(revoked)
    deadline = time.monotonic() + 10
    while replica.admin().dbsize() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    client = on_replica.test_client()
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(other)).status_code == 200
    with on_replica.app_context(), pytest.raises(RedisCommandError) as raised:
        fog_replica.revoke_token(other)
    assert "read only" in str(raised.value).lower()
    assert PASSWORD not in str(raised.value)


def test_a_full_redis_still_answers_the_check_and_refuses_new_revocations(
    redis_factory: ServerFactory,
) -> None:
    """With noeviction and memory over maxmemory, reads (the check's MGET)
    still work, writes answer OOM: revocations made before stay enforced,
    new ones raise."""
    server = redis_factory("--maxmemory-policy", "noeviction", password=PASSWORD)
    app, fog, _ = jwt_app(server.url)
    with app.app_context():
        revoked, other = create_access_token("alice"), create_access_token("bob")
        fog.revoke_token(revoked)
    server.admin().config_set("maxmemory", "1")
    client = app.test_client()
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(other)).status_code == 200
    for revoke in (lambda: fog.revoke_token(other), lambda: fog.revoke_all_tokens("bob")):
        with app.app_context(), pytest.raises(RedisCommandError) as raised:
            revoke()
        assert "maxmemory" in str(raised.value)
        assert PASSWORD not in str(raised.value)
    assert client.get("/protected", headers=bearer(other)).status_code == 200


def test_a_refused_revocation_names_no_identity(redis_factory: ServerFactory) -> None:
    server = redis_factory("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    app, fog, _ = jwt_app(server.url, REDIS_JWT_WAIT_REPLICAS=1)
    with app.app_context(), pytest.raises(RedisCommandError) as caught:
        fog.revoke_all_tokens("identity-to-keep-out-of-logs")
    assert "OutOfMemoryError" in str(caught.value)
    assert "identity-to-keep-out-of-logs" not in str(caught.value)
