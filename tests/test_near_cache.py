"""The near cache's own machinery against a real redis-server: invalidation
by other clients, the read-in-flight race, a killed or restarted channel,
and the memory bound."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from flask_fogredis import _near as near_module
from flask_fogredis._config import read_settings
from flask_fogredis._near import NearCache
from flask_fogredis._topology import single_connection

from .servers import RedisServer


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            pytest.fail("condition not met in time")
        time.sleep(0.0005)
    return time.perf_counter() - start


@pytest.fixture
def near(redis_server: RedisServer) -> Iterator[NearCache]:
    settings = read_settings({"REDIS_URL": redis_server.url}, "REDIS")
    cache = NearCache(
        settings,
        ["fog:"],
        max_entries=1000,
        max_bytes=1 << 20,
        ping_interval=0.2,
        connect=partial(single_connection, settings),
    )
    cache.lookup(["fog:warmup"])  # starts the listener
    wait_for(lambda: cache.healthy)
    yield cache
    cache.close()


def remember(near: NearCache, key: str, value: Any) -> None:
    pending = near.begin([key])
    near.fill(pending, [(key, value)])


def test_answers_from_memory_until_redis_says_otherwise(
    near: NearCache, redis_server: RedisServer
) -> None:
    remember(near, "fog:a", b"1")
    remember(near, "fog:absent", None)
    assert near.lookup(["fog:a", "fog:absent"]) == [b"1", None]
    redis_server.admin().set("fog:a", "2")
    wait_for(lambda: near.lookup(["fog:a"]) is None)
    assert near.lookup(["fog:absent"]) == [None]
    redis_server.admin().set("fog:absent", "now present")
    wait_for(lambda: near.lookup(["fog:absent"]) is None)


def test_a_listener_that_falls_behind_stops_answers_from_memory(
    near: NearCache, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starved listener (a busy gevent worker, an overloaded machine) has
    invalidations unread: once it has not been heard from for three PING
    intervals, nothing is answered from memory, stale or not."""
    remember(near, "fog:a", b"1")
    assert near.lookup(["fog:a"]) == [b"1"]
    processing = near._invalidate

    def stuck(keys: Any) -> None:
        time.sleep(3)
        processing(keys)

    monkeypatch.setattr(near, "_invalidate", stuck)
    redis_server.admin().set("fog:a", "2")
    # The invalidation is on its way but unread: three intervals of 0.2 s.
    assert wait_for(lambda: near.lookup(["fog:a"]) is None, timeout=1.5) < 1.5


def test_keys_outside_the_prefixes_are_not_tracked(
    near: NearCache, redis_server: RedisServer
) -> None:
    remember(near, "fog:a", b"1")
    redis_server.admin().set("other:a", "x")
    redis_server.admin().set("fog:marker", "x")
    wait_for(lambda: near.stats()["invalidations"] >= 1)
    assert near.lookup(["fog:a"]) == [b"1"]


def test_expiry_invalidates(near: NearCache, redis_server: RedisServer) -> None:
    redis_server.admin().set("fog:short", "1", px=100)
    remember(near, "fog:short", b"1")
    wait_for(lambda: near.lookup(["fog:short"]) is None, timeout=3)


def test_a_read_overtaken_by_a_write_is_not_kept(
    near: NearCache, redis_server: RedisServer
) -> None:
    pending = near.begin(["fog:race"])
    seen = near.stats()["invalidations"]
    redis_server.admin().set("fog:race", "new")
    wait_for(lambda: near.stats()["invalidations"] > seen)
    near.fill(pending, [("fog:race", b"old")])  # the answer read before the write
    assert near.lookup(["fog:race"]) is None


def test_killed_channel_flushes_and_bypasses(near: NearCache, redis_server: RedisServer) -> None:
    remember(near, "fog:a", b"1")
    admin = redis_server.admin()
    pending = near.begin(["fog:inflight"])
    admin.client_kill_filter(_type="pubsub")
    wait_for(lambda: not near.healthy, timeout=2)
    assert near.lookup(["fog:a"]) is None
    assert near.begin(["fog:b"]) is None  # bypassed: nothing is remembered
    wait_for(lambda: near.healthy)
    near.fill(pending, [("fog:inflight", b"from before")])
    assert near.lookup(["fog:inflight"]) is None  # began before the reconnect
    assert near.lookup(["fog:a"]) is None
    remember(near, "fog:a", b"2")
    assert near.lookup(["fog:a"]) == [b"2"]


