"""A gunicorn config that folds a dead worker's metric files."""

from typing import Any

from flask_fogredis import mark_process_dead


def child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)
