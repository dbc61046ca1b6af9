"""Sentinel and Cluster setups of real redis-server processes on loopback,
with short failure-detection times so that failovers take seconds."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis

from .servers import RedisServer, require

SERVICE = "mymaster"


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, LookupError):  # not there yet (a slot with no primary)
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (port + 10000) is free too."""
    while True:
        # Bus ports below the kernel's ephemeral range (32768 and up), where
        # no outgoing connection can take one before its node binds it.
        port = random.randint(20000, 22767)
        if port in taken or port + 10000 in taken:
            continue
        if _port_is_free(port) and _port_is_free(port + 10000):
            taken.update((port, port + 10000))
            return port


class SentinelSet:
    """A master, one replica and three sentinels (quorum 2) watching it."""

    def __init__(
        self,
        directory: Path,
        down_after_ms: int = 1000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        """``password`` protects the data nodes, ``sentinel_password`` the
        sentinels."""
        self.directory = directory
        self.password = password
        self.sentinel_password = sentinel_password
        self.auth = ["--masterauth", password] if password else []
        self.master = RedisServer(
            directory / "master",
            "--repl-diskless-sync-delay",
            "0",
            *self.auth,
            password=password,
        )
        self.replica: RedisServer | None = None
        self.sentinels: list[RedisServer] = []
        self.down_after_ms = down_after_ms

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica = RedisServer(
            self.directory / "replica",
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
            "--repl-diskless-sync-delay",
            "0",
            *self.auth,
            password=self.password,
        ).start()
        wait_for(
            lambda: (
                self.master.admin().info("replication")["connected_slaves"] == 1
                and self.replica is not None
                and self.replica.admin().info("replication")["master_link_status"] == "up"
            ),
            15,
            "the replica to sync",
        )
        for number in range(3):
            folder = self.directory / f"sentinel{number}"
            folder.mkdir(parents=True)
            conf = folder / "sentinel.conf"
            lines = [
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                f"sentinel failover-timeout {SERVICE} 10000",
                f"sentinel parallel-syncs {SERVICE} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
            if self.sentinel_password:
                lines.append(f"requirepass {self.sentinel_password}")
                lines.append(f"sentinel sentinel-pass {self.sentinel_password}")
            conf.write_text("\n".join(lines) + "\n")
            sentinel = RedisServer(
                folder, str(conf), "--sentinel", exact=True, password=self.sentinel_password
            )
            self.sentinels.append(sentinel.start())
        wait_for(self._settled, 20, "the sentinels to see each other and the replica")
        return self

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            state = master_state(sentinel)
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True

    def url(self, scheme: str = "redis+sentinel", first: list[str] | None = None) -> str:
        """The URL of the set, with ``first`` hosts put before the sentinels."""
        hosts = [*(first or []), *(f"127.0.0.1:{s.port}" for s in self.sentinels)]
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}{','.join(hosts)}/{SERVICE}/0"

    def master_address(self) -> tuple[str, int]:
        state = master_state(self.sentinels[0])
        return str(state["ip"]), int(state["port"])

    def server_at(self, port: int) -> RedisServer:
        assert self.replica is not None
        return self.master if self.master.port == port else self.replica

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            if server is not None:
                server.stop()


def master_state(sentinel: RedisServer) -> dict[str, Any]:
    """What ``sentinel`` knows of the master, read with SENTINEL MASTERS: on
    a plain client, redis-py 7.0's SENTINEL MASTER and GET-MASTER-ADDR-BY-NAME
    fail in their reply parsers (an unexpected ``return_responses``)."""
    masters: Any = sentinel.admin().sentinel_masters()
    return cast(dict[str, Any], masters[SERVICE])


def cluster_info(admin: redis.Redis) -> dict[str, str]:
    reply = admin.execute_command("CLUSTER", "INFO")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class ClusterSet:
    """Three primaries with a replica each, as ``redis-cli --cluster create``
    makes them."""

    def __init__(self, directory: Path, node_timeout_ms: int = 1000) -> None:
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []

    def start(self) -> ClusterSet:
        cli = require("redis-cli")
        taken: set[int] = set()
        for number in range(6):
            node = RedisServer(
                self.directory / f"node{number}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                # Long while the nodes meet: a handshake slower than this (on a
                # busy machine) is dropped for good. Shortened once joined.
                "--cluster-node-timeout",
                "15000",
                "--cluster-replica-validity-factor",
                "0",
                "--repl-diskless-sync-delay",
                "0",
                port=free_cluster_port(taken),
            )
            self.nodes.append(node.start())
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        wait_for(self._settled, 60, "the cluster to be ok on every node")
        for node in self.nodes:
            node.admin().config_set("cluster-node-timeout", self.node_timeout_ms)
        return self

    def _settled(self) -> bool:
        for node in self.nodes:
            info = cluster_info(node.admin())
            if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != 6:
                return False
        links = [node.admin().info("replication").get("master_link_status") for node in self.nodes]
        return links.count("up") == 3

    def url(self, scheme: str = "redis+cluster", count: int = 3) -> str:
        return f"{scheme}://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:count])

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def primary_of(self, key: str) -> RedisServer:
        """The node that serves ``key`` now, as the live nodes see it."""
        admin = self.alive()[0].admin()
        slot = int(admin.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, primary, *_ in admin.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
