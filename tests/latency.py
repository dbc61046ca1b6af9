"""A TCP proxy on loopback that delays every byte by a fixed time each way:
a distant Redis, for the tests."""

from __future__ import annotations

import heapq
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class _DelayedPipe:
    """Copies ``source`` to ``sink``, each chunk ``delay`` seconds after it
    arrived, in order."""

    def __init__(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        self._source, self._sink, self._delay = source, sink, delay
        self._queue: list[tuple[float, int, bytes]] = []
        self._ready = threading.Condition()
        self._closed = False
        self._count = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self._source.recv(65536)
            except OSError:
                chunk = b""
            with self._ready:
                if not chunk:
                    self._closed = True
                else:
                    self._count += 1
                    due = time.monotonic() + self._delay
                    heapq.heappush(self._queue, (due, self._count, chunk))
                self._ready.notify()
            if not chunk:
                return

    def _write(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    break
                due, _, chunk = self._queue[0]
                pause = due - time.monotonic()
                if pause > 0:
                    self._ready.wait(pause)
                    continue
                heapq.heappop(self._queue)
            try:
                self._sink.sendall(chunk)
            except OSError:
                break
        for sock in (self._sink, self._source):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LatencyProxy:
    """Listens on a free loopback port and forwards each connection to
    ``127.0.0.1:target_port``, ``delay`` seconds late in each direction.
    ``accepted`` counts the connections clients opened through it."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.accepted = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.accepted += 1
            self._sockets += [client, upstream]
            _DelayedPipe(client, upstream, self.delay)
            _DelayedPipe(upstream, client, self.delay)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@contextmanager
def latency_proxy(target_port: int, delay: float) -> Iterator[LatencyProxy]:
    """A :class:`LatencyProxy` for the duration of the block."""
    proxy = LatencyProxy(target_port, delay)
    try:
        yield proxy
    finally:
        proxy.close()
