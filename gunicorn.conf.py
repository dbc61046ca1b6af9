"""Gunicorn settings for the example app.

On the embedded store (no REDIS_URL) there is one worker with threads: the
store lives in one process, so several workers would each see their own.
"""

import os

from example_app import fog

bind = os.environ.get("BIND", "127.0.0.1:8000")
if os.environ.get("REDIS_URL"):
    workers = int(os.environ.get("WEB_CONCURRENCY", min(4, 2 * (os.cpu_count() or 1))))
else:
    workers = 1
threads = int(os.environ.get("THREADS", 4))
preload_app = True
timeout = 30
graceful_timeout = 20
keepalive = 5


def worker_exit(server: object, worker: object) -> None:
    """Close the worker's Redis connections as it exits."""
    app = getattr(worker, "wsgi", None)
    if app is not None:
        with app.app_context():
            fog.disconnect()
