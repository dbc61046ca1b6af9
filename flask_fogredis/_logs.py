"""Logging that an outage cannot turn into a flood."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ._forking import renew_locks_after_fork


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
