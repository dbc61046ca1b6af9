"""Redis behind Sentinel: a blocking pool whose connections go to the master
the sentinels name, and single connections (health probe) that do the same
(the near cache's listener goes to the master the pool names).

redis-py ships no blocking Sentinel pool. :class:`SentinelBlockingPool`
inherits both: pool size and wait timeout keep their meaning, and every new
connection asks the sentinels where the master is. After a failover the
connections to the old master are dropped (the demoted server closes them, or
answers READONLY, which redis-py turns into a reconnect) and the next ones
open to the new master.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, BlockingConnectionPool
from redis.retry import Retry
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from ._config import Settings
from ._connections import FogConnection, FogSSLConnection, PoolQueue, RetryConnect, node_options
from ._probe import HealthProbe, PingResult

# Before redis-py 7.0 BlockingConnectionPool.disconnect() takes no argument,
# and SentinelConnectionPool calls it with inuse_connections=False.
_DISCONNECT_TAKES_FLAG = (
    "inuse_connections" in inspect.signature(BlockingConnectionPool.disconnect).parameters
)


class FogSentinelConnection(RetryConnect, SentinelManagedConnection):
    """A pooled connection to the current master; a refused connect is
    retried, asking the sentinels again each time."""


class FogSentinelSSLConnection(RetryConnect, SentinelManagedSSLConnection):
    """:class:`FogSentinelConnection` over TLS."""


class SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """A blocking pool of connections to the master of ``service_name``.

    Every ``check_interval`` seconds (0: never) a caller taking a connection
    first asks the sentinels who the master is. When they name another, the
    idle connections are closed and the busy ones are closed when returned,
    so that writes stop going to a demoted master within about that time:
    a master demoted by a failover keeps accepting writes until the
    sentinels reconfigure it (about ten seconds later with Redis 7), and it
    drops them when it follows the new master.
    """

    def __init__(self, *args: Any, check_interval: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.check_interval = check_interval
        self._next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.check_interval and now >= self._next_check:
            self._next_check = now + self.check_interval
            # No sentinel answers: keep the connections that work.
            with contextlib.suppress(redis.ConnectionError):
                self.get_master_address()  # type: ignore[no-untyped-call]
        return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections, or only the idle ones."""
        if _DISCONNECT_TAKES_FLAG:
            super().disconnect(inuse_connections=inuse_connections)
        elif inuse_connections:
            super().disconnect()
        else:
            # Only those waiting in the pool: the ones lent out finish their
            # command, and are checked against the master when returned.
            self._checkpid()
            for connection in list(self.pool.queue):
                if connection is not None:
                    connection.disconnect()


class _MasterDirect:
    """A single connection that asks the sentinels for the master each time
    it connects."""

    def __init__(self, *args: Any, fog_sentinel: Sentinel, fog_service: str, **kwargs: Any) -> None:
        self.sentinel = fog_sentinel
        self.service = fog_service
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        if getattr(self, "_sock", None) is None:
            self.host, self.port = self.sentinel.discover_master(self.service)
        super().connect()  # type: ignore[misc]


class MasterConnection(_MasterDirect, FogConnection):
    """One connection, outside any pool, to the current master."""


class MasterSSLConnection(_MasterDirect, FogSSLConnection):
    """:class:`MasterConnection` over TLS."""


def sentinel_manager(settings: Settings) -> Sentinel:
    """The sentinels of ``settings``: short timeouts and no retries, so that a
    dead or silent sentinel costs at most ``SENTINEL_TIMEOUT`` before the next
    is asked (and redis-py then asks the one that answered first)."""
    target = settings.target
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.sentinel_timeout,
        "socket_timeout": settings.sentinel_timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    if settings.sentinel_username:
        options["username"] = settings.sentinel_username
    if settings.sentinel_password:
        options["password"] = settings.sentinel_password
    if target.tls:
        options["ssl"] = True
        options.update({n: v for n, v in target.connection.items() if n.startswith("ssl_")})
    return Sentinel(list(target.nodes), sentinel_kwargs=options)


def _data_options(options: dict[str, Any]) -> dict[str, Any]:
    # host and port come from the sentinels on every connect.
    options.pop("host", None)
    options.pop("port", None)
    return options


def master_connection_options(
    settings: Settings, options: dict[str, Any]
) -> tuple[type[AbstractConnection], dict[str, Any]]:
    """The class and options of a lone connection to the master (see
    :func:`topology.connection_options`)."""
    options = _data_options(options)
    options.update(fog_sentinel=sentinel_manager(settings), fog_service=settings.target.service)
    return (MasterSSLConnection if settings.target.tls else MasterConnection), options


def build_sentinel_pool(
    settings: Settings, observe: Callable[[PoolQueue], None] | None
) -> SentinelBlockingPool:
    """The blocking pool of connections to the master; it connects lazily.
    ``observe`` is told of every connection taken or returned."""
    options = _data_options(node_options(settings)[1])
    return SentinelBlockingPool(
        settings.target.service,
        sentinel_manager(settings),
        max_connections=settings.pool_size,
        timeout=settings.pool_timeout,
        connection_class=FogSentinelSSLConnection if settings.target.tls else FogSentinelConnection,
        queue_class=partial(PoolQueue, observe=observe),
        is_master=True,
        check_interval=settings.sentinel_check_interval,
        **options,
    )


def reported_master(connection: AbstractConnection) -> str | None:
    """``host:port`` of the master the sentinels name now, for a connection
    made by :func:`master_connection_options`; None if none is named. Closes
    the connection when it is open to another server, so that the next use
    goes to the master."""
    assert isinstance(connection, _MasterDirect)
    host, port = connection.sentinel.discover_master(connection.service)
    if getattr(connection, "_sock", None) is not None and (
        connection.host,
        connection.port,
    ) != (host, port):
        connection.disconnect()  # type: ignore[no-untyped-call]
    return f"{host}:{port}"


class SentinelProbe(HealthProbe):
    """The health check of a Sentinel target: asks the sentinels for the
    master, then PINGs it (reconnecting when the sentinels name another)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.master: str | None = None

    def _ping(self) -> PingResult:
        connection = self._conn()
        try:
            self.master = reported_master(connection)
        except redis.ConnectionError:  # MasterNotFoundError: no sentinel names one
            self.master = None
            connection.disconnect()
            return PingResult(healthy=False, connected=False, latency=0.0, error="no master")
        return super()._ping()

    def _after_fork(self) -> None:
        super()._after_fork()
        self.master = None

    def details(self) -> dict[str, Any]:
        return {"sentinel": {"service": self._settings.target.service, "master": self.master}}
