"""Real failovers under a steady stream of requests: the app recovers without
a restart, and revocations acknowledged before stay in force after.

Each test prints the requests that failed and the time to recover, from the
failover command (Sentinel) or the kill (Cluster) to the first request of an
unbroken run of successes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_jwt_extended import create_access_token, jwt_required

from flask_fogredis import FogRedis

from .jwt_helpers import bearer, jwt_app
from .topologies import SERVICE, ClusterSet, SentinelSet, wait_for

pytestmark = pytest.mark.slow

DETAILS = "failover-details-token"


@dataclass
class Stream:
    """Requests sent one after another by ``threads`` threads until stopped."""

    send: Callable[[], bool]
    threads: int = 2
    results: list[tuple[float, float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run) for _ in range(self.threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok = self.send()
            except Exception:  # a crash in the app counts as a failed request
                ok = False
            with self._lock:
                self.results.append((started, time.monotonic(), ok))
            time.sleep(0.005)

    def __enter__(self) -> Stream:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def quiet_since(self, since: float, seconds: float) -> bool:
        """Whether every request in the last ``seconds`` succeeded, and they
        began after ``since``."""
        now = time.monotonic()
        with self._lock:
            recent = [ok for start, _, ok in self.results if start > max(since, now - seconds)]
        return len(recent) > 10 and all(recent) and now - since > seconds

    def figures(self, trigger: float) -> tuple[int, float, int]:
        """Failed requests, seconds from ``trigger`` to recovery, and all
        requests sent after ``trigger``."""
        after = sorted(r for r in self.results if r[1] >= trigger)
        failed = [r for r in after if not r[2]]
        if not failed:
            return 0, 0.0, len(after)
        last_failure_end = max(end for _, end, _ in failed)
        recovered = min(start for start, _, ok in after if ok and start >= last_failure_end)
        return len(failed), recovered - trigger, len(after)


def _stream_app(url: str, **config: Any) -> tuple[Flask, FogRedis]:
    app, fog, _ = jwt_app(url, REDIS_HEALTH_DETAILS_TOKEN=DETAILS, **config)
    counter = itertools.count()

    @app.get("/work")
    @jwt_required()
    def work() -> dict[str, int]:
        # A token check, a write and a read, on keys spread over the nodes.
        n = next(counter)
        fog.set(f"stream:{n % 32}", n)
        fog.set("stream:last", n)
        assert fog.get(f"stream:{n % 32}") is not None
        return {"n": n}

    return app, fog


def _report(what: str, failed: int, recovery: float, sent: int, extra: str = "") -> None:
    print(
        f"\n{what}: {failed} of {sent} requests failed, "
        f"recovered {recovery:.2f} s after the trigger{extra}"
    )


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    found = SentinelSet(tmp_path, down_after_ms=1000)
    try:
        yield found.start()
    finally:
        found.stop()


@pytest.fixture
def cluster_set(tmp_path: Path) -> Iterator[ClusterSet]:
    found = ClusterSet(tmp_path, node_timeout_ms=1000)
    try:
        yield found.start()
    finally:
        found.stop()


def test_sentinel_failover_under_load(sentinel_set: SentinelSet) -> None:
    app, fog = _stream_app(sentinel_set.url(), REDIS_JWT_WAIT_REPLICAS=1)
    client = app.test_client()
    with app.app_context():
        token = create_access_token("alice")
        revoked = create_access_token("alice")
        everywhere = create_access_token("mallory")
        # Acknowledged by the replica before the failover starts.
        assert fog.revoke_token(revoked)
        fog.revoke_all_tokens("mallory")
    old_host, old_port = sentinel_set.master_address()

    def send() -> bool:
        return app.test_client().get("/work", headers=bearer(token)).status_code == 200

    with Stream(send) as stream:
        time.sleep(1.0)
        trigger = time.monotonic()
        sentinel_set.sentinels[0].admin().execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait_for(lambda: sentinel_set.master_address()[1] != old_port, 30, "a new master")
        switched = time.monotonic() - trigger
        new_master = sentinel_set.server_at(sentinel_set.master_address()[1])
        admin = new_master.admin()
        seen = int(admin.get("stream:last") or -1)
        wait_for(lambda: int(admin.get("stream:last") or -1) > seen, 30, "a write on the new one")
        writing = time.monotonic() - trigger
        # Every request succeeds for 2 s.
        wait_for(lambda: stream.quiet_since(trigger, 2.0), 40, "requests to succeed")
    failed, recovery, sent = stream.figures(trigger)
    _report(
        "Sentinel failover",
        failed,
        recovery,
        sent,
        f"; sentinels named the new master after {switched:.2f} s, "
        f"the app's writes reached it after {writing:.2f} s",
    )
    assert recovery < 30 and writing < 30
    old = sentinel_set.server_at(old_port)
    wait_for(
        lambda: old.admin().info("replication")["role"] == "slave", 30, "the old master to follow"
    )
    # Still in force on the new master, and the app writes there.
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(everywhere)).status_code == 401
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    with app.app_context():
        fog.set("after-failover", "new master")
    assert new_master.admin().get("after-failover") == "new master"
    health = client.get("/health/redis?details=1", headers=bearer(DETAILS))
    assert health.status_code == 200
    assert health.get_json()["details"]["sentinel"]["master"] == f"127.0.0.1:{new_master.port}"
    assert old_host == "127.0.0.1"


def test_cluster_primary_killed_under_load(cluster_set: ClusterSet) -> None:
    app, fog = _stream_app(cluster_set.url(), REDIS_JWT_WAIT_REPLICAS=1)
    client = app.test_client()
    victim = cluster_set.primary_of("{alice}")
    # Another identity whose revocations live on the same primary.
    mallory = next(
        f"mallory-{n}"
        for n in range(10_000)
        if cluster_set.primary_of(f"{{mallory-{n}}}").port == victim.port
    )
    with app.app_context():
        token = create_access_token("alice")
        revoked = create_access_token("alice")
        everywhere = create_access_token(mallory)
        assert fog.revoke_token(revoked)
        fog.revoke_all_tokens(mallory)
        fog.cache_set("pages", "home", "cached before")

    def send() -> bool:
        return app.test_client().get("/work", headers=bearer(token)).status_code == 200

    with Stream(send) as stream:
        time.sleep(1.0)
        trigger = time.monotonic()
        victim.kill()
        wait_for(lambda: cluster_set.primary_of("{alice}").port != victim.port, 30, "a promotion")
        promoted = time.monotonic() - trigger
        wait_for(lambda: stream.quiet_since(trigger, 2.0), 40, "requests to succeed again")
    failed, recovery, sent = stream.figures(trigger)
    _report(
        "Cluster primary killed", failed, recovery, sent, f"; replica promoted in {promoted:.2f} s"
    )
    assert failed > 0  # the check's slot was on the killed node
    assert recovery < 30
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(everywhere)).status_code == 401
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    with app.app_context():
        for n in range(32):
            assert fog.get(f"stream:{n}") is not None  # every slot is served again
        assert fog.cache_clear_namespace("pages") == 1  # clearing walks the new primaries
    health = client.get("/health/redis?details=1", headers=bearer(DETAILS))
    assert health.status_code == 200
    assert health.get_json()["details"]["cluster"]["state"] == "ok"
