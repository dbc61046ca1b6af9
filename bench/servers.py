"""The processes a benchmark run needs: its own redis-server, gunicorn
serving one contender, and a Redis that accepts connections but never
answers. All on free loopback ports, all stopped by the run."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent

# The same for every contender: two processes of four threads, as a small
# service on two cores would run.
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4
# Connections one worker holds at most. Without a cap, the worker that wakes
# first can accept every connection the load generator opens at once: then
# one process serves all of them while the other idles, and throughput of
# the same app varies threefold from run to run. With the load generator's
# connections at twice this, each worker gets half.
GUNICORN_WORKER_CONNECTIONS = 8
# Under gevent every connection is a greenlet: the cap is what the load
# generator opens (GEVENT_CONNECTIONS), split between the workers the same way.
GEVENT_CONNECTIONS = 100


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway redis-server: no persistence, loopback only."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is missing: apt-get install redis-server")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.directory = directory
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        """A plain client for the harness itself."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def version(self) -> str:
        return str(self.admin().info("server")["redis_version"])

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.admin().ping():
                    return
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError("redis-server exited at start") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


class Gunicorn:
    """One contender app (``bench.apps``, chosen by ``BENCH_APP``) under
    gunicorn with the shared worker and thread counts (``gthread``), or the
    same workers with ``gevent``."""

    def __init__(
        self, app: str, env: dict[str, str], log: Path, worker_class: str = "gthread"
    ) -> None:
        self.name = app
        self.port = free_port()
        self.log = log
        environment = {**os.environ, **env, "BENCH_APP": app, "PYTHONPATH": str(ROOT)}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(GUNICORN_WORKERS),
                    "--threads",
                    str(GUNICORN_THREADS),
                    "--worker-class",
                    worker_class,
                    "--worker-connections",
                    str(
                        GUNICORN_WORKER_CONNECTIONS
                        if worker_class == "gthread"
                        else GEVENT_CONNECTIONS // GUNICORN_WORKERS
                    ),
                    "--log-level",
                    "warning",
                    "bench.apps:create_app()",
                ],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn ({self.name}) exited:\n{self.tail()}")
            try:
                urllib.request.urlopen(self.base + "/__ready__", timeout=1)
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"gunicorn ({self.name}) did not start:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 10
    ) -> tuple[int, dict[str, str], bytes]:
        """One GET; status, headers and body, errors included."""
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class SilentRedis:
    """A Redis that is down in the worst way: it accepts connections and
    reads commands but never answers. Counts what reached it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self.pings = 0
        self._tails: dict[socket.socket, bytes] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def counts(self) -> tuple[int, int]:
        """Connections accepted and PING commands received so far."""
        return self.connections, self.pings

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    self._selector.register(conn, selectors.EVENT_READ)
                    self._tails[conn] = b""
                    self.connections += 1
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(sock)
                    self._tails.pop(sock, None)
                    sock.close()
                    continue
                # A command name can straddle two reads: keep a short tail.
                seen = self._tails[sock] + data
                self.pings += seen.upper().count(b"PING\r\n")
                self._tails[sock] = seen[-5:]

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for sock in list(self._tails):
            sock.close()
        self._listener.close()
        self._selector.close()
