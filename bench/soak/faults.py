"""The fault injector: every few seconds one fault, in an order shuffled
afresh each round so that a short run still meets every kind. Each fault is
undone before the next, and recorded from its start to the moment it was
undone."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from .load import History
from .servers import SentinelSet, Topology, wait_until

QUIET_SECONDS = 3.0
PAUSE_MS = 2000
LATENCY_SECONDS = 10.0
FULL_SECONDS = 5.0
KILL_DOWN_SECONDS = 1.0
# How long a replica may take to be in sync again after a fault (Sentinel
# demotes a failed-over primary when it next reads its INFO: up to 10 s).
RESYNC_SECONDS = 60.0
# Bytes above what Redis uses when "full" starts: the next few writes fill
# it, and every write after them is refused (CONFIG SET is still allowed).
FULL_HEADROOM = 1024


def kill9(topology: Topology) -> None:
    topology.primary().kill9_restart(KILL_DOWN_SECONDS)


def client_kill(topology: Topology) -> None:
    admin = topology.primary().admin()
    # The near cache's listener is a pub/sub client: kill it too.
    admin.execute_command("CLIENT KILL TYPE normal")
    admin.execute_command("CLIENT KILL TYPE pubsub")


def pause(topology: Topology) -> None:
    topology.primary().admin().execute_command("CLIENT PAUSE", PAUSE_MS)
    time.sleep(PAUSE_MS / 1000)


def latency(topology: Topology) -> None:
    for node in topology.nodes:
        node.proxy.delay(True)
    try:
        time.sleep(LATENCY_SECONDS)
    finally:
        for node in topology.nodes:
            node.proxy.delay(False)


def full(topology: Topology) -> None:
    admin = topology.primary().admin()
    memory: Any = admin.info("memory")
    used = int(memory["used_memory"])
    admin.config_set("maxmemory", used + FULL_HEADROOM)
    try:
        time.sleep(FULL_SECONDS)
    finally:
        admin.config_set("maxmemory", 0)


def failover(topology: Topology) -> None:
    assert isinstance(topology, SentinelSet)
    topology.failover(timeout=30)


FAULTS: dict[str, Callable[[Topology], None]] = {
    "kill9": kill9,
    "client_kill": client_kill,
    "pause": pause,
    "latency": latency,
    "full": full,
}


def kinds(topology: Topology) -> list[str]:
    names = list(FAULTS)
    if isinstance(topology, SentinelSet):
        names.append("failover")
    return names


def run(
    topology: Topology, history: History, stop: threading.Event, seed: int, errors: list[str]
) -> None:
    """Inject faults until ``stop`` is set; the fault under way is finished
    and undone first. A fault that cannot be injected or undone is put in
    ``errors`` and ends the injection."""
    rng = random.Random(seed)
    actions = {**FAULTS, "failover": failover}
    while not stop.wait(QUIET_SECONDS):
        order = kinds(topology)
        rng.shuffle(order)
        for kind in order:
            t_start = time.time()
            try:
                actions[kind](topology)
                # Whichever node is primary now must answer before it is over.
                wait_until(lambda: topology.primary().admin().ping(), 30, "Redis after " + kind)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                return
            finally:
                history.add(
                    {"type": "fault", "kind": kind, "t_start": t_start, "t_end": time.time()}
                )
            try:
                _whole_again(topology)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                errors.append(f"after {kind}: {type(exc).__name__}: {exc}")
                return
            if stop.wait(QUIET_SECONDS):
                return


def _whole_again(topology: Topology) -> None:
    """Wait until a replica is in sync again, if revocations wait for one:
    the next fault (a failover above all) starts from a whole topology.
    The wait is the watcher's to record, not the fault's."""
    wait_until(topology.whole, RESYNC_SECONDS, "a replica in sync")


WATCH_SECONDS = 0.05


def watch_replicas(topology: Topology, history: History, stop: threading.Event) -> None:
    """Record each time the primary has fewer replicas in sync than
    revocations wait for (``{"type": "unsynced"}``), until ``stop`` is set.
    Nothing to watch on a topology whose revocations wait for none."""
    if not topology.wait_replicas:
        return
    since: float | None = None
    while True:
        now = time.time()
        try:
            synced = topology.whole()
        except (redis.RedisError, OSError):
            synced = False
        if synced and since is not None:
            history.add({"type": "unsynced", "t_start": since, "t_end": now})
            since = None
        elif not synced and since is None:
            since = now
        if stop.wait(WATCH_SECONDS):
            break
    if since is not None:
        history.add({"type": "unsynced", "t_start": since, "t_end": time.time()})
