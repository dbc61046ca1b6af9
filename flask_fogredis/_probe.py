"""A bounded PING on a connection of its own.

The probe never borrows from the app's pool, so an exhausted pool cannot make
it wait. The PING runs in a short-lived thread of its own and callers wait for
its result at most the bound: however many round trips opening a connection
takes (AUTH, HELLO, CLIENT SETINFO, SELECT), and however long an unresponsive
server stays silent, the caller answers in time. One check is in flight at a
time; callers that arrive meanwhile share its result, and a result younger
than the caller's ``max_age`` is reused without any PING.

Only the PING's round trip is held against the bound. Opening the connection
is bounded by the app's own connect and socket timeouts, and a connection
that opened is kept for the next check, even when its PING was slow: on a
distant Redis (a 200 ms round trip, say) the handshake is paid once, not by
every check. A late reply is still read, so the connection stays in step;
only a reply that never comes (the socket timeout) closes it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import AbstractConnection

from ._config import Settings
from ._connections import pool_stats
from ._forking import renew_locks_after_fork, reset_after_fork

logger = logging.getLogger("flask_fogredis")

# Kept from the bound for the rest of the request once the wait is over, so
# that the whole HTTP answer, not just the wait, fits in the bound on a busy
# machine: a fifth of it, at most 0.2 s.
_MARGIN = 0.2


@dataclass(frozen=True)
class PingResult:
    """One check: ``connected`` means the server answered at all (a wrong
    password or a loading dataset still counts); ``healthy``, that it
    answered PONG in time. ``error`` is a short category, never exception
    text. ``info`` is the server's INFO, when the probe collects it."""

    healthy: bool
    connected: bool
    latency: float
    error: str | None
    info: Mapping[str, str] | None = None


