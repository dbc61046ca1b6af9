"""A Redis Cluster that changes under the app: a failover, a reshard while
revocations run, a primary added with slots moved to it, a primary killed.

For each: revocations (with and without ``REDIS_JWT_WAIT_REPLICAS``) that
returned are in force afterwards, what fails is "unavailable" (never "the
command was refused", never a 500), and a clear leaves nothing of its
namespace on any node. Each test prints what failed and how long it took.

The tests share one cluster and change it in turn, in file order.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from flask_jwt_extended import create_access_token

from flask_fogredis import FogRedis, RedisUnavailableError

from .jwt_helpers import bearer, jwt_app
from .servers import RedisServer, require
from .topologies import ClusterSet, cluster_info, free_cluster_port, wait_for

pytestmark = pytest.mark.slow

NAMESPACE = "pages"
DETAILS = "cluster-change-details-token"


@pytest.fixture(scope="module")
def cluster_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    found = ClusterSet(tmp_path_factory.mktemp("changing"), node_timeout_ms=1000)
    try:
        yield found.start()
    finally:
        found.stop()


@dataclass
class Outcomes:
    """What the revocations sent during a change gave, by kind."""

    sent: list[int] = field(default_factory=lambda: [0, 0])
    unavailable: list[tuple[float, int]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)


class Revoker:
    """Threads that each revoke a fresh identity's tokens (log out
    everywhere) and one token by jti, one after another, until stopped: on
    an app that waits for a replica and on one that does not."""

    def __init__(self, apps: list[tuple[Flask, FogRedis]], limit: int = 5000) -> None:
        self.apps = apps
        self.limit = limit
        self.outcomes = Outcomes()
        self.tokens: list[tuple[Flask, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._count = 0
        self._threads = [
            threading.Thread(target=self._run, args=(n,)) for n in range(len(apps) * 2)
        ]

    def _run(self, number: int) -> None:
        which = number % len(self.apps)
        app, fog = self.apps[which]
        n = 0
        while not self._stop.is_set() and self._count < self.limit:
            n += 1
            identity = f"user-{number}-{n}"
            with app.app_context():
                everywhere = create_access_token(identity)
                single = create_access_token(f"{identity}-single")
                try:
                    fog.revoke_all_tokens(identity)
                    assert fog.revoke_token(single)
                except RedisUnavailableError:
                    with self._lock:
                        self.outcomes.unavailable.append((time.monotonic(), which))
                except Exception as exc:  # the point: nothing else may escape
                    with self._lock:
                        self.outcomes.broken.append(f"{type(exc).__name__}: {exc}")
                else:
                    with self._lock:
                        self.tokens += [(app, everywhere), (app, single)]
            with self._lock:
                self._count += 1
                self.outcomes.sent[which] += 1
            time.sleep(0.02)

    def __enter__(self) -> Revoker:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def report(self, what: str, trigger: float) -> str:
        """Per app (``WAIT 1``, then none): revocations that were unavailable,
        of those sent, and the last of them, in seconds after ``trigger``."""
        found = self.outcomes
        parts = []
        for which, label in enumerate(("with WAIT 1", "without WAIT")):
            times = [when - trigger for when, app in found.unavailable if app == which]
            last = f", the last {max(times):.2f} s after the trigger" if times else ""
            parts.append(f"{label} {len(times)} of {found.sent[which]} unavailable{last}")
        line = f"{what}: " + "; ".join(parts) + f"; {len(found.broken)} broken"
        print("\n" + line)
        return line

    def check_in_force(self) -> None:
        """Every token whose revocation returned is refused now."""
        assert not self.outcomes.broken, self.outcomes.broken[:3]
        assert self.tokens
        for app, token in self.tokens:
            status = app.test_client().get("/protected", headers=bearer(token)).status_code
            assert status == 401, status


def _apps(cluster_set: ClusterSet) -> list[tuple[Flask, FogRedis]]:
    found = []
    for wait in (1, 0):
        app, fog, _ = jwt_app(
            cluster_set.url(), REDIS_JWT_WAIT_REPLICAS=wait, REDIS_HEALTH_DETAILS_TOKEN=DETAILS
        )
        with app.app_context():
            fog.set("warm", "1")  # the layout is read now, before the change
        found.append((app, fog))
    return found


def _fill(fog: FogRedis, app: Flask, count: int = 200) -> None:
    with app.app_context():
        for n in range(count):
            assert fog.cache_set(NAMESPACE, f"entry-{n}", "old")


def _left_behind(cluster_set: ClusterSet, app: Flask, fog: FogRedis) -> list[str]:
    """Keys of the namespace on any live primary."""
    with app.app_context():
        prefix = fog.state().cache.namespace_prefix(NAMESPACE)
    found = []
    for node in cluster_set.alive():
        admin = node.admin()
        if admin.info("replication")["role"] == "master":
            found += list(admin.scan_iter(match=prefix + "*", count=1000))
    return found


def _node_id(node: RedisServer) -> str:
    return str(node.admin().execute_command("CLUSTER", "MYID"))


def _primaries(cluster_set: ClusterSet) -> list[RedisServer]:
    return [n for n in cluster_set.alive() if n.admin().info("replication")["role"] == "master"]


def _settled(cluster_set: ClusterSet) -> Callable[[], bool]:
    def check() -> bool:
        for node in cluster_set.alive():
            info = cluster_info(node.admin())
            if info["cluster_state"] != "ok" or info["cluster_slots_ok"] != "16384":
                return False
        return True

    return check


def _reshard(cluster_set: ClusterSet, source: RedisServer, target: RedisServer, slots: int) -> None:
    subprocess.run(
        [
            require("redis-cli"),
            "--cluster",
            "reshard",
            f"127.0.0.1:{source.port}",
            "--cluster-from",
            _node_id(source),
            "--cluster-to",
            _node_id(target),
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wait_for(_settled(cluster_set), 60, "every node to see the new layout")


def _wait_replicated(primary: RedisServer) -> None:
    wait_for(
        lambda: int(primary.admin().info("replication")["connected_slaves"]) >= 1,
        30,
        "the primary's replica to be linked",
    )


def test_a_failover(cluster_set: ClusterSet) -> None:
    apps = _apps(cluster_set)
    _fill(apps[0][1], apps[0][0])
    old = cluster_set.primary_of("{user-0-1}")
    old_id = _node_id(old)
    replica = next(
        n
        for n in cluster_set.alive()
        if n.admin().info("replication").get("master_port") == old.port
    )
    with Revoker(apps) as revoker:
        time.sleep(0.5)
        trigger = time.monotonic()
        replica.admin().execute_command("CLUSTER", "FAILOVER")
        wait_for(lambda: cluster_set.primary_of("{user-0-1}").port == replica.port, 30, "failover")
        _wait_replicated(replica)
        time.sleep(1.0)
    revoker.report(f"CLUSTER FAILOVER (primary {old_id[:8]})", trigger)
    revoker.check_in_force()
    with apps[0][0].app_context():
        assert apps[0][1].cache_clear_namespace(NAMESPACE) == 200
    assert _left_behind(cluster_set, *apps[0]) == []


def test_a_reshard_under_load(cluster_set: ClusterSet) -> None:
    apps = _apps(cluster_set)
    _fill(apps[0][1], apps[0][0])
    source, target = _primaries(cluster_set)[:2]
    with Revoker(apps) as revoker:
        time.sleep(0.5)
        trigger = time.monotonic()
        _reshard(cluster_set, source, target, 300)
        moved = time.monotonic() - trigger
        time.sleep(0.5)
    revoker.report(f"Reshard of 300 slots (took {moved:.1f} s)", trigger)
    revoker.check_in_force()
    with apps[0][0].app_context():
        assert apps[0][1].cache_clear_namespace(NAMESPACE) == 200
    assert _left_behind(cluster_set, *apps[0]) == []


def test_a_primary_added_with_slots(cluster_set: ClusterSet, tmp_path: Path) -> None:
    apps = _apps(cluster_set)
    # Two more workers: one clears, and has sent nothing since it started;
    # the other writes entries after the change.
    clearer, clearer_fog = _apps(cluster_set)[1]
    writer, writer_fog, _ = jwt_app(cluster_set.url())
    taken = {n.port for n in cluster_set.nodes} | {n.port + 10000 for n in cluster_set.nodes}
    added = RedisServer(
        tmp_path / "added",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "1000",
        port=free_cluster_port(taken),
    ).start()
    cluster_set.nodes.append(added)
    subprocess.run(
        [
            require("redis-cli"),
            "--cluster",
            "add-node",
            f"127.0.0.1:{added.port}",
            f"127.0.0.1:{cluster_set.nodes[0].port}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    wait_for(lambda: cluster_info(added.admin())["cluster_state"] == "ok", 60, "the node to join")
    with Revoker(apps) as revoker:
        time.sleep(0.3)
        trigger = time.monotonic()
        _reshard(cluster_set, _primaries(cluster_set)[0], added, 200)
        time.sleep(0.5)
    revoker.report("Primary added, 200 slots moved to it", trigger)
    revoker.check_in_force()
    _fill(writer_fog, writer, 1000)
    with clearer.app_context():
        prefix = clearer_fog.state().cache.namespace_prefix(NAMESPACE)
    assert list(added.admin().scan_iter(match=prefix + "*"))  # some are on the new node
    with clearer.app_context():
        assert clearer_fog.cache_clear_namespace(NAMESPACE) == 1000
    assert _left_behind(cluster_set, clearer, clearer_fog) == []


def test_a_primary_killed(cluster_set: ClusterSet) -> None:
    apps = _apps(cluster_set)
    _fill(apps[0][1], apps[0][0])
    victim = cluster_set.primary_of("{user-0-1}")
    # Workers that start while a shard is down; their users live elsewhere.
    healthy = next(f"h{n}" for n in range(1000) if cluster_set.primary_of(f"{{h{n}}}") != victim)
    idle = _apps(cluster_set)[1][0]  # a worker that sends nothing meanwhile
    with idle.app_context():
        idle_token = create_access_token(
            next(f"i{n}" for n in range(1000) if cluster_set.primary_of(f"{{i{n}}}") == victim)
        )
    assert idle.test_client().get("/protected", headers=bearer(idle_token)).status_code == 200
    lenient, _, _ = jwt_app(cluster_set.url())
    strict, _, _ = jwt_app(cluster_set.url(), REDIS_JWT_STRICT_EVICTION=True)
    with lenient.app_context():
        token = create_access_token(healthy)
    with Revoker(apps) as revoker:
        time.sleep(0.5)
        trigger = time.monotonic()
        victim.kill()
        # The eviction-policy check cannot read every primary: only strict
        # mode refuses tokens for it.
        assert lenient.test_client().get("/protected", headers=bearer(token)).status_code == 200
        assert strict.test_client().get("/protected", headers=bearer(token)).status_code == 503
        wait_for(lambda: cluster_set.primary_of("{user-0-1}").port != victim.port, 30, "promotion")
        promoted = time.monotonic() - trigger
        time.sleep(1.5)
    health = idle.test_client().get("/health/redis?details=1", headers=bearer(DETAILS))
    found = health.get_json()["details"]["cluster"]
    assert found["failing_nodes"] == [f"127.0.0.1:{victim.port}"]
    promoted_at = cluster_set.primary_of("{user-0-1}").port
    assert f"127.0.0.1:{promoted_at}" in found["primaries_without_replica"]
    # Its first request after the failover reaches the new primary.
    assert idle.test_client().get("/protected", headers=bearer(idle_token)).status_code == 200
    revoker.report(f"Primary killed (replica promoted after {promoted:.2f} s)", trigger)
    assert revoker.outcomes.unavailable  # the killed node held revocations
    revoker.check_in_force()
    with apps[0][0].app_context():
        assert apps[0][1].cache_clear_namespace(NAMESPACE) == 200
    assert _left_behind(cluster_set, *apps[0]) == []


def _unserve(cluster_set: ClusterSet, slot: int) -> None:
    """Leave ``slot`` without a primary on every live node. A gossip message
    sent before its owner let go can give it back to a node: DELSLOTS again
    until every node has seen it unserved twice in a row."""
    settled = 0
    deadline = time.monotonic() + 10
    while settled < 2:
        assert time.monotonic() < deadline, f"slot {slot} kept coming back"
        served = False
        for node in cluster_set.alive():
            admin = node.admin()
            ranges = admin.execute_command("CLUSTER", "SLOTS")
            if any(int(first) <= slot <= int(last) for first, last, *_ in ranges):
                served = True
                admin.execute_command("CLUSTER", "DELSLOTS", slot)
        settled = 0 if served else settled + 1
        time.sleep(0.1)


def test_a_clear_refuses_a_cluster_with_a_slot_unserved(cluster_set: ClusterSet) -> None:
    app, fog = _apps(cluster_set)[1]
    slot = int(cluster_set.alive()[0].admin().execute_command("CLUSTER", "KEYSLOT", "unserved"))
    _unserve(cluster_set, slot)
    with app.app_context(), pytest.raises(RedisUnavailableError, match="16383 of 16384 slots"):
        fog.cache_clear_namespace(NAMESPACE)
