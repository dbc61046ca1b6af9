"""JWT revocation: registration, lifetimes, log out everywhere, bad tokens.

Logic runs on the embedded store; the network cases are in
test_revocation_network.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import jwt as pyjwt
import pytest
import redis
from flask import Flask
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import RevokedTokenError
from redis.crc import key_slot

from flask_fogredis import FogRedis, RevocationUnavailableError, TokenError
from flask_fogredis import _revocation as revocation
from flask_fogredis._topology import slot_tag

from .conftest import make_app
from .jwt_helpers import SECRET_KEY, add_views, bearer, jwt_app


def _ttl_ms(fog: FogRedis, jti: str) -> int:
    return int(fog.client.pttl(f"fog:jwt:jti:{jti}"))


@pytest.mark.parametrize("manager_first", [True, False])
def test_revoked_token_is_refused_whichever_was_set_up_first(manager_first: bool) -> None:
    app, fog, _ = jwt_app(manager_first=manager_first)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    with app.app_context():
        assert fog.revoke_token(token) is True
    response = client.get("/protected", headers=bearer(token))
    assert response.status_code == 401
    assert response.json == {"msg": "Token has been revoked"}


def test_loader_registered_before_is_kept_and_consulted() -> None:
    app = make_app(REDIS_URL="memory://", JWT_SECRET_KEY=SECRET_KEY)
    manager = JWTManager(app)
    seen: list[str] = []

    @manager.token_in_blocklist_loader
    def users_own(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        seen.append(payload["sub"])
        return bool(payload["sub"] == "banned")

    fog = FogRedis(app)
    add_views(app)
    client = app.test_client()
    with app.app_context():
        ok, banned, revoked = (create_access_token(s) for s in ("ok", "banned", "revoked"))
        fog.revoke_token(revoked)
    assert client.get("/protected", headers=bearer(ok)).status_code == 200
    assert client.get("/protected", headers=bearer(banned)).status_code == 401
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    # Our check answers "revoked" first, in one round trip, without theirs.
    assert seen == ["ok", "banned"]


@pytest.mark.parametrize("manager_first", [True, False])
def test_loader_registered_later_is_consulted_next_to_ours(manager_first: bool) -> None:
    app, fog, manager = jwt_app(manager_first=manager_first)

    @manager.token_in_blocklist_loader
    def later(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return bool(payload["sub"] == "banned")

    with app.app_context():
        revoked, banned, ok = (create_access_token(s) for s in ("revoked", "banned", "ok"))
        fog.revoke_token(revoked)
    # From the first check on, before any request went through the app.
    for token in (revoked, banned):
        with app.test_request_context(headers=bearer(token)), pytest.raises(RevokedTokenError):
            verify_jwt_in_request()
    client = app.test_client()
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(banned)).status_code == 401
    assert client.get("/protected", headers=bearer(ok)).status_code == 200


def test_automatic_registration_can_be_turned_off() -> None:
    app, fog, manager = jwt_app(REDIS_JWT_BLOCKLIST=False)
    with app.app_context():
        token = create_access_token("alice")
        fog.revoke_token(token)
        assert fog.is_token_blacklisted(decode_token(token)["jti"]) is True
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 200
    assert manager._token_in_blocklist_callback.__module__ == (
        "flask_jwt_extended.default_callbacks"
    )


def test_no_jwt_manager_is_created() -> None:
    app = make_app(REDIS_URL="memory://")
    FogRedis(app)
    assert "flask-jwt-extended" not in app.extensions
    assert app.test_client().get("/absent").status_code == 404


@pytest.mark.parametrize("leeway", [0, 7])
def test_ttl_is_remaining_life_plus_leeway_on_both_sides(leeway: int) -> None:
    """A checking host accepts the token until exp + leeway by its own clock,
    and the revoking host's clock may be ahead of it by the leeway."""
    app, fog, _ = jwt_app(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=5),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=2),
        JWT_DECODE_LEEWAY=leeway,
    )
    with app.app_context():
        access, refresh = create_access_token("a"), create_refresh_token("a")
        time.sleep(1.1)
        for token, lifetime in ((access, 300), (refresh, 2 * 86400)):
            payload = decode_token(token)
            assert fog.revoke_token(payload) is True
            remaining = payload["exp"] - time.time() + 2 * leeway
            assert abs(_ttl_ms(fog, payload["jti"]) / 1000 - remaining) < 1.0
            assert _ttl_ms(fog, payload["jti"]) < (lifetime + 2 * leeway) * 1000


