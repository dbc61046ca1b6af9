"""The health endpoint against real redis-servers: every way Redis can fail
answers within the bound, a probe storm sends at most one PING per interval,
and nothing secret reaches a response or a log line."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from flask_fogredis import FogRedis

from .conftest import ServerFactory, make_app
from .latency import latency_proxy
from .servers import RedisServer

PASSWORD = "health-secret-pw"
TOKEN = "a-detail-credential-long-enough"
INFO_FIELDS = ("redis_version", "used_memory", "maxmemory", "role", "connected_clients", "evicted")
# The bound, with room for a loaded machine; the default bound is 1 s.
WITHIN = 1.5


@pytest.fixture
def secured(redis_factory: ServerFactory) -> RedisServer:
    return redis_factory(password=PASSWORD)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of every logger, down to DEBUG."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def timed_get(app: Flask, path: str = "/health/redis", **kwargs: Any) -> tuple[TestResponse, float]:
    client = app.test_client()
    start = time.monotonic()
    response = client.get(path, **kwargs)
    return response, time.monotonic() - start


def assert_discreet(response: TestResponse, logs: pytest.LogCaptureFixture, port: int) -> None:
    """No password, host, port, exception text or INFO field in the answer
    or in any log line."""
    text = response.get_data(as_text=True) + str(dict(response.headers))
    logged = "\n".join(record.getMessage() for record in logs.records)
    for where in (text, logged):
        assert PASSWORD not in where
        assert "127.0.0.1" not in where and "localhost" not in where
        assert not re.search(rf"\b{port}\b", where)
        assert "Error" not in where and "Traceback" not in where
    assert not any(field in text for field in INFO_FIELDS)


def test_healthy(secured: RedisServer, logs: pytest.LogCaptureFixture) -> None:
    app = make_app(REDIS_URL=secured.url)
    FogRedis(app)
    response, took = timed_get(app)
    assert took < WITHIN
    assert response.status_code == 200
    body = response.get_json()
    assert (body["healthy"], body["connected"], body["error"]) == (True, True, None)
    assert 0 < body["latency_ms"] < 1000
    assert_discreet(response, logs, secured.port)


def test_down(secured: RedisServer, logs: pytest.LogCaptureFixture) -> None:
    app = make_app(REDIS_URL=secured.url, REDIS_HEALTH_CACHE_SECONDS=0.2)
    FogRedis(app)
    assert timed_get(app)[0].status_code == 200
    secured.kill()
    time.sleep(0.3)  # past the healthy result's reuse
    response, took = timed_get(app, "/health/redis", headers={"X-Probe": "down"})
    assert took < WITHIN
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert (body["healthy"], body["connected"], body["error"]) == (False, False, "unreachable")
    assert_discreet(response, logs, secured.port)
    # The outage is logged once, naming the key rather than the host.
    assert any("REDIS_URL" in r.getMessage() and "failing" in r.getMessage() for r in logs.records)


def test_comes_back_after_an_outage(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_HEALTH_CACHE_SECONDS=0)
    FogRedis(app)
    redis_server.kill()
    assert timed_get(app)[0].status_code == 503
    redis_server.start()
    assert timed_get(app)[0].status_code == 200


def test_unresponsive(silent_port: int, logs: pytest.LogCaptureFixture) -> None:
    app = make_app(REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{silent_port}/0")
    fog = FogRedis(app)
    response, took = timed_get(app)
    assert took < WITHIN
    assert response.status_code == 503
    body = response.get_json()
    assert (body["healthy"], body["error"]) == (False, "timeout")
    # The answer left before the check gave up on the silent socket: wait
    # for the check, so that its log line is searched too.
    with app.app_context():
        probe = fog.state().probe
    # (It waits for the socket timeout, 5 s by default.)
    deadline = time.monotonic() + 10
    while probe.last is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any("failing" in r.getMessage() for r in logs.records)
    assert_discreet(response, logs, silent_port)


def test_a_shorter_bound_is_kept(silent_port: int) -> None:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{silent_port}/0", REDIS_HEALTH_TIMEOUT=0.3)
    FogRedis(app)
    response, took = timed_get(app)
    assert response.status_code == 503
    assert took < 0.3 + 0.2


def hold_every_connection(app: Flask, fog: FogRedis, count: int, seconds: int) -> list[Any]:
    def hold() -> None:
        with app.app_context():
            fog.client.blpop(["never-pushed"], timeout=seconds)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_pool_exhausted(secured: RedisServer, logs: pytest.LogCaptureFixture) -> None:
    app = make_app(REDIS_URL=secured.url, REDIS_POOL_SIZE=2, REDIS_POOL_TIMEOUT=10)
    fog = FogRedis(app)
    holders = hold_every_connection(app, fog, 3, seconds=3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with app.app_context():
            if fog.health_check()["pool_waiting"] == 1:
                break
        time.sleep(0.05)
    response, took = timed_get(app)
    for thread in holders:
        thread.join(15)
    assert took < WITHIN
    assert response.status_code == 200
    body = response.get_json()
    assert (body["pool_size"], body["pool_in_use"], body["pool_waiting"]) == (2, 2, 1)
    assert_discreet(response, logs, secured.port)


def count_pings(server: RedisServer) -> int:
    stats = server.admin().info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


@pytest.mark.parametrize("cache_seconds", [1.0, 0.0])
def test_a_probe_storm_makes_at_most_one_ping_per_interval(
    redis_server: RedisServer, cache_seconds: float
) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_HEALTH_CACHE_SECONDS=cache_seconds)
    fog = FogRedis(app)
    redis_server.admin().config_resetstat()
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(200)

    def probe() -> None:
        client = app.test_client()
        barrier.wait()
        status = client.get("/health/redis").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=probe) for _ in range(200)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    took = time.monotonic() - start
    pings = count_pings(redis_server)
    assert statuses == [200] * 200
    with app.app_context():
        assert fog.state().probe.pings == pings
    if cache_seconds:
        assert 1 <= pings <= math.ceil(took / cache_seconds) + 1
    else:
        # No reuse at all: still one check in flight at a time, so the
        # storm's PINGs run one after another, far fewer than 200.
        assert 1 <= pings < 200


def test_a_storm_while_redis_is_down_answers_in_time(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    FogRedis(app)
    redis_server.kill()
    took: list[float] = []
    lock = threading.Lock()

    def probe() -> None:
        response, seconds = timed_get(app)
        assert response.status_code == 503
        with lock:
            took.append(seconds)

    threads = [threading.Thread(target=probe) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(took) == 50
    assert max(took) < WITHIN


def test_detailed_report_from_a_real_server(secured: RedisServer) -> None:
    secured.admin().config_set("maxmemory-policy", "allkeys-lru")
    app = make_app(REDIS_URL=secured.url, REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    FogRedis(app)
    client = app.test_client()
    assert client.get("/health/redis?details=1").status_code == 401
    response = client.get("/health/redis", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    details = response.get_json()["details"]
    version = secured.admin().info("server")["redis_version"]
    assert details["redis_version"] == version
    assert details["role"] == "master"
    assert details["maxmemory_policy"] == "allkeys-lru"
    assert details["used_memory"] > 0
    assert details["maxmemory"] == 0
    assert details["evicted_keys"] == 0
    assert details["connected_clients"] >= 1
    assert PASSWORD not in response.get_data(as_text=True)


def test_detailed_report_while_down_still_refuses_and_still_answers(
    secured: RedisServer,
) -> None:
    app = make_app(REDIS_URL=secured.url, REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    FogRedis(app)
    secured.kill()
    client = app.test_client()
    assert client.get("/health/redis?details=1").status_code == 401
    response, took = timed_get(app, headers={"Authorization": f"Bearer {TOKEN}"})
    assert took < WITHIN
    assert response.status_code == 503
    assert response.get_json()["details"]["redis_version"] is None


def wait_for_check(app: Flask, fog: FogRedis, seconds: float = 10) -> None:
    """Until the probe's first check has finished, whatever it found."""
    with app.app_context():
        probe = fog.state().probe
    deadline = time.monotonic() + seconds
    while probe.last is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert probe.last is not None


