"""The processes of a soak: redis-server(s) on free loopback ports, each
behind a proxy of its own (``proxy.py``), and the sentinels of the Sentinel
topology. Every process started here is stopped by ``close()``."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "soak"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def wait_until(condition: object, timeout: float, what: str) -> None:
    """Call ``condition`` until it returns true; TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    """INFO ``section`` as a dict (redis-py's annotation allows other types)."""
    answer: Any = client.info(section)
    return dict(answer)


def _master_state(sentinel: redis.Redis) -> dict[str, Any]:
    """What one sentinel knows of the soak's primary."""
    answer: Any = sentinel.sentinel_master(SERVICE)
    return dict(answer)


def _online_replicas(node: Redis) -> int:
    """How many replicas ``node`` streams to (state ``online``: their copy
    is loaded); 0 when it is not a primary."""
    state = _info(node.admin(), "replication")
    if state.get("role") != "master":
        return 0
    return sum(
        1
        for name, value in state.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


class Proxy:
    """One proxy process in front of one port."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.soak.proxy", str(self.port), str(target_port)],
            cwd=ROOT,
        )
        wait_until(self._accepts, 10, "the proxy")

    def _accepts(self) -> bool:
        socket.create_connection(("127.0.0.1", self.port), 1).close()
        return True

    def delay(self, on: bool) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def close(self) -> None:
        stop(self.process)


class Redis:
    """One redis-server with AOF (appendfsync everysec) in its own directory,
    behind a proxy; ``announce`` makes it name its proxy's port when it
    serves as a replica, so that Sentinel hands out proxied addresses."""

    def __init__(self, directory: Path, *args: str, announce: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (./scripts/ensure-redis-server)")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proxy = Proxy(self.port)
        self.args = list(args)
        if announce:
            self.args += ["--replica-announce-ip", "127.0.0.1"]
            self.args += ["--replica-announce-port", str(self.proxy.port)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Redis:
        command = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command)
        wait_until(lambda: self.admin().ping(), 30, f"redis-server on port {self.port}")
        return self

    def admin(self) -> redis.Redis:
        """A direct client (not through the proxy) for the injector and the
        watcher. It never retries: a retry would wait through an outage
        (seconds, with redis-py's default backoff) that they must see."""
        return redis.Redis(
            port=self.port, socket_timeout=5, decode_responses=True, retry=Retry(NoBackoff(), 0)
        )

    def kill9_restart(self, down_seconds: float) -> None:
        """SIGKILL, ``down_seconds`` with no server, then start it again on
        the same port and AOF, as a primary (the sentinels, if any, decide
        what it becomes)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        if "--replicaof" in self.args:
            at = self.args.index("--replicaof")
            del self.args[at : at + 3]
        time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        stop(self.process)
        self.proxy.close()


class Topology:
    """What the app connects to and what the injector acts on."""

    url: str
    nodes: list[Redis]
    wait_replicas = 0

    def primary(self) -> Redis:
        return self.nodes[0]

    def whole(self) -> bool:
        """Whether revocations can be acknowledged: enough replicas in sync
        for ``wait_replicas`` (always, when they wait for none)."""
        return True

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class Single(Topology):
    """One Redis with AOF, through its proxy."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [Redis(directory / "redis").start()]
        self.url = f"redis://127.0.0.1:{self.nodes[0].proxy.port}/0"


# A full resync starts at once instead of waiting (5 s by default) for more
# replicas to ask: with one replica, waiting only prolongs the time when
# revocations cannot be acknowledged (docs/scaling.md).
SYNC_NOW = ("--repl-diskless-sync-delay", "0")


class SentinelSet(Topology):
    """A primary, a replica and three sentinels (quorum 2); the data nodes
    behind proxies, which the sentinels watch and name."""

    wait_replicas = 1

    def __init__(self, directory: Path) -> None:
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.nodes = []
        try:
            self._start(directory)
        except BaseException:
            self.close()  # what started, so that nothing outlives the run
            raise

    def _start(self, directory: Path) -> None:
        first = Redis(directory / "node0", *SYNC_NOW, announce=True).start()
        self.nodes.append(first)
        replica = Redis(
            directory / "node1",
            "--replicaof", "127.0.0.1", str(first.proxy.port),
            *SYNC_NOW,
            announce=True,
        ).start()  # fmt: skip
        self.nodes.append(replica)
        # Online, not merely connected: until its first copy is loaded a
        # replica acknowledges nothing, and every revocation would wait.
        wait_until(lambda: _online_replicas(first) == 1, 30, "the replica to sync")
        ports = []
        for number in range(3):
            folder = directory / f"sentinel{number}"
            folder.mkdir(parents=True)
            port = free_port()
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {first.proxy.port} 2\n"
                # Longer than a CLIENT PAUSE, so a pause alone fails nothing over.
                f"sentinel down-after-milliseconds {SERVICE} 3000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            self.sentinels.append(subprocess.Popen([str(first.binary), str(conf), "--sentinel"]))
            ports.append(port)
        self.sentinel_ports = ports
        for port in ports:
            wait_until(
                lambda port=port: self._ask(port)[1] == first.proxy.port, 20, "the sentinels"
            )
        wait_until(
            lambda: all(
                int(_master_state(self._sentinel(p))["num-other-sentinels"]) == 2 for p in ports
            ),
            30,
            "the sentinels to see each other",
        )
        hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}/0"

    @staticmethod
    def _sentinel(port: int) -> redis.Redis:
        return redis.Redis(
            port=port, socket_timeout=2, decode_responses=True, retry=Retry(NoBackoff(), 0)
        )

    def _ask(self, port: int) -> tuple[str, int]:
        answer: Any = self._sentinel(port).sentinel_get_master_addr_by_name(SERVICE)
        host, proxied = answer
        return str(host), int(proxied)

    def primary(self) -> Redis:
        """The node the sentinels name as primary now."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError, TypeError):
                proxied = self._ask(port)[1]
                return next(node for node in self.nodes if node.proxy.port == proxied)
        return self.nodes[0]

    def whole(self) -> bool:
        """Whether the primary streams to (``online``) as many replicas as
        revocations wait for: the ones that can acknowledge a ``WAIT``."""
        return _online_replicas(self.primary()) >= self.wait_replicas

    def failover(self, timeout: float) -> None:
        """SENTINEL FAILOVER, then wait until the other node is primary and
        answers as one."""
        before = self.primary()
        self._sentinel(self.sentinel_ports[0]).execute_command("SENTINEL FAILOVER", SERVICE)

        def moved() -> bool:
            now = self.primary()
            return now is not before and _info(now.admin(), "replication")["role"] == "master"

        wait_until(moved, timeout, "the failover")

    def close(self) -> None:
        for process in self.sentinels:
            stop(process)
        super().close()