def test_revoked_refresh_token_outlives_the_access_token_lifetime() -> None:
    app, fog, _ = jwt_app(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=1),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=30),
    )
    client = app.test_client()
    with app.app_context():
        refresh = create_refresh_token("alice")
        fog.revoke_token(refresh)
    time.sleep(2.2)
    response = client.post("/refresh", headers=bearer(refresh))
    assert response.status_code == 401
    assert response.json == {"msg": "Token has been revoked"}


def test_expired_token_is_a_no_op_that_says_so() -> None:
    app, fog, _ = jwt_app(JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=1))
    with app.app_context():
        token = create_access_token("alice")
        time.sleep(2.1)
        assert fog.revoke_token(token) is False
        assert fog.is_token_blacklisted(decode_token(token, allow_expired=True)["jti"]) is False


def test_expired_within_leeway_is_still_revoked() -> None:
    app, fog, _ = jwt_app(JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=1), JWT_DECODE_LEEWAY=30)
    with app.app_context():
        token = create_access_token("alice")
        time.sleep(1.5)
        assert fog.revoke_token(token) is True
        assert 57_000 < _ttl_ms(fog, decode_token(token)["jti"]) <= 60_000


def test_token_without_exp_stays_revoked_forever() -> None:
    app, fog, _ = jwt_app(JWT_ACCESS_TOKEN_EXPIRES=False)
    with app.app_context():
        token = create_access_token("alice")
        payload = decode_token(token)
        assert "exp" not in payload
        assert fog.revoke_token(token) is True
        assert fog.ttl(f"fog:jwt:jti:{payload['jti']}") == -1
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 401


