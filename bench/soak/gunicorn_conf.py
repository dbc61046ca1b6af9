"""Gunicorn settings for the soak: two workers of the class in
``SOAK_WORKER`` (gthread or gevent), on ``SOAK_BIND``, the app built once in
the master as the example's own settings do."""

import os
from typing import Any

bind = os.environ["SOAK_BIND"]
workers = 2
worker_class = os.environ.get("SOAK_WORKER", "gthread")
threads = 4
worker_connections = 100
preload_app = True
timeout = 30
graceful_timeout = 5
keepalive = 5


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's Redis connections as it exits."""
    from example_app import fog

    app = getattr(worker, "wsgi", None)
    if app is not None:
        with app.app_context():
            fog.disconnect()
