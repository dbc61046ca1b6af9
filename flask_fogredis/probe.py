"""A bounded PING on a connection of its own.

The probe never borrows from the app's pool, so an exhausted pool cannot make
it wait, and its timeouts are short, so an unresponsive server cannot hang the
caller. One check runs at a time; callers that arrive meanwhile reuse its
result instead of sending PINGs of their own.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from redis.connection import AbstractConnection

from .config import Settings
from .connections import connection_options, pool_stats


class HealthProbe:
    """PINGs Redis within ``timeout`` seconds and remembers the last answer."""

    def __init__(
        self, settings: Settings, pool: redis.BlockingConnectionPool, timeout: float
    ) -> None:
        self._settings = settings
        self._pool = pool
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: AbstractConnection | None = None
        self._pid = os.getpid()
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0
        self.pings = 0

    def check(self, max_age: float = 0.0) -> dict[str, Any]:
        """The health report, reusing one at most ``max_age`` seconds old."""
        fresh = self._fresh(max_age)
        if fresh is not None:
            return fresh
        # Half the bound to wait for a check in flight, half for our own PING.
        if not self._lock.acquire(timeout=self.timeout / 2):
            return self._report(
                healthy=False, connected=False, latency=self.timeout / 2, error="timeout"
            )
        try:
            fresh = self._fresh(max_age)
            if fresh is not None:
                return fresh
            report = self._ping()
            self._last, self._last_at = report, time.monotonic()
            return dict(report)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the probe's connection (it reopens on the next check)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.disconnect()
            self._connection = None

    def _fresh(self, max_age: float) -> dict[str, Any] | None:
        last = self._last
        if last is not None and max_age > 0 and time.monotonic() - self._last_at < max_age:
            return dict(last)
        return None

    def _conn(self) -> AbstractConnection:
        if self._pid != os.getpid():
            # Forked: the parent's socket is not ours to use or to shut down.
            self._connection, self._pid = None, os.getpid()
        if self._connection is None:
            connection_class, options = connection_options(self._settings)
            step = self.timeout / 2
            options.update(
                socket_connect_timeout=step, socket_timeout=step, health_check_interval=0
            )
            options.pop("fog_retry_attempts", None)
            options.pop("fog_retry_backoff", None)
            self._connection = connection_class(**options)
        return self._connection

    def _ping(self) -> dict[str, Any]:
        """One PING. ``connected`` means the server answered at all (a wrong
        password or a loading dataset still counts); ``healthy``, that it
        answered PONG."""
        connection = self._conn()
        start = time.perf_counter()
        error: str | None = None
        connected = True
        try:
            connection.connect()
            self.pings += 1
            connection.send_command("PING")
            if connection.read_response() not in ("PONG", b"PONG", True):
                error = "unexpected reply"
        except redis.AuthenticationError:
            error = "authentication failed"
        except redis.BusyLoadingError:
            error = "loading"
        except redis.TimeoutError:
            error, connected = "timeout", False
        except redis.ConnectionError:
            error, connected = "unreachable", False
        except redis.RedisError:
            error = "error"
        if error is not None:
            connection.disconnect()
        return self._report(
            healthy=error is None,
            connected=connected,
            latency=time.perf_counter() - start,
            error=error,
        )

    def _report(
        self, *, healthy: bool, connected: bool, latency: float, error: str | None
    ) -> dict[str, Any]:
        stats = pool_stats(self._pool)
        return {
            "healthy": healthy,
            "connected": connected,
            "latency_ms": round(latency * 1000, 3),
            "pool_size": stats["size"],
            "pool_in_use": stats["in_use"],
            "error": error,
        }