class _Flight:
    """A check in progress, which any number of callers may wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: PingResult | None = None
        # When a caller last stopped waiting for it: a check that outlives
        # the bound (opening a connection to a silent server) is itself a
        # result, "timeout", reused like any other.
        self.gave_up_at: float | None = None


class HealthProbe:
    """PINGs Redis within ``timeout`` seconds and remembers the last answer.

    ``connect`` makes the probe's connection, not yet open (see
    :func:`topology.single_connection`). ``collect_info`` adds an INFO after
    each successful PING (for the detailed health report); ``on_result`` is
    called with every finished check.
    """

    def __init__(
        self,
        settings: Settings,
        pool: redis.BlockingConnectionPool,
        timeout: float,
        connect: Callable[[], AbstractConnection],
        *,
        collect_info: bool = False,
        on_result: Callable[[PingResult], None] | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._connect = connect
        self.timeout = timeout
        self.collect_info = collect_info
        self.on_result = on_result
        # Called with the previous and the new result of every check (the
        # availability signals).
        self.on_change: Callable[[PingResult | None, PingResult], None] | None = None
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        self._flight: _Flight | None = None
        self._connection: AbstractConnection | None = None
        self._last: PingResult | None = None
        self._last_at = 0.0
        self.pings = 0
        reset_after_fork(self, _forget_parent_check)

    @property
    def wait_budget(self) -> float:
        """How long a caller waits for a check: the bound minus a margin."""
        return max(self.timeout - min(_MARGIN, self.timeout / 5), 0.001)

    @property
    def last(self) -> PingResult | None:
        """The latest finished check, if any."""
        return self._last

    def check(self, max_age: float = 0.0) -> dict[str, Any]:
        """The health report, reusing a check at most ``max_age`` seconds old
        (0: a fresh one, or the one in flight). Never raises for an outage."""
        return self.report(self.result(max_age))

    def result(self, max_age: float = 0.0) -> PingResult:
        """The latest check if younger than ``max_age``; otherwise the result
        of the check in flight (started now if there is none), or a timeout
        if it does not finish within the bound."""
        timed_out = PingResult(
            healthy=False, connected=False, latency=self.wait_budget, error="timeout"
        )
        with self._lock:
            now = time.monotonic()
            last = self._last
            if last is not None and max_age > 0 and now - self._last_at < max_age:
                return last
            flight = self._flight
            if flight is None:
                flight = self._flight = _Flight()
                threading.Thread(
                    target=self._fly, args=(flight,), name="fogredis-health", daemon=True
                ).start()
            elif max_age > 0 and now - (flight.gave_up_at or -math.inf) < max_age:
                return timed_out
        if flight.done.wait(self.wait_budget) and flight.result is not None:
            return flight.result
        flight.gave_up_at = time.monotonic()
        return timed_out

    def report(self, result: PingResult) -> dict[str, Any]:
        """The public fields of ``result``, with the pool as it is now."""
        stats = pool_stats(self._pool)
        return {
            "healthy": result.healthy,
            "connected": result.connected,
            "latency_ms": round(result.latency * 1000, 3),
            "pool_size": stats["size"],
            "pool_in_use": stats["in_use"],
            "pool_waiting": stats["waiting"],
            "error": result.error,
        }

    def forget(self) -> None:
        """Forget the last check and the count of PINGs: the next caller
        waits for a fresh check."""
        with self._lock:
            self._last, self._last_at = None, 0.0
            self.pings = 0

    def close(self) -> None:
        """Close the probe's connection (it reopens on the next check)."""
        with self._lock:
            connection, self._connection = self._connection, None
            idle = self._flight is None
        # A check in flight still holds the connection; it is closed when
        # that check lets go of it.
        if connection is not None and idle:
            connection.disconnect()

    def _after_fork(self) -> None:
        # The parent's thread and socket are not the child's: forget them
        # (redis-py never shuts down a socket opened by another process).
        self._flight = None
        self._connection = None

    def _fly(self, flight: _Flight) -> None:
        try:
            result = self._ping()
        except Exception as exc:  # a check must answer its waiters whatever happens
            # The type only: exception text may name the host.
            logger.warning("Redis health check failed unexpectedly: %s", type(exc).__name__)
            result = PingResult(healthy=False, connected=False, latency=0.0, error="error")
        try:
            # All before the result is published: whoever sees it (a metrics
            # scrape waiting for this check, say) sees the log line and the
            # observer's record too.
            self._log_change(self._last, result)
            if self.on_change is not None:
                self.on_change(self._last, result)
            if self.on_result is not None:
                self.on_result(result)
        finally:
            with self._lock:
                self._last, self._last_at = result, time.monotonic()
                if self._flight is flight:
                    self._flight = None
            flight.result = result
            flight.done.set()

    def _log_change(self, previous: PingResult | None, result: PingResult) -> None:
        # Changes only: a failing Redis probed every second must not flood
        # the log. The key names where to look; the host is not printed.
        was_healthy = previous is None or previous.healthy
        if was_healthy and not result.healthy:
            logger.warning(
                "Redis health check failing (%s): %s", self._settings.key("URL"), result.error
            )
        elif not was_healthy and result.healthy:
            logger.info("Redis health check passing again (%s)", self._settings.key("URL"))

    def _conn(self) -> AbstractConnection:
        if self._connection is None:
            # The app's own timeouts, not the bound: callers stop waiting at
            # the bound anyway, while the check goes on to open the
            # connection (or hear a late PONG) for the checks after it.
            self._connection = self._connect()
        return self._connection

    @staticmethod
    def _open(connection: AbstractConnection) -> None:
        """Connect, replacing a kept connection that the server closed while
        it sat idle (a restart, ``timeout``, ``CLIENT KILL``), as the pool
        does: that is no outage."""
        reused = getattr(connection, "_sock", None) is not None
        connection.connect()
        if not reused:
            return
        try:
            stale = connection.can_read()
        except (redis.ConnectionError, OSError):
            stale = True
        if stale:
            connection.disconnect()
            connection.connect()

    def _ping(self) -> PingResult:
        connection = self._conn()
        start = time.perf_counter()
        error: str | None = None
        connected = True
        latency = 0.0
        try:
            self._open(connection)
            self.pings += 1
            sent = time.perf_counter()
            connection.send_command("PING")
            reply = connection.read_response()
            latency = time.perf_counter() - sent
            if reply not in ("PONG", b"PONG", True):
                error = "unexpected reply"
            elif latency > self.wait_budget:
                # Too slow to call healthy, but the reply was read: the
                # connection is in step and stays open for the next check.
                return PingResult(healthy=False, connected=True, latency=latency, error="timeout")
        except redis.AuthenticationError:
            error = "authentication failed"
        except redis.exceptions.NoPermissionError:
            error = "permission denied"
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
            return PingResult(
                healthy=False,
                connected=connected,
                latency=time.perf_counter() - start,
                error=error,
            )
        info = self._info(connection) if self.collect_info else None
        return PingResult(healthy=True, connected=True, latency=latency, error=None, info=info)

    def _info(self, connection: AbstractConnection) -> Mapping[str, str] | None:
        """INFO on the probe's connection; None if the server refuses it (an
        ACL without INFO) or fails to answer."""
        try:
            connection.send_command("INFO")
            return parse_info(connection.read_response())
        except redis.RedisError:
            connection.disconnect()
            return None


def parse_info(reply: object) -> dict[str, str]:
    """INFO's ``field:value`` lines as a dict of strings."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition(":")
            if sep:
                fields[name] = value
    return fields


def info_number(*values: str | None) -> int | None:
    """The sum of INFO fields that are whole numbers (one field, usually);
    None when none of them is."""
    found = [int(v) for v in values if v is not None and v.isdigit()]
    return sum(found) if found else None


def _forget_parent_check(probe: HealthProbe) -> None:
    probe._after_fork()
