"""Gunicorn settings for the example app.

With ``REDIS_URL`` set: several workers, each with its own pool of
``REDIS_POOL_SIZE`` connections (keep it at least ``THREADS``). Without it,
the embedded store lives inside one process, so there is one worker with
threads: several workers would each see a store of their own, and a token
revoked through one would still pass through the others.
"""

import ipaddress
import os
from typing import Any

from flask.helpers import get_debug_flag

from example_app import fog
from flask_fogredis import mark_process_dead

bind = os.environ.get("BIND", "127.0.0.1:8000")
if os.environ.get("REDIS_URL"):
    workers = int(os.environ.get("WEB_CONCURRENCY", min(4, 2 * (os.cpu_count() or 1))))
else:
    workers = 1
threads = int(os.environ.get("THREADS", 4))
# The app (and its pools) is built once in the master; each worker's pool
# starts afresh after the fork.
preload_app = True
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG") or None


def on_starting(server: Any) -> None:
    """Debug mode (``make run``) has known demo credentials: keep it on this
    machine. Raises SystemExit for any other address."""
    if not get_debug_flag():
        return
    for address in server.cfg.address:
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            raise SystemExit(
                f"Debug mode serves known demo credentials: bind it to 127.0.0.1 or ::1, "
                f"not {address[0]!r}. A deployment runs without FLASK_DEBUG."
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's Redis connections as it exits."""
    app = getattr(worker, "wsgi", None)
    if app is not None:
        with app.app_context():
            fog.disconnect()


def child_exit(server: Any, worker: Any) -> None:
    """With shared metrics, drop a dead worker's live gauges and fold its
    counts into the directory's archive, so the directory stays small."""
    mark_process_dead(worker.pid)
