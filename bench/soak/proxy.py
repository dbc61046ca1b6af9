"""A TCP proxy between the app and one Redis, run as its own process so
that its forwarding does not share a GIL with the load generator.

``python -m bench.soak.proxy LISTEN_PORT TARGET_PORT``. SIGUSR1 adds
``DELAY`` seconds to every reply (Redis to app), SIGUSR2 removes it,
SIGTERM stops the proxy. When either side closes or fails, so does the
other: a CLIENT KILL or a dead Redis reaches the app as it would directly.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time
from types import FrameType

DELAY = 0.1
_delay = 0.0
_stop = threading.Event()


def _pump(source: socket.socket, sink: socket.socket, delayed: bool) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            if delayed and _delay:
                time.sleep(_delay)
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for side in (source, sink):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()


def _serve(client: socket.socket, target_port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port), timeout=2)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=_pump, args=(client, upstream, False), daemon=True).start()
    threading.Thread(target=_pump, args=(upstream, client, True), daemon=True).start()


def _set_delay(value: float) -> None:
    global _delay
    _delay = value


def main(argv: list[str]) -> int:
    listen_port, target_port = int(argv[0]), int(argv[1])

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            _set_delay(DELAY)
        elif signum == signal.SIGUSR2:
            _set_delay(0.0)
        else:
            _stop.set()

    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listener.listen(512)
    listener.settimeout(0.2)
    while not _stop.is_set():
        try:
            client, _ = listener.accept()
        except (TimeoutError, InterruptedError):
            continue
        except OSError:
            if _stop.is_set():
                break
            raise
        client.settimeout(None)
        _serve(client, target_port)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