def _foreign_token(**claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 60, "type": "access", **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return pyjwt.encode(payload, SECRET_KEY, algorithm="HS256")


def test_token_without_jti_is_checked_not_refused() -> None:
    """flask-jwt-extended accepts a token without jti: it is still checked
    against log out everywhere and the user's own loader."""
    app, fog, manager = jwt_app()
    asked: list[str] = []

    @manager.token_in_blocklist_loader
    def users_own(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        asked.append(payload["sub"])
        return bool(payload["sub"] == "banned")

    client = app.test_client()
    ok, banned = _foreign_token(), _foreign_token(sub="banned")
    assert client.get("/protected-any", headers=bearer(ok)).status_code == 200
    assert client.get("/protected-any", headers=bearer(banned)).status_code == 401
    assert asked == ["alice", "banned"]
    with app.app_context():
        fog.revoke_all_tokens("alice")
        with pytest.raises(TokenError, match="jti"):
            fog.revoke_token(ok)
    assert client.get("/protected-any", headers=bearer(ok)).status_code == 401


def test_an_empty_identity_is_an_identity() -> None:
    app, fog, _ = jwt_app()
    client = app.test_client()
    with app.app_context():
        empty, other = create_access_token(""), create_access_token("bob")
        single = create_access_token("")
    assert client.get("/protected", headers=bearer(empty)).status_code == 200
    with app.app_context():
        assert fog.revoke_token(single) is True
    assert client.get("/protected", headers=bearer(single)).status_code == 401
    assert client.get("/protected", headers=bearer(empty)).status_code == 200
    with app.app_context():
        fog.revoke_all_tokens("")
    assert client.get("/protected", headers=bearer(empty)).status_code == 401
    assert client.get("/protected", headers=bearer(other)).status_code == 200


def test_an_empty_identity_keeps_its_keys_in_one_cluster_slot() -> None:
    app, fog, _ = jwt_app()
    with app.app_context():
        revocations = fog.state().revocations
        revocations._tagger = slot_tag
        for identity in ("", "alice", "{x}"):
            jti_key = revocations._jti_key("j1", identity)
            sub_key = revocations._sub_key(identity)
            assert key_slot(jti_key.encode()) == key_slot(sub_key.encode())
        assert revocations._sub_key("") != revocations._sub_key("{}")


def test_encoded_token_must_verify_to_be_revoked() -> None:
    app, fog, _ = jwt_app()
    forged = pyjwt.encode(
        {"sub": "x", "jti": "j", "exp": time.time() + 60},
        "another-key-that-is-long-enough-for-hs256!!",
        algorithm="HS256",
    )
    with app.app_context(), pytest.raises(TokenError, match="cannot be decoded"):
        fog.revoke_token(forged)
    with app.app_context(), pytest.raises(TokenError):
        fog.revoke_token(["not", "a", "token"])  # type: ignore[arg-type]


def test_blacklist_token_and_is_token_blacklisted() -> None:
    app, fog, _ = jwt_app()
    with app.app_context():
        assert fog.is_token_blacklisted("jti-1") is False
        fog.blacklist_token("jti-1", 60)
        fog.blacklist_token("jti-2", timedelta(minutes=2))
        fog.blacklist_token("jti-3", None)
        assert fog.is_token_blacklisted("jti-1") is True
        assert 59 <= fog.ttl("fog:jwt:jti:jti-1") <= 60
        assert 119 <= fog.ttl("fog:jwt:jti:jti-2") <= 120
        assert fog.ttl("fog:jwt:jti:jti-3") == -1
        with pytest.raises(ValueError):
            fog.blacklist_token("jti-4", -5)
        with pytest.raises(TokenError):
            fog.blacklist_token("", 60)


def test_blacklisted_jti_is_refused_by_the_loader() -> None:
    app, fog, _ = jwt_app()
    with app.app_context():
        token = create_access_token("alice")
        fog.blacklist_token(decode_token(token)["jti"], 60)
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 401


def _wait_for_next_second() -> None:
    time.sleep(math.ceil(time.time()) - time.time() + 0.01)


def test_log_out_everywhere() -> None:
    app, fog, _ = jwt_app()
    client = app.test_client()
    with app.app_context():
        access, refresh = create_access_token("alice"), create_refresh_token("alice")
        other = create_access_token("bob")
        fog.revoke_all_tokens("alice")
    assert client.get("/protected", headers=bearer(access)).status_code == 401
    assert client.post("/refresh", headers=bearer(refresh)).status_code == 401
    assert client.get("/protected", headers=bearer(other)).status_code == 200
    _wait_for_next_second()
    with app.app_context():
        fresh = create_access_token("alice")
    assert client.get("/protected", headers=bearer(fresh)).status_code == 200


def test_log_out_everywhere_refuses_tokens_issued_in_the_same_second() -> None:
    """Tokens carry iat in whole seconds: one issued in the same second as the
    revocation, even just after it, cannot be told apart, so it is refused."""
    app, fog, _ = jwt_app()
    client = app.test_client()
    _wait_for_next_second()
    with app.app_context():
        fog.revoke_all_tokens("alice")
        same_second = create_access_token("alice")
    assert client.get("/protected", headers=bearer(same_second)).status_code == 401
    _wait_for_next_second()
    with app.app_context():
        next_second = create_access_token("alice")
    assert client.get("/protected", headers=bearer(next_second)).status_code == 200


def test_log_out_everywhere_lasts_as_long_as_the_longest_token() -> None:
    app, fog, _ = jwt_app(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=10),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(hours=3),
        JWT_DECODE_LEEWAY=5,
    )
    with app.app_context():
        fog.revoke_all_tokens("alice")
        assert 3 * 3600 + 9 <= fog.ttl("fog:jwt:sub:alice") <= 3 * 3600 + 10
    forever, fog2, _ = jwt_app(JWT_REFRESH_TOKEN_EXPIRES=False)
    with forever.app_context():
        fog2.revoke_all_tokens(42)
        assert fog2.ttl("fog:jwt:sub:42") == -1
    fixed, fog3, _ = jwt_app(REDIS_JWT_MAX_TOKEN_LIFETIME=timedelta(days=90))
    with fixed.app_context():
        fog3.revoke_all_tokens("alice")
        assert fog3.ttl("fog:jwt:sub:alice") == 90 * 86400
    skewed, fog4, _ = jwt_app(REDIS_JWT_MAX_TOKEN_LIFETIME=timedelta(days=1), JWT_DECODE_LEEWAY=3)
    with skewed.app_context():
        fog4.revoke_all_tokens("alice")
        assert fog4.ttl("fog:jwt:sub:alice") == 86400 + 6


def test_token_without_iat_is_refused_after_log_out_everywhere() -> None:
    app, fog, _ = jwt_app()
    token = _foreign_token(jti="no-iat", iat=None)
    client = app.test_client()
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    with app.app_context():
        fog.revoke_all_tokens("alice")
    assert client.get("/protected", headers=bearer(token)).status_code == 401


def test_identities_are_data_not_patterns() -> None:
    app, fog, _ = jwt_app()
    client = app.test_client()
    with app.app_context():
        star = create_access_token("a*")
        plain = create_access_token("ab")
        fog.revoke_all_tokens("a*")
    assert client.get("/protected", headers=bearer(star)).status_code == 401
    assert client.get("/protected", headers=bearer(plain)).status_code == 200


def test_one_jwt_manager_serving_two_apps_keeps_their_blocklists_apart() -> None:
    manager, fog = JWTManager(), FogRedis()
    apps = []
    for _ in range(2):
        app = make_app(REDIS_URL="memory://", JWT_SECRET_KEY=SECRET_KEY)
        manager.init_app(app)
        fog.init_app(app)
        add_views(app)
        apps.append(app)
    first, second = apps
    with first.app_context():
        token = create_access_token("alice")
        fog.revoke_all_tokens("alice")
    assert first.test_client().get("/protected", headers=bearer(token)).status_code == 401
    assert second.test_client().get("/protected", headers=bearer(token)).status_code == 200


def test_revoking_twice_says_it_was_already_revoked() -> None:
    app, fog, _ = jwt_app()
    with app.app_context():
        token = create_access_token("alice")
        assert fog.revoke_token(token) is True
        assert fog.revoke_token(token) is False


@pytest.mark.parametrize("manager_first", [True, False])
def test_revoked_is_refused_outside_a_request_from_the_first_check(manager_first: bool) -> None:
    """No request has gone through the app: the check in a bare request
    context (as a Socket.IO handler makes) must refuse the revoked token."""
    app, fog, _ = jwt_app(manager_first=manager_first)
    with app.app_context():
        token, other = create_access_token("alice"), create_access_token("bob")
        fog.revoke_token(token)
    with app.test_request_context(headers=bearer(token)), pytest.raises(RevokedTokenError):
        verify_jwt_in_request()
    with app.test_request_context(headers=bearer(other)):
        verify_jwt_in_request()


# Errors a healthy, reachable Redis can answer the check with.
_ERROR_NAMES = ["LOADING", "BUSY", "NOPERM", "READONLY", "OOM", "WRONGTYPE"]
_SERVER_ERRORS = [
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.exceptions.ResponseError("BUSY Redis is busy running a script."),
    redis.exceptions.NoPermissionError("this user has no permissions to run the 'mget' command"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
]


def _failing_check(fog: FogRedis, app: Flask, error: Exception) -> None:
    """Make every MGET fail with ``error``, as the server would answer it."""
    with app.app_context():
        client = fog.client
    execute: Callable[..., Any] = client.execute_command

    def execute_command(*args: Any, **options: Any) -> Any:
        if args[0] == "MGET":
            raise error
        return execute(*args, **options)

    client.execute_command = execute_command  # type: ignore[method-assign]


@pytest.mark.parametrize("error", _SERVER_ERRORS, ids=_ERROR_NAMES)
def test_every_error_of_the_check_is_a_503(error: Exception) -> None:
    app, fog, _ = jwt_app(REDIS_JWT_RETRY_AFTER=4)
    with app.app_context():
        token = create_access_token("alice")
    _failing_check(fog, app, error)
    response = app.test_client().get("/protected", headers=bearer(token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "4"
    assert response.json == {
        "msg": "Token revocation cannot be checked right now; try again shortly."
    }
    with app.test_request_context(headers=bearer(token)), pytest.raises(RevocationUnavailableError):
        verify_jwt_in_request()


@pytest.mark.parametrize("error", _SERVER_ERRORS, ids=_ERROR_NAMES)
def test_every_error_of_the_check_passes_under_fail_open(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    app, fog, _ = jwt_app(REDIS_JWT_FAIL_OPEN=True)
    with app.app_context():
        token = create_access_token("alice")
    _failing_check(fog, app, error)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        for _ in range(5):
            assert client.get("/protected", headers=bearer(token)).status_code == 200
    warnings = [r for r in caplog.records if "accepted unchecked" in r.getMessage()]
    assert len(warnings) == 1


def _marker(fog: FogRedis, identity: str = "alice") -> float:
    value = fog.client.get(f"fog:jwt:sub:{identity}")
    assert value is not None
    return float(value)


def test_log_out_everywhere_takes_the_time_from_redis_not_this_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revoking host whose clock is an hour behind still refuses the
    tokens issued up to now."""
    app, fog, _ = jwt_app()
    with app.app_context():
        token = create_access_token("alice")
        behind = time.time() - 3600
        monkeypatch.setattr(
            revocation, "time", SimpleNamespace(time=lambda: behind, monotonic=time.monotonic)
        )
        fog.revoke_all_tokens("alice")
        monkeypatch.undo()
        assert abs(_marker(fog) - time.time()) < 5
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 401


def test_log_out_everywhere_never_moves_the_marker_back_nor_shortens_it() -> None:
    app, fog, _ = jwt_app(REDIS_JWT_MAX_TOKEN_LIFETIME=600)
    with app.app_context():
        later = time.time() + 120
        fog.client.set("fog:jwt:sub:alice", f"{later:.6f}", ex=60)
        fog.revoke_all_tokens("alice")
        assert _marker(fog) == pytest.approx(later, abs=1e-6)
        assert 599 <= fog.ttl("fog:jwt:sub:alice") <= 600  # extended
        fog.client.expire("fog:jwt:sub:alice", 5000)
        fog.revoke_all_tokens("alice")
        assert 4999 <= fog.ttl("fog:jwt:sub:alice") <= 5000  # kept
        fog.client.persist("fog:jwt:sub:alice")
        fog.revoke_all_tokens("alice")
        assert fog.ttl("fog:jwt:sub:alice") == -1  # forever stays forever
        fog.client.set("fog:jwt:sub:bob", f"{time.time() - 120:.6f}", ex=60)
        fog.revoke_all_tokens("bob")
        assert abs(_marker(fog, "bob") - time.time()) < 5  # moves forward


def test_log_out_everywhere_refuses_tokens_within_the_leeway_after_it() -> None:
    """An issuing host whose clock is ahead by up to JWT_DECODE_LEEWAY
    stamps tokens it issued before the marker with a later iat."""
    app, fog, _ = jwt_app(JWT_DECODE_LEEWAY=5)
    client = app.test_client()
    now = int(time.time())
    with app.app_context():
        fog.revoke_all_tokens("alice")
        fog.client.set("fog:jwt:sub:alice", f"{now - 10:.6f}")
    within = _foreign_token(jti="within", iat=now - 6)
    beyond = _foreign_token(jti="beyond", iat=now - 4)
    assert client.get("/protected", headers=bearer(within)).status_code == 401
    assert client.get("/protected", headers=bearer(beyond)).status_code == 200


def test_a_leeway_changed_after_the_first_check_is_used_from_then_on() -> None:
    app, fog, _ = jwt_app(JWT_DECODE_LEEWAY=5)
    client = app.test_client()
    now = int(time.time())
    with app.app_context():
        fog.revoke_all_tokens("alice")
        fog.client.set("fog:jwt:sub:alice", f"{now - 10:.6f}")
    token = _foreign_token(jti="later", iat=now - 7)
    assert client.get("/protected", headers=bearer(token)).status_code == 401
    app.config["JWT_DECODE_LEEWAY"] = 1
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    app.config["JWT_DECODE_LEEWAY"] = timedelta(seconds=5)
    assert client.get("/protected", headers=bearer(token)).status_code == 401


def test_log_out_everywhere_compares_the_session_start_when_the_token_has_one() -> None:
    """A token minted by a refresh after the marker, for a session that
    began before it, is refused; so is the rest of its chain."""
    app, fog, _ = jwt_app()
    client = app.test_client()
    now = int(time.time())
    with app.app_context():
        fog.revoke_all_tokens("alice")
        fog.client.set("fog:jwt:sub:alice", f"{now - 10:.6f}")
        rotated = create_access_token("alice", additional_claims={"auth_time": now - 60})
        fresh = create_access_token("alice", additional_claims={"auth_time": now - 5})
        plain = create_access_token("alice")
    assert client.get("/protected", headers=bearer(rotated)).status_code == 401
    assert client.get("/protected", headers=bearer(fresh)).status_code == 200
    assert client.get("/protected", headers=bearer(plain)).status_code == 200
    odd = _foreign_token(jti="odd", auth_time="yesterday")
    assert client.get("/protected", headers=bearer(odd)).status_code == 401


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_marker_that_is_not_a_time_refuses_rather_than_fails(fail_open: bool) -> None:
    app, fog, _ = jwt_app(REDIS_JWT_FAIL_OPEN=fail_open)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
        fog.client.set("fog:jwt:sub:alice", "garbage")
    assert client.get("/protected", headers=bearer(token)).status_code == 401


def test_an_unreadable_eviction_policy_is_read_again_later(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_fogredis import _revocation as revocation

    replies: list[Any] = [redis.ConnectionError("a shard is down"), "allkeys-lru"]

    def read_policy(self: Any) -> str | None:
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return str(reply)

    monkeypatch.setattr(revocation.Revocations, "_read_policy", read_policy)
    monkeypatch.setattr(revocation, "_POLICY_RETRY", 0)
    app, _, _ = jwt_app()
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        assert client.get("/protected", headers=bearer(token)).status_code == 200
        assert "Cannot read maxmemory-policy now" in caplog.text
        assert client.get("/protected", headers=bearer(token)).status_code == 200
    assert replies == []  # read again, and found
    assert "allkeys-lru" in caplog.text
