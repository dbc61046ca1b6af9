"""Flask-Caching on the app's FogRedis pool: ``CACHE_TYPE =
"flask_fogredis.contrib.flask_caching.FogRedisCache"``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, jsonify
from flask_caching import Cache

from flask_fogredis import CacheValueError, FogRedis, NotInitializedError
from flask_fogredis.contrib.flask_caching import FogRedisCache, decode, encode

from .conftest import make_app
from .servers import RedisServer
from .topologies import ClusterSet, SentinelSet

CACHE_TYPE = "flask_fogredis.contrib.flask_caching.FogRedisCache"


def _setup(url: str, **config: Any) -> tuple[Flask, FogRedis, Cache]:
    app = make_app(REDIS_URL=url, REDIS_POOL_SIZE=3, CACHE_TYPE=CACHE_TYPE, **config)
    fog = FogRedis(app)
    return app, fog, Cache(app)


def _backend(app: Flask, cache: Cache) -> FogRedisCache:
    backend = app.extensions["cache"][cache]
    assert isinstance(backend, FogRedisCache)
    return backend


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2.5,
        "text",
        b"\x00\xff",
        ["a", 1, None],
        {"a": [1, {"b": False}]},
        ("body", 201, {"X-A": "1"}),
    ],
)
def test_codec_gives_back_what_it_was_given(value: object) -> None:
    assert decode(encode(value)) == value
    assert type(decode(encode(value))) is type(value)


@pytest.mark.parametrize("value", [object(), {1: "int key"}, [("nested", "tuple")], {1.5}])
def test_codec_refuses_what_it_cannot_give_back(value: object) -> None:
    with pytest.raises(CacheValueError, match=type(value).__name__):
        encode(value)


def test_codec_never_unpickles() -> None:
    import pickle

    with pytest.raises(ValueError):
        decode(b"!" + pickle.dumps(["x"]))


def test_responses_keep_status_headers_and_body() -> None:
    response = Response(b"\x00body", status=203, headers={"X-Thing": "1"})
    again = decode(encode(response))
    assert isinstance(again, Response)
    assert (again.status_code, again.headers["X-Thing"], again.get_data()) == (
        203,
        "1",
        b"\x00body",
    )


def test_before_init_app_it_says_what_to_do() -> None:
    app = make_app(CACHE_TYPE=CACHE_TYPE)
    with pytest.raises(NotInitializedError, match="init_app"):
        Cache(app)


def test_the_plain_calls_on_a_real_redis(redis_server: RedisServer) -> None:
    app, fog, cache = _setup(redis_server.url, CACHE_KEY_PREFIX="fc_")
    with app.app_context():
        assert cache.set("a", {"x": [1, 2]}) and cache.get("a") == {"x": [1, 2]}
        assert cache.add("a", "other") is False and cache.get("a") == {"x": [1, 2]}
        assert cache.add("b", b"raw") and cache.has("b")
        assert cache.set_many({"c": 1, "d": "two"}) == ["c", "d"]
        assert cache.get_many("c", "d", "missing") == [1, "two", None]
        assert cache.cache.inc("c") == 2 and cache.cache.dec("c", 5) == -3 and cache.get("c") == -3
        assert cache.delete("b") and not cache.has("b")
        assert cache.delete_many("c", "missing") == ["c", "missing"]
        assert cache.set("t", "v", timeout=100)
        assert 0 < fog.client.ttl("fog:flask_caching:fc_t") <= 100
        assert cache.set("forever", "v", timeout=0)
        assert fog.client.ttl("fog:flask_caching:fc_forever") == -1
        counts = fog.state().stats.cache()["flask_caching"]
    assert counts["hits"] >= 4 and counts["misses"] >= 1
    assert all(key.startswith("fog:flask_caching:fc_") for key in redis_server.admin().scan_iter())


def test_clear_removes_only_its_own_keys_without_keys_or_flushdb(
    redis_server: RedisServer,
) -> None:
    app, fog, cache = _setup(redis_server.url)
    admin = redis_server.admin()
    admin.set("someone-else", "1")
    with app.app_context():
        for number in range(1200):  # more than one UNLINK batch
            cache.set(f"k{number}", number)
        fog.cache_set("views", "x", "y")
        admin.config_resetstat()
        assert cache.clear()
    commands = admin.info("commandstats")
    assert "cmdstat_keys" not in commands and "cmdstat_flushdb" not in commands
    assert commands["cmdstat_unlink"]["calls"] >= 3
    left = sorted(admin.keys())
    assert "someone-else" in left and len(left) == 2  # and our own cache's entry


def test_cached_and_memoize_store_responses_and_results(redis_server: RedisServer) -> None:
    app, _fog, cache = _setup(redis_server.url)
    calls: list[str] = []

    @app.get("/page")
    @cache.cached(timeout=60)
    def page() -> Response:
        calls.append("page")
        response = jsonify(n=len(calls))
        response.headers["X-Made"] = "here"
        return response

    @app.get("/tuple")
    @cache.cached(timeout=60)
    def as_tuple() -> tuple[str, int]:
        calls.append("tuple")
        return "made", 201

    @cache.memoize(timeout=60)
    def square(n: int) -> list[int]:
        calls.append("square")
        return [n * n]

    client = app.test_client()
    first, second = client.get("/page"), client.get("/page")
    assert first.get_json() == second.get_json() == {"n": 1}
    assert second.headers["X-Made"] == "here"
    assert [client.get("/tuple").status_code for _ in range(2)] == [201, 201]
    with app.app_context():
        assert square(3) == square(3) == [9]
        cache.delete_memoized(square)
        assert square(3) == [9]
    assert calls == ["page", "tuple", "square", "square"]


def test_an_unstorable_value_is_refused_by_name(redis_server: RedisServer) -> None:
    app, _fog, cache = _setup(redis_server.url)
    with app.app_context(), pytest.raises(CacheValueError, match="set"):
        cache.set("k", {"a", "set"})


def test_fails_open_when_redis_is_down(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app, fog, cache = _setup(redis_server.url, REDIS_RETRY_ATTEMPTS=0)
    calls: list[int] = []

    @app.get("/v")
    @cache.cached(timeout=60)
    def view() -> str:
        calls.append(1)
        return "fresh"

    redis_server.stop()
    client = app.test_client()
    with caplog.at_level(logging.WARNING, "flask_fogredis"):
        assert [client.get("/v").get_data() for _ in range(2)] == [b"fresh", b"fresh"]
        with app.app_context():
            assert cache.get("k") is None
            assert cache.set("k", 1) is False
            assert cache.has("k") is False
            assert cache.clear() is False
            assert cache.cache.inc("k") is None
            errors = fog.state().stats.cache()["flask_caching"]["errors"]
    assert calls == [1, 1]
    assert errors >= 6
    warned = [r for r in caplog.records if "Flask-Caching on FogRedis" in r.getMessage()]
    assert len(warned) == 1  # rate-limited
    assert str(redis_server.port) not in warned[0].getMessage()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    found = SentinelSet(tmp_path, down_after_ms=5000)
    found.start()
    yield found
    found.stop()


def test_on_sentinel(sentinels: SentinelSet) -> None:
    app, _fog, cache = _setup(sentinels.url())
    with app.app_context():
        assert cache.set_many({"a": 1, "b": [2]}) == ["a", "b"]
        assert cache.get_many("a", "b") == [1, [2]]
        assert cache.clear()
        assert cache.get("a") is None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    found = ClusterSet(tmp_path)
    found.start()
    yield found
    found.stop()


def test_on_cluster(cluster: ClusterSet) -> None:
    app, _fog, cache = _setup(cluster.url())
    names = [f"key{number}" for number in range(30)]  # spread over the three primaries
    with app.app_context():
        assert cache.set_many({name: name for name in names}) == names
        assert cache.get_many(*names) == names
        assert cache.cache.inc("n", 3) == 3
        assert cache.delete_many("key0", "key1") == ["key0", "key1"]
        assert cache.clear()
        assert cache.get_many(*names) == [None] * len(names)
    assert sum(len(node.admin().keys()) for node in cluster.alive()) == 0


def test_an_http_error_a_view_raised_comes_back_as_that_error() -> None:
    from werkzeug.exceptions import NotFound

    again = decode(encode(NotFound("no such thing")))
    assert isinstance(again, NotFound) and again.description == "no such thing"
