"""Real redis-server processes on free loopback ports, for the tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis


def require(program: str) -> str:
    """The path of ``program``; skips the test where it is missing, but fails
    under CI, where a skip would hide an untested feature."""
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_socket() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never sends a byte:
    a Redis that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


class RedisServer:
    """One redis-server in its own directory; start, stop, kill, restart."""

    def __init__(
        self,
        directory: Path,
        *args: str,
        password: str | None = None,
        port: int | None = None,
        exact: bool = False,
    ) -> None:
        """``args`` go after the test defaults (no persistence, ``--requirepass``
        from ``password``); with ``exact``, they are the only flags besides
        port, bind address, directory and log file."""
        self.exact = exact
        self.binary = require("redis-server")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        where = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.exact:
            return [self.binary, *self.args, *where]
        defaults = ["--save", "", "--appendonly", "no"]
        if self.password:
            defaults += ["--requirepass", self.password]
        return [self.binary, *where, *defaults, *self.args]

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Closed at once: a connection left to the garbage collector
                # would show up in the CLIENT LIST of the test that follows.
                with self.admin() as client:
                    if client.ping():
                        return
            except redis.BusyLoadingError:
                pass
            except redis.ConnectionError:
                if self.process is not None and self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server exited: {log[-2000:]}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def admin(self) -> redis.Redis:
        """A plain client for the test itself, outside the extension."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=5,
            decode_responses=True,
        )

    def kill(self) -> None:
        """SIGKILL: the server vanishes as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def shutdown(self) -> None:
        """A clean SHUTDOWN (persistence files are written as configured)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def stop(self) -> None:
        self.kill()