def test_healthy_through_a_200_ms_round_trip(secured: RedisServer) -> None:
    with latency_proxy(secured.port, delay=0.1) as proxy:
        app = make_app(
            REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{proxy.port}/0",
            REDIS_HEALTH_CACHE_SECONDS=0,
        )
        fog = FogRedis(app)
        # init_app's own look at the eviction policy used a connection of its own.
        opened_at_start = proxy.accepted
        # The first check pays for the handshake's round trips; it may
        # answer 503 while it connects, but the connection it opens stays.
        timed_get(app)
        wait_for_check(app, fog)
        for _ in range(4):
            response, took = timed_get(app)
            assert response.status_code == 200, response.get_json()
            assert took < WITHIN
            # The PING went through the proxy: two delays at least.
            assert response.get_json()["latency_ms"] >= 200
        assert proxy.accepted == opened_at_start + 1


def test_a_slow_pong_keeps_the_connection(secured: RedisServer) -> None:
    with latency_proxy(secured.port, delay=0.3) as proxy:
        app = make_app(
            REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{proxy.port}/0",
            REDIS_HEALTH_CACHE_SECONDS=0,
            REDIS_HEALTH_TIMEOUT=0.5,
        )
        fog = FogRedis(app)
        opened_at_start = proxy.accepted
        timed_get(app)
        wait_for_check(app, fog)
        with app.app_context():
            probe = fog.state().probe
        for _ in range(3):
            before = probe.pings
            response, took = timed_get(app)
            assert response.status_code == 503
            assert took < 0.5 + 0.2
            # Wait for the late PONG, which the check still reads.
            deadline = time.monotonic() + 5
            while (probe.pings == before or probe._flight is not None) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.01)
            last = probe.last
            assert last is not None
            assert (last.healthy, last.connected, last.error) == (False, True, "timeout")
        # One connection for every check: a slow reply is no reason to
        # start over (and pay the handshake again).
        assert proxy.accepted == opened_at_start + 1


def test_an_acl_without_ping_is_permission_denied(redis_server: RedisServer) -> None:
    redis_server.admin().acl_setuser(
        "reader", enabled=True, passwords=["+reader-pw-long"], keys=["*"], commands=["+get"]
    )
    app = make_app(REDIS_URL=f"redis://reader:reader-pw-long@127.0.0.1:{redis_server.port}/0")
    FogRedis(app)
    response = app.test_client().get("/health/redis")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["connected"], body["error"]) == (True, "permission denied")


def test_a_check_stuck_on_a_silent_server_is_reused_as_a_timeout(silent_port: int) -> None:
    """The check goes on past the bound (up to the socket timeout); while it
    does, its "timeout" answers the next requests at once, as a finished
    check's result would, rather than each waiting the bound again."""
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{silent_port}/0", REDIS_HEALTH_TIMEOUT=2)
    FogRedis(app)
    first, waited = timed_get(app)
    assert first.get_json()["error"] == "timeout"
    assert waited >= 1.5  # it waited for the check, most of the bound
    second, took = timed_get(app)
    assert second.status_code == 503
    assert second.get_json()["error"] == "timeout"
    assert took < 0.9
