"""``flask_fogredis.testing``: apps for tests, a reset between tests, and
closing everything tests opened."""

from __future__ import annotations

import time

from flask import Flask

from flask_fogredis import testing

from .conftest import ServerFactory
from .servers import RedisServer


def cache_hits(app: Flask) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    lines = [line for line in text.splitlines() if line.startswith("fogredis_cache_hits_total")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_app_context_gives_a_working_fogredis_on_the_embedded_store() -> None:
    with testing.app_context() as (app, fog):
        assert app.testing
        fog.set("greeting", "hello")
        assert fog.get("greeting") == "hello"
    with testing.app_context() as (_, other):
        assert other.get("greeting") is None  # a store of its own


def test_reset_deletes_our_keys_and_counters_and_keeps_the_rest() -> None:
    with testing.app_context("memory://", REDIS_KEY_PREFIX="mine") as (app, fog):
        fog.client.set("someone-else", "kept")
        fog.cache_set("pages", "one", "body")
        assert fog.cache_get("pages", "one") == "body"
        fog.blacklist_token("jti-1", 60)
        assert cache_hits(app) == 1
        testing.reset(app)
        assert fog.cache_get("pages", "one") is None
        assert not fog.is_token_blacklisted("jti-1")
        assert fog.client.get("someone-else") == "kept"
        assert cache_hits(app) == 0


def test_reset_clears_the_cache_s_own_redis_too(redis_factory: ServerFactory) -> None:
    main, cache = redis_factory(), redis_factory()
    with testing.app_context(main.url, REDIS_CACHE_URL=cache.url) as (app, fog):
        fog.cache_set("pages", "one", "body")
        fog.blacklist_token("jti-1", 60)
        cache.admin().set("not-ours", "1")
        testing.reset(app)
        assert main.admin().dbsize() == 0
        assert cache.admin().keys("*") == ["not-ours"]


def test_close_all_closes_every_connection_tests_opened(redis_server: RedisServer) -> None:
    admin = redis_server.admin()

    def others() -> int:
        # The server notices a closed socket at once, but give it a moment.
        deadline = time.monotonic() + 2
        while len(admin.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(admin.client_list()) - 1

    with testing.app_context(redis_server.url) as (_, fog):
        fog.set("a", "1")
        assert others() >= 1
        testing.close_all()  # what an autouse fixture calls after each test
        assert others() == 0
        assert fog.get("a") == "1"  # the pool reconnects on the next use
