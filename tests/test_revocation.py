"""JWT revocation: registration, lifetimes, log out everywhere, bad tokens.

Logic runs on the embedded store; the network cases are in
test_revocation_network.py.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
import redis
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token

from flask_fogredis import FogRedis, TokenError

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


def test_loader_registered_later_is_chained_and_ours_put_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, fog, manager = jwt_app()
    client = app.test_client()

    @manager.token_in_blocklist_loader
    def later(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return bool(payload["sub"] == "banned")

    with app.app_context():
        revoked, banned = create_access_token("revoked"), create_access_token("banned")
        fog.revoke_token(revoked)
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(banned)).status_code == 401
    assert "registered after FogRedis" in caplog.text


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
def test_ttl_is_remaining_life_plus_leeway(leeway: int) -> None:
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
            remaining = payload["exp"] - time.time() + leeway
            assert abs(_ttl_ms(fog, payload["jti"]) / 1000 - remaining) < 1.0
            assert _ttl_ms(fog, payload["jti"]) < (lifetime + leeway) * 1000


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
        assert 27_000 < _ttl_ms(fog, decode_token(token)["jti"]) <= 30_000


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


def test_token_without_jti_is_refused_with_a_clear_message() -> None:
    app, fog, _ = jwt_app()
    token = _foreign_token()
    response = app.test_client().get("/protected", headers=bearer(token))
    assert response.status_code == 422
    assert response.json is not None
    assert "jti" in response.json["msg"]
    with app.app_context(), pytest.raises(TokenError, match="jti"):
        fog.revoke_token(token)


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
        assert 3 * 3600 + 4 <= fog.ttl("fog:jwt:sub:alice") <= 3 * 3600 + 5
    forever, fog2, _ = jwt_app(JWT_REFRESH_TOKEN_EXPIRES=False)
    with forever.app_context():
        fog2.revoke_all_tokens(42)
        assert fog2.ttl("fog:jwt:sub:42") == -1
    fixed, fog3, _ = jwt_app(REDIS_JWT_MAX_TOKEN_LIFETIME=timedelta(days=90))
    with fixed.app_context():
        fog3.revoke_all_tokens("alice")
        assert fog3.ttl("fog:jwt:sub:alice") == 90 * 86400


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


def test_an_unreadable_eviction_policy_is_read_again_later(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_fogredis import revocation

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
