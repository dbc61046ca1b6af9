"""The cache against real redis-servers: concurrency, outages, isolation."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_fogredis import FogRedis

from .conftest import ServerFactory, make_app
from .servers import RedisServer, free_port


def _slow_app(url: str, seconds: float, **config: Any) -> tuple[Flask, FogRedis, list[int]]:
    app = make_app(REDIS_URL=url, REDIS_POOL_SIZE=25, **config)
    fog = FogRedis(app)
    calls: list[int] = []
    lock = threading.Lock()

    @app.get("/report")
    @fog.cached("reports", ttl=60)
    def report() -> dict[str, int]:
        with lock:
            calls.append(1)
            n = len(calls)
        time.sleep(seconds)
        return {"computation": n}

    return app, fog, calls


def _concurrent_gets(app: Flask, path: str, count: int) -> list[tuple[int, str, bytes]]:
    results: list[tuple[int, str, bytes]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def get() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.get(path)
        with lock:
            results.append((response.status_code, response.headers["X-Cache"], response.get_data()))

    threads = [threading.Thread(target=get) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_stampede_computes_once(redis_server: RedisServer) -> None:
    app, _, calls = _slow_app(redis_server.url, 0.5)
    results = _concurrent_gets(app, "/report", 20)
    assert len(results) == 20
    assert len(calls) == 1
    assert {body for _, _, body in results} == {b'{"computation":1}\n'}
    assert sorted(state for _, state, _ in results) == ["HIT"] * 19 + ["MISS"]
    assert redis_server.admin().keys("fog:cache:*:l:*") == []  # the lock is released


def test_a_request_that_takes_the_lock_after_the_holder_stored_does_not_compute_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fog, calls = _slow_app(redis_server.url, 0)
    client = app.test_client()
    assert client.get("/report").headers["X-Cache"] == "MISS"
    with app.app_context():
        cache = fog.state().cache
    # This request's first read happened before the holder stored its
    # result; by the time it asks for the lock, the holder has let it go.
    monkeypatch.setattr(cache, "_read", lambda key, parse: None)
    late = client.get("/report")
    assert (late.headers["X-Cache"], late.get_json()) == ("HIT", {"computation": 1})
    assert len(calls) == 1
    assert redis_server.admin().keys("fog:cache:*:l:*") == []


def test_waiters_compute_themselves_after_the_lock_times_out(redis_server: RedisServer) -> None:
    app, _, calls = _slow_app(redis_server.url, 1.0, REDIS_CACHE_LOCK_TIMEOUT=0.2)
    start = time.monotonic()
    results = _concurrent_gets(app, "/report", 5)
    assert time.monotonic() - start < 5
    assert [status for status, _, _ in results] == [200] * 5
    assert len(calls) >= 2  # no deadlock: waiters gave up on the lock


def test_failing_view_releases_the_lock(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)

    @app.get("/broken")
    @fog.cached("broken")
    def broken() -> str:
        raise RuntimeError("view failed")

    app.testing = False
    assert app.test_client().get("/broken").status_code == 500
    assert redis_server.admin().keys("fog:cache:*") == []


def test_a_lock_that_outlived_a_crash_is_released_once_redis_is_back(
    redis_factory: ServerFactory,
) -> None:
    # AOF fsynced on every write: the lock taken before the crash comes back.
    server = redis_factory("--appendonly", "yes", "--appendfsync", "always")
    app = make_app(REDIS_URL=server.url, REDIS_CACHE_LOCK_TIMEOUT=30, REDIS_RETRY_ATTEMPTS=0)
    fog = FogRedis(app)
    calls: list[int] = []

    @app.get("/report")
    @fog.cached("reports", ttl=60)
    def report() -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            server.kill()  # the holder can neither store nor let go
        return {"computation": len(calls)}

    client = app.test_client()
    assert client.get("/report").get_json() == {"computation": 1}
    server.start()
    assert server.admin().keys("fog:cache:*:l:*") != []  # back from the AOF
    start = time.monotonic()
    again = client.get("/report")
    # Not the 30 s lock wait: this process let its own lock go first.
    assert time.monotonic() - start < 10
    assert (again.headers["X-Cache"], again.get_json()) == ("MISS", {"computation": 2})
    assert server.admin().keys("fog:cache:*:l:*") == []
    assert client.get("/report").headers["X-Cache"] == "HIT"


def test_locks_left_behind_are_tried_once_per_request_while_redis_is_away(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fog, _ = _slow_app(redis_server.url, 0, REDIS_RETRY_ATTEMPTS=0)
    with app.app_context():
        cache = fog.state().cache
    later = time.monotonic() + 60
    cache._orphans = {(f"lock{n}", "token"): ("reports", later) for n in range(3)}
    cache._orphans["expired", "token"] = ("reports", time.monotonic() - 1)
    tried: list[Any] = []

    def refused(**kwargs: Any) -> None:
        tried.append(kwargs["keys"])
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(cache, "_release_script", refused)
    cache._release_orphans()
    # One attempt: while Redis is away, a request does not pay for each lock,
    assert len(tried) == 1
    assert sorted(key for key, _ in cache._orphans) == ["lock0", "lock1", "lock2"]
    # and the next request does not try again at once.
    cache._release_orphans()
    assert len(tried) == 1
    monkeypatch.undo()
    cache._orphans_retry_at = 0.0
    redis_server.admin().set("lock0", "token")
    redis_server.admin().set("lock1", "another holder's token")
    cache._release_orphans()
    assert cache._orphans == {}
    assert redis_server.admin().exists("lock0") == 0
    assert redis_server.admin().get("lock1") == "another holder's token"


def test_two_failed_releases_of_one_key_are_both_kept(redis_server: RedisServer) -> None:
    # Redis flapped: the first lock expired, the key was taken again with a
    # new token, and that release failed too. The live one must be kept.
    app, fog, _ = _slow_app(redis_server.url, 0)
    with app.app_context():
        cache = fog.state().cache
    later = time.monotonic() + 60
    cache._keep_orphans({("lock", "old"): ("reports", later)})
    cache._keep_orphans({("lock", "new"): ("reports", later)})
    redis_server.admin().set("lock", "new")
    cache._release_orphans(only="lock")
    assert cache._orphans == {}
    assert redis_server.admin().exists("lock") == 0


def test_redis_killed_fails_open(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    app, fog, calls = _slow_app(redis_server.url, 0)
    client = app.test_client()
    client.get("/report")
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        for _ in range(5):
            response = client.get("/report")
            assert response.status_code == 200
            assert response.headers["X-Cache"] == "MISS"
        with app.app_context():
            assert fog.cache_get("reports", "k") is None
            assert fog.cache_set("reports", "k", "v") is False
    assert len(calls) == 6
    with app.app_context():
        assert fog.state().stats.cache()["reports"]["errors"] == 7
    lines = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(lines) == 1
    redis_server.start()
    assert client.get("/report").headers["X-Cache"] == "MISS"
    assert client.get("/report").headers["X-Cache"] == "HIT"


def test_invalidation_raises_when_redis_is_down(redis_server: RedisServer) -> None:
    from flask_fogredis import RedisUnavailableError

    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    redis_server.kill()
    with app.app_context():
        with pytest.raises(RedisUnavailableError):
            fog.cache_delete("ns", "k")
        with pytest.raises(RedisUnavailableError):
            fog.cache_clear_namespace("ns")


def test_slow_redis_fails_open(silent_port: int) -> None:
    app, _, calls = _slow_app(f"redis://127.0.0.1:{silent_port}/0", 0, REDIS_SOCKET_TIMEOUT=0.3)
    start = time.monotonic()
    response = app.test_client().get("/report")
    assert response.status_code == 200
    assert time.monotonic() - start < 2
    assert calls == [1]


def test_ttl_is_honoured_by_the_server(redis_server: RedisServer) -> None:
    app, fog, _ = _slow_app(redis_server.url, 0)
    app.test_client().get("/report")
    admin = redis_server.admin()
    (key,) = admin.keys("fog:cache:7:reports:v:*")
    assert 59 <= admin.ttl(key) <= 60
    with app.app_context():
        fog.cache_set("reports", "k", "v", ttl=1)
    time.sleep(1.2)
    with app.app_context():
        assert fog.cache_get("reports", "k") is None


def test_cache_on_its_own_redis(redis_factory: ServerFactory) -> None:
    main, cache = redis_factory(), redis_factory("--maxmemory-policy", "allkeys-lru")
    app = make_app(REDIS_URL=main.url, REDIS_CACHE_URL=cache.url, REDIS_CACHE_POOL_SIZE=4)
    fog = FogRedis(app)
    with app.app_context():
        fog.cache_set("ns", "k", "v")
        fog.set("plain", "main")
        fog.blacklist_token("jti", 60)
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'fogredis_pool_size{config_prefix="REDIS_CACHE"} 4.0' in metrics
    assert cache.admin().get("fog:cache:2:ns:k:k") == "v"
    assert main.admin().keys("fog:cache:*") == []
    assert main.admin().get("plain") == "main"
    assert main.admin().exists("fog:jwt:jti:jti") == 1


names = st.text(
    min_size=1,
    max_size=12,
    alphabet=st.characters(exclude_categories=["Cs"], include_characters="*?[]\\:{}^-!"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ours=names, theirs=names, key=names, their_key=names)
def test_namespaces_never_reach_each_other(
    redis_url: str, ours: str, theirs: str, key: str, their_key: str
) -> None:
    if ours == theirs:
        return
    app = make_app(REDIS_URL=redis_url)
    fog = FogRedis(app)
    with app.app_context():
        fog.client.flushdb()
        fog.cache_set(theirs, their_key, "theirs")
        assert fog.cache_get(ours, their_key) is None
        assert fog.cache_get(ours, key) is None
        assert fog.cache_delete(ours, their_key) is False
        fog.cache_set(ours, key, "ours")
        assert fog.cache_clear_namespace(ours) == 1
        assert fog.cache_get(theirs, their_key) == "theirs"
        fog.disconnect()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = RedisServer(tmp_path_factory.mktemp("redis"), "--enable-debug-command", "yes")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_url(module_redis: RedisServer) -> str:
    return module_redis.url


def test_clearing_200000_entries_does_not_block_the_server(module_redis: RedisServer) -> None:
    admin = module_redis.admin()
    admin.flushdb()
    admin.execute_command("DEBUG", "POPULATE", 200_000, "fog:cache:3:big:k")
    admin.execute_command("DEBUG", "POPULATE", 1000, "fog:cache:5:other:k")
    app = make_app(REDIS_URL=module_redis.url)
    fog = FogRedis(app)
    admin.config_resetstat()
    worst = 0.0
    done = threading.Event()

    def ping() -> None:
        nonlocal worst
        client = module_redis.admin()
        while not done.is_set():
            start = time.perf_counter()
            client.ping()
            worst = max(worst, time.perf_counter() - start)
            time.sleep(0.001)

    pinger = threading.Thread(target=ping)
    pinger.start()
    with app.app_context():
        removed = fog.cache_clear_namespace("big")
    done.set()
    pinger.join()
    assert removed == 200_000
    assert admin.dbsize() == 1000
    stats = admin.info("commandstats")
    assert "cmdstat_keys" not in stats and "cmdstat_flushdb" not in stats
    assert stats["cmdstat_unlink"]["calls"] >= 200_000 // 500
    print(f"worst PING while clearing 200,000 entries: {worst * 1000:.1f} ms")
    assert worst < 0.5  # a blocking delete of 200,000 keys would stall far longer


def test_apps_sharing_a_cache_redis_keep_their_key_prefixes(redis_factory: ServerFactory) -> None:
    main, cache = redis_factory(), redis_factory()
    fogs = []
    for prefix in ("tenant1", "tenant2"):
        app = make_app(REDIS_URL=main.url, REDIS_CACHE_URL=cache.url, REDIS_KEY_PREFIX=prefix)
        fogs.append((app, FogRedis(app)))
    (app1, fog1), (app2, fog2) = fogs
    with app1.app_context():
        fog1.cache_set("users", "42", "tenant1 secret")
    with app2.app_context():
        assert fog2.cache_get("users", "42") is None
    assert cache.admin().keys("tenant1:cache:*") != []


def test_a_clear_during_a_computation_is_not_undone_by_it(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    computing, finish = threading.Event(), threading.Event()
    answers = iter(["read before the write", "read after the write"])

    @app.get("/report")
    @fog.cached("reports", ttl=60)
    def report() -> str:
        answer = next(answers)
        computing.set()
        finish.wait(5)
        return answer

    first = threading.Thread(target=app.test_client().get, args=("/report",))
    first.start()
    computing.wait(5)
    with app.app_context():
        fog.cache_clear_namespace("reports")  # the data changed meanwhile
    finish.set()
    first.join(5)
    response = app.test_client().get("/report")
    assert (response.headers["X-Cache"], response.get_data()) == ("MISS", b"read after the write")


def _fill(server: RedisServer) -> None:
    """Write until the server refuses with OOM (it runs with a tiny
    maxmemory and noeviction)."""
    admin = server.admin()
    for n in range(10_000):
        try:
            admin.set(f"filler:{n}", "x" * 10_000)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("the server never filled")


def test_a_full_redis_does_not_fail_cached_views(
    redis_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    app = make_app(REDIS_URL=server.url)
    fog = FogRedis(app)
    calls: list[str] = []

    @app.get("/report")
    @fog.cached("reports", ttl=60)
    def report() -> str:
        calls.append(request.query_string.decode())
        return "report"

    client = app.test_client()
    _fill(server)
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        for n in range(3):
            response = client.get(f"/report?page={n}")
            assert (response.status_code, response.get_data()) == (200, b"report")
            assert response.headers["X-Cache"] == "MISS"
        with app.app_context():
            assert fog.cache_set("reports", "k", "v") is False
            assert fog.state().stats.cache()["reports"]["errors"] >= 3
    assert len(calls) == 3
    failures = [r.getMessage() for r in caplog.records if "serving without it" in r.getMessage()]
    assert failures != [] and all("OutOfMemoryError" in text for text in failures)


def test_startup_warns_when_the_cache_shares_a_noeviction_redis(
    redis_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    shared = redis_factory("--maxmemory-policy", "noeviction")
    evicting = redis_factory("--maxmemory-policy", "allkeys-lru")

    def warnings(**config: Any) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
            FogRedis(make_app(**config))
        return [r.getMessage() for r in caplog.records if "REDIS_CACHE_URL" in r.getMessage()]

    (message,) = warnings(REDIS_URL=shared.url)
    assert "noeviction" in message and "revocation" in message
    assert warnings(REDIS_URL=shared.url, REDIS_CACHE_URL=shared.url) != []
    assert warnings(REDIS_URL=shared.url, REDIS_CACHE_URL=evicting.url) == []
    assert warnings(REDIS_URL=shared.url, REDIS_JWT_BLOCKLIST=False) == []
    assert warnings(REDIS_URL="memory://") == []


def test_the_startup_check_waits_little_for_a_redis_that_is_down(
    silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        start = time.monotonic()
        FogRedis(make_app(REDIS_URL=f"redis://127.0.0.1:{silent_port}/0"))
        silent = time.monotonic() - start
        FogRedis(make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    # The pool would wait its 5 s socket timeout; the check gives up sooner.
    assert silent < 2
    assert not any("REDIS_CACHE_URL" in r.getMessage() for r in caplog.records)


def test_the_cache_s_own_redis_is_probed_and_reported(redis_factory: ServerFactory) -> None:
    main, cache = redis_factory(), redis_factory()
    token = "a-details-credential-long-enough"
    app = make_app(
        REDIS_URL=main.url,
        REDIS_CACHE_URL=cache.url,
        REDIS_CACHE_HEALTH_TIMEOUT=0.3,
        REDIS_HEALTH_DETAILS_TOKEN=token,
        REDIS_HEALTH_CACHE_SECONDS=0,
    )
    FogRedis(app)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    response = client.get("/health/redis", headers=auth)
    assert response.status_code == 200
    own = response.get_json()["details"]["cache_redis"]
    assert own["healthy"] is True
    assert own["pool_size"] == 10
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'fogredis_up{config_prefix="REDIS_CACHE"} 1.0' in metrics
    cache.stop()
    # The cache serves without its Redis: the app stays healthy, the report
    # says where the trouble is, within the cache's own bound.
    started = time.monotonic()
    response = client.get("/health/redis", headers=auth)
    assert response.status_code == 200
    own = response.get_json()["details"]["cache_redis"]
    assert own["healthy"] is False
    assert own["error"] in ("unreachable", "timeout")
    assert time.monotonic() - started < 0.3 + 1.0  # the main check's bound (1 s) at most
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'fogredis_up{config_prefix="REDIS_CACHE"} 0.0' in metrics