def test_redis_restart_leaves_nothing_stale(near: NearCache, redis_server: RedisServer) -> None:
    remember(near, "fog:a", b"1")
    redis_server.kill()
    wait_for(lambda: not near.healthy, timeout=3)
    assert near.lookup(["fog:a"]) is None
    redis_server.start()
    wait_for(lambda: near.healthy, timeout=10)
    assert near.lookup(["fog:a"]) is None


def test_flushdb_flushes(near: NearCache, redis_server: RedisServer) -> None:
    remember(near, "fog:a", b"1")
    flushes = near.stats()["flushes"]
    redis_server.admin().flushdb()
    wait_for(lambda: near.stats()["flushes"] > flushes)
    assert near.lookup(["fog:a"]) is None


def test_memory_bound_holds_under_a_flood(near: NearCache) -> None:
    near.max_entries, near.max_bytes = 100, 50_000
    for n in range(5000):
        remember(near, f"fog:flood:{n}", b"x" * 300)
        stats = near.stats()
        assert int(stats["entries"]) <= 100
        assert int(stats["bytes"]) <= 50_000
    assert near.lookup(["fog:flood:4999"]) == [b"x" * 300]
    assert near.lookup(["fog:flood:0"]) is None
    remember(near, "fog:huge", b"y" * 60_000)
    assert near.lookup(["fog:huge"]) is None


def test_placeholders_of_reads_never_answered_stay_within_the_bound(near: NearCache) -> None:
    near.max_entries = 100
    for n in range(1000):
        near.begin([f"fog:failed:{n}"])  # the read raised: no fill
        assert int(near.stats()["entries"]) <= 100
    remember(near, "fog:kept", b"1")
    assert near.lookup(["fog:kept"]) == [b"1"]


def test_an_abandoned_read_leaves_nothing(near: NearCache) -> None:
    pending = near.begin(["fog:a", "fog:b"])
    near.abandon(pending)
    assert near.stats()["entries"] == 0
    remember(near, "fog:a", b"1")
    near.abandon(pending)  # a later read's answer is not the abandoned one's
    assert near.lookup(["fog:a"]) == [b"1"]
    near.abandon(None)  # what begin() gives while bypassed


def test_waiters_whose_invalidation_never_comes_are_dropped(
    near: NearCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(near_module, "_WAITER_AGE", 0.3)
    # Writes that wrote nothing (SET NX lost, or Redis refused it).
    waiters = [near.expect(f"fog:unwritten:{n}") for n in range(1000)]
    assert near.stats()["waiters"] == 1000
    wait_for(lambda: near.stats()["waiters"] == 0, timeout=3)  # with no further write
    assert all(event is not None and event.is_set() for event in waiters)


def test_waiters_are_bounded_in_count(near: NearCache) -> None:
    limit = near_module._WAITER_LIMIT
    waiters = [near.expect(f"fog:unwritten:{n}") for n in range(limit + 100)]
    assert near.stats()["waiters"] == limit
    assert all(event is not None for event in waiters)
    assert waiters[0] is not None and waiters[0].is_set()  # the oldest let go
    assert waiters[-1] is not None and not waiters[-1].is_set()


def test_memory_store_cannot_track() -> None:
    settings = read_settings({"REDIS_URL": "memory://"}, "REDIS")
    cache = NearCache(
        settings,
        ["fog:"],
        10,
        10_000,
        ping_interval=0.1,
        connect=partial(single_connection, settings),
    )
    try:
        cache.lookup(["fog:a"])
        time.sleep(0.3)
        assert cache.begin(["fog:a"]) is None
    finally:
        cache.close()


def test_a_replaced_copy_is_given_until_redis_says_otherwise(
    near: NearCache, redis_server: RedisServer
) -> None:
    blob = b"raw"
    remember(near, "fog:r", blob)
    near.replace("fog:r", blob, "parsed")
    assert near.lookup(["fog:r"]) == ["parsed"]
    redis_server.admin().set("fog:r", "new")
    wait_for(lambda: near.lookup(["fog:r"]) is None)
    # A copy changed since it was looked up is not replaced.
    remember(near, "fog:r", b"newer")
    near.replace("fog:r", blob, "parsed")
    assert near.lookup(["fog:r"]) == [b"newer"]
