"""Logging that an outage cannot turn into a flood."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ._forking import renew_locks_after_fork

if TYPE_CHECKING:
    from flask import Flask


class RateLimitedLog:
    """At most one line per ``interval`` seconds for each incident kind; the
    next line says how many were held back."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            message += " (%d more like this since the last report)"
            args = (*args, held)
        self._logger.warning(message, *args)


LOGGER_NAME = "flask_fogredis"
# Where gunicorn writes its error log (--error-logfile, or stderr).
_GUNICORN = "gunicorn.error"


class _Forward(logging.Handler):
    """Hands the ``flask_fogredis`` logger's records to gunicorn's error log
    when the process runs under gunicorn, else to the app's logger: by
    default they would reach only Python's last-resort stderr, which
    ``gunicorn --daemon`` points at /dev/null. Steps back once the root
    logger has handlers of its own (logging configured after ``init_app``)."""

    def __init__(self) -> None:
        super().__init__()
        self.apps: list[weakref.ref[Flask]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # propagation reaches the app's own logging setup
        gunicorn = logging.getLogger(_GUNICORN)
        if gunicorn.handlers:
            gunicorn.handle(record)
            return
        for ref in self.apps:
            app = ref()
            if app is not None:
                app.logger.handle(record)
                return
        if logging.lastResort is not None and record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(record)


_forward = _Forward()


def forward_records(app: Flask) -> None:
    """Make the ``flask_fogredis`` logger's records reach gunicorn's error
    log or ``app.logger``, unless logging is configured (the logger or the
    root has a handler; then records go where that configuration says)."""
    logger = logging.getLogger(LOGGER_NAME)
    if _forward in logger.handlers:
        _forward.apps.append(weakref.ref(app))
        return
    if logger.handlers or logging.getLogger().handlers:
        return
    _forward.apps.append(weakref.ref(app))
    logger.addHandler(_forward)
