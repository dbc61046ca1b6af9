"""``flask fogredis import-revocations``: the upstream recipe's ``jti`` keys
carried over with the time they had left, on a real redis-server."""

from __future__ import annotations

from flask import Flask
from flask_jwt_extended import create_access_token, decode_token

from .jwt_helpers import bearer, jwt_app
from .servers import RedisServer


def _run(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["fogredis", "import-revocations", *args])
    return result.exit_code, result.output


def test_a_token_revoked_by_the_recipe_stays_refused(redis_server: RedisServer) -> None:
    app, _, _ = jwt_app(redis_server.url)
    with app.app_context():
        token = create_access_token("ada")
        jti = decode_token(token)["jti"]
    admin = redis_server.admin()
    # The recipe: jwt_redis_blocklist.set(jti, "", ex=ACCESS_EXPIRES), here under a prefix.
    admin.set(f"blocklist:{jti}", "", ex=3600)
    admin.set("blocklist:kept-for-ever", "")
    client = app.test_client()
    assert client.get("/protected", headers=bearer(token)).status_code == 200  # the gap

    code, output = _run(app, "--pattern", "blocklist:*", "--strip", "blocklist:")
    assert code == 0, output
    assert "Imported 2 revocations (1 for ever), skipped 0 keys" in output
    assert client.get("/protected", headers=bearer(token)).status_code == 401
    assert 3590 < admin.ttl(f"fog:jwt:jti:{jti}") <= 3600
    assert admin.ttl("fog:jwt:jti:kept-for-ever") == -1

    # Idempotent: once more, the same revocations, no longer lifetimes.
    code, output = _run(app, "--pattern", "blocklist:*", "--strip", "blocklist:")
    assert code == 0 and "Imported 2 revocations" in output
    assert admin.ttl(f"fog:jwt:jti:{jti}") <= 3600


def test_its_own_keys_are_never_imported(redis_server: RedisServer) -> None:
    app, fog, _ = jwt_app(redis_server.url)
    admin = redis_server.admin()
    admin.set("plain-jti", "", ex=100)
    with app.app_context():
        fog.blacklist_token("already", 50)
    code, output = _run(app, "--pattern", "*")
    assert code == 0, output
    assert "Imported 1 revocations (0 for ever), skipped 1 keys, from 2 matching" in output
    assert 90 < admin.ttl("fog:jwt:jti:plain-jti") <= 100
    assert not admin.exists("fog:jwt:jti:fog:jwt:jti:already")


def test_redis_down_exits_3(redis_server: RedisServer) -> None:
    app, _, _ = jwt_app(redis_server.url)
    redis_server.stop()
    code, output = _run(app, "--pattern", "*")
    assert code == 3, output
