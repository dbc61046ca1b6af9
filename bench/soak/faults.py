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
            if stop.wait(QUIET_SECONDS):
                return
