"""Invalidation by memoized call, tag and URL against a real redis-server:
with the near cache on in two apps (two processes' worth of state), and
the indexes' bounds."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from flask_fogredis import FogRedis

from .conftest import make_app
from .servers import RedisServer
from .test_near_cache import wait_for


def _site(url: str, **config: Any) -> tuple[Flask, FogRedis, list[str]]:
    app = make_app(REDIS_URL=url, **config)
    fog = FogRedis(app)
    calls: list[str] = []

    @fog.memoize("memo", 60, tags=lambda n: [f"n:{n}"])
    def square(n: int) -> int:
        calls.append(f"square {n}")
        return n * n

    @app.get("/item/<int:n>")
    @fog.cached("items", 60, tags=lambda n: [f"n:{n}"])
    def item(n: int) -> str:
        calls.append(f"item {n}")
        return f"{square(n)} ({len(calls)})"

    app.config["SQUARE"] = square
    return app, fog, calls


def _near_pair(url: str) -> list[tuple[Flask, FogRedis, list[str]]]:
    sites = [_site(url, REDIS_NEAR_CACHE=True) for _ in range(2)]
    for app, fog, _ in sites:
        with app.app_context():
            near = fog.state().cache.near
            assert near is not None
            near.lookup([])  # starts its listener
            wait_for(lambda near=near: near.healthy)  # type: ignore[misc]
    return sites


def _warm(site: tuple[Flask, FogRedis, list[str]], n: int) -> None:
    """Fill the near cache: the second read of each comes from memory."""
    app, _fog, _ = site
    client = app.test_client()
    with app.app_context():
        for _ in range(3):
            client.get(f"/item/{n}")
            app.config["SQUARE"](n)
        assert client.get(f"/item/{n}").headers["X-Cache"] == "HIT"


def _near_hits(site: tuple[Flask, FogRedis, list[str]]) -> int:
    app, fog, _ = site
    with app.app_context():
        near = fog.state().cache.near
        assert near is not None
        return int(near.stats()["hits"])


def _computes(site: tuple[Flask, FogRedis, list[str]], n: int, what: str) -> bool:
    """Whether asking for ``n`` (the memoized function, or the view) runs it."""
    app, _, calls = site
    before = len(calls)
    with app.app_context():
        if what == "square":
            app.config["SQUARE"](n)
        else:
            app.test_client().get(f"/item/{n}")
    return len(calls) > before


def _check_reaches_the_other_process(url: str, invalidate: Any, what: str) -> None:
    first, second = _near_pair(url)
    for site in (first, second):
        _warm(site, 3)
    # The second app answers from its own memory: no Redis read would notice
    # a deletion, only the invalidation message.
    hits = _near_hits(second)
    assert not _computes(second, 3, what)
    assert _near_hits(second) > hits
    with first[0].app_context():
        assert invalidate(first) >= 1
    wait_for(lambda: _computes(second, 3, what), 2)
    assert not _computes(second, 3, what)  # stored again, served again


def test_delete_memoized_reaches_another_near_cache(redis_server: RedisServer) -> None:
    _check_reaches_the_other_process(
        redis_server.url,
        lambda site: site[1].delete_memoized(site[0].config["SQUARE"], 3),
        "square",
    )


def test_delete_memoized_of_every_call_reaches_another_near_cache(
    redis_server: RedisServer,
) -> None:
    _check_reaches_the_other_process(
        redis_server.url, lambda site: site[1].delete_memoized(site[0].config["SQUARE"]), "square"
    )


def test_invalidate_tags_reaches_another_near_cache(redis_server: RedisServer) -> None:
    _check_reaches_the_other_process(
        redis_server.url, lambda site: site[1].invalidate_tags("n:3"), "item"
    )


def test_delete_cached_url_reaches_another_near_cache(redis_server: RedisServer) -> None:
    _check_reaches_the_other_process(
        redis_server.url, lambda site: site[1].delete_cached_url("/item/3"), "item"
    )


def test_tag_indexes_stay_bounded(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)

    @fog.memoize("memo", 0.3, tags=["hot"])
    def short(n: int) -> int:
        return n

    @fog.memoize("memo", 30, tags=["hot"])
    def long(n: int) -> int:
        return n

    with app.app_context():
        for n in range(50):
            short(n)
        index = fog.state().cache.tag_index("hot")
        assert fog.client.zcard(index) == 50
        assert 0 < fog.client.pttl(index) <= 300
        time.sleep(0.4)
        long(1)
        # Expired members are dropped on each add, and the index lives as
        # long as its longest member.
        assert fog.client.zcard(index) == 1
        assert 29_000 < fog.client.pttl(index) <= 30_000
        short(1)
        assert 29_000 < fog.client.pttl(index) <= 30_000
        assert fog.invalidate_tags("hot") == 2
        assert fog.client.zcard(index) == 0


def test_an_invalidation_leaves_other_namespaces_and_tags_alone(redis_server: RedisServer) -> None:
    app, fog, calls = _site(redis_server.url)
    client = app.test_client()
    with app.app_context():
        for n in (1, 2):
            client.get(f"/item/{n}")
        fog.cache_set("other", "k", {"kept": True})
        assert fog.invalidate_tags("n:1") == 2  # the view and the memoized call
        assert fog.cache_get("other", "k") == {"kept": True}
        assert client.get("/item/2").headers["X-Cache"] == "HIT"
        assert client.get("/item/1").headers["X-Cache"] == "MISS"
        assert calls.count("square 1") == 2 and calls.count("square 2") == 1


def test_hits_from_memory_answer_the_same_headers_every_time(redis_server: RedisServer) -> None:
    site = _near_pair(redis_server.url)[0]
    app, _, calls = site
    _warm(site, 5)
    client = app.test_client()
    hits = _near_hits(site)
    answers = [client.get("/item/5") for _ in range(3)]
    assert _near_hits(site) >= hits + 3
    assert len(calls) == 2  # the view and the function, once each
    for answer in answers:
        names = [name.lower() for name, _ in answer.headers]
        assert names.count("x-cache") == 1 and names.count("age") == 1
        assert answer.headers["X-Cache"] == "HIT"
        assert answer.get_data() == answers[0].get_data()
    etag = answers[0].headers["ETag"]
    assert client.get("/item/5", headers={"If-None-Match": etag}).status_code == 304
    assert client.get("/item/5").status_code == 200


def test_a_process_reads_its_own_memoized_write_before_redis_s_notice(
    redis_server: RedisServer,
) -> None:
    """The near cache keeps "absent" for a missed key until Redis's notice
    of the write comes. A listener that is late (a loaded machine) must not
    make this process compute the same call again."""
    app, fog, calls = _near_pair(redis_server.url)[0]
    with app.app_context():
        near = fog.state().cache.near
        assert near is not None
        square = app.config["SQUARE"]
        held: list[Any] = []
        late = near._invalidate
        near._invalidate = held.append  # type: ignore[method-assign,assignment]
        try:
            assert square(7) == 49  # a miss: "absent" kept, then stored
            assert square(7) == 49
            assert square(7) == 49
        finally:
            near._invalidate = late  # type: ignore[method-assign]
        assert calls == ["square 7"]
