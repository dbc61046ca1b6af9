"""Building the blocking pool for a validated target, and turning redis-py's
errors into the extension's own."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from queue import Empty, Full
from types import TracebackType
from typing import Any, Literal

import redis
from redis.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from ._config import Settings, Target
from ._errors import ConfigurationError, FogRedisError, RedisCommandError, RedisUnavailableError

_BACKOFF_CAP = 1.0
# Keys asked of each SCAN, and deleted by each UNLINK, when clearing a pattern.
SCAN_COUNT = 1000
UNLINK_BATCH = 500

# Called with the last key of each batch before it is deleted.
BeforeUnlink = Callable[[Any], None]


class RetryConnect:
    """Retries a refused connection attempt, with capped exponential backoff
    and full jitter (so that workers do not reconnect in step).

    Only opening a connection is retried: nothing has been sent yet, so a retry
    cannot run a command twice. A command whose reply is lost is never re-sent
    (redis-py's own retry would re-send an INCR).
    """

    def __init__(
        self,
        *args: Any,
        fog_retry_attempts: int = 0,
        fog_retry_backoff: float = 0.05,
        **kwargs: Any,
    ) -> None:
        self._fog_attempts = fog_retry_attempts
        self._fog_backoff = fog_retry_backoff
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        # The pool calls this for every command it hands out a connection
        # for: an open connection returns at once (redis-py's own connect
        # makes the same check, but only inside its retry wrapper).
        if getattr(self, "_sock", None) is not None:
            return
        attempt = 0
        while True:
            try:
                super().connect()  # type: ignore[misc]
                return
            except redis.AuthenticationError:
                raise
            except redis.ConnectionError:
                if attempt >= self._fog_attempts:
                    raise
            pause = min(_BACKOFF_CAP, self._fog_backoff * 2**attempt)
            time.sleep(random.uniform(0, pause))
            attempt += 1


class FogConnection(RetryConnect, Connection):
    """TCP connection that retries a refused connect."""


class FogSSLConnection(RetryConnect, SSLConnection):
    """TLS connection that retries a refused connect."""


class FogUnixConnection(RetryConnect, UnixDomainSocketConnection):
    """Unix-socket connection that retries a refused connect."""


_memory_stores: dict[str, Any] = {}
_memory_lock = threading.Lock()


def _memory_server(name: str) -> Any:
    """A fakeredis server: a private one for ``memory://``, a shared one per
    name for ``memory://name``."""
    try:
        import fakeredis
    except ImportError:
        raise ConfigurationError(
            "memory:// needs fakeredis: pip install 'flask-fogredis[memory]'."
        ) from None
    if not name:
        return fakeredis.FakeServer()
    with _memory_lock:
        return _memory_stores.setdefault(name, fakeredis.FakeServer())


def node_options(settings: Settings) -> tuple[type[AbstractConnection], dict[str, Any]]:
    """The connection class and keyword arguments of one data node, without
    its address for Sentinel and Cluster targets."""
    target = settings.target
    options: dict[str, Any] = dict(target.connection)
    options.update(
        socket_connect_timeout=settings.connect_timeout,
        socket_timeout=settings.socket_timeout,
        health_check_interval=settings.health_check_interval,
        decode_responses=settings.decode_responses,
    )
    if settings.client_name:
        options["client_name"] = settings.client_name
    if settings.credential_provider is not None:
        options["credential_provider"] = settings.credential_provider
    if target.scheme == "memory":
        from fakeredis import FakeRedisConnection

        options["server"] = _memory_server(options.pop("store", ""))
        return FakeRedisConnection, options
    options.update(
        fog_retry_attempts=settings.retry_attempts, fog_retry_backoff=settings.retry_backoff
    )
    if target.scheme == "unix":
        return FogUnixConnection, options
    options["socket_keepalive"] = settings.keepalive
    return (FogSSLConnection if target.tls else FogConnection), options


class PoolQueue:
    """The blocking pool's free slots, last returned first out, counting the
    callers waiting for one.

    It provides what redis-py's ``BlockingConnectionPool`` asks of its
    ``queue_class`` (``get``, ``put_nowait``, and the slots as ``queue``),
    on a lock and a condition of :mod:`threading` as it is when the queue
    is made: gevent's, under a gevent worker (redis-py makes a new queue in
    every forked child). Nothing here depends on the :mod:`queue` module's
    internals, which gevent replaces. A caller that finds a slot free takes
    the lock once and never counts as waiting. ``observe``, when given, is
    called after every take and return (the shared metrics use it).
    """

    def __init__(self, maxsize: int, observe: Callable[[PoolQueue], None] | None = None) -> None:
        self.maxsize = maxsize
        # A list, not a deque: redis-py iterates it while others take and
        # return slots.
        self.queue: list[AbstractConnection | None] = []
        self.waiting = 0
        self._observe = observe
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)

    def qsize(self) -> int:
        """Free slots now."""
        return len(self.queue)

    def get(self, block: bool = True, timeout: float | None = None) -> AbstractConnection | None:
        """Take the slot returned last; without one, wait up to ``timeout``
        seconds (None: for ever) if ``block``. Raises :class:`queue.Empty`
        when none is free in time."""
        with self._lock:
            if not self.queue:
                if not block:
                    raise Empty
                self.waiting += 1
                try:
                    if not self._returned.wait_for(lambda: self.queue, timeout):
                        raise Empty
                finally:
                    self.waiting -= 1
            item = self.queue.pop()
        if self._observe is not None:
            self._observe(self)
        return item

    def put_nowait(self, item: AbstractConnection | None) -> None:
        """Return a slot, waking one waiter. Raises :class:`queue.Full` when
        every slot is already free."""
        with self._lock:
            if len(self.queue) >= self.maxsize:
                raise Full
            self.queue.append(item)
            if self.waiting:
                self._returned.notify()
        if self._observe is not None:
            self._observe(self)


class FogBlockingPool(BlockingConnectionPool):
    """A blocking pool whose ``repr`` (and so the client's) never shows the
    connection options: redis-py before 7.4 printed the password there."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(max_connections={self.max_connections})>"


def build_pool(
    settings: Settings, observe: Callable[[PoolQueue], None] | None = None
) -> BlockingConnectionPool:
    """The blocking pool of one Redis server for ``settings``: created
    empty, it connects lazily. ``observe`` is told of every connection taken
    or returned. Sentinel and Cluster have pools of their own (see
    :func:`topology.build_client`)."""
    connection_class, options = node_options(settings)
    return FogBlockingPool(  # type: ignore[no-untyped-call]
        max_connections=settings.pool_size,
        timeout=settings.pool_timeout,
        connection_class=connection_class,
        # redis-py makes a new queue after a fork by calling queue_class(size).
        queue_class=partial(PoolQueue, observe=observe),
        **options,
    )


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def unlink_matching(
    client: redis.Redis, pattern: str, before_unlink: BeforeUnlink | None = None
) -> int:
    """Delete the keys matching ``pattern`` on one server: SCAN, and UNLINK
    in batches, never KEYS (which blocks Redis). Returns how many."""
    removed = 0
    for batch in batched(client.scan_iter(match=pattern, count=SCAN_COUNT), UNLINK_BATCH):
        if before_unlink is not None:
            before_unlink(batch[-1])
        removed += int(client.unlink(*batch))
    return removed


def pool_stats(pool: BlockingConnectionPool) -> dict[str, int]:
    """Size, open, idle and in-use connections of ``pool``, and the callers
    waiting for one. For a cluster's pools, their sum (size: per node)."""
    if hasattr(pool, "stats"):
        return pool.stats()  # type: ignore[no-any-return]
    created = len(getattr(pool, "_connections", ()))
    idle = sum(1 for conn in list(pool.pool.queue) if conn is not None)
    return {
        "size": pool.max_connections,
        "open": created,
        "idle": idle,
        "in_use": max(created - idle, 0),
        "waiting": getattr(pool.pool, "waiting", 0),
    }


def describe(target: Target, exc: BaseException, *secrets: str | None) -> str:
    """A short, password-free sentence about a redis-py error."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = _PIPELINE_LABEL.sub("", text)
    for secret in (target.password, *secrets):
        if secret:
            text = text.replace(secret, "***")
    return text


# BlockingConnectionPool's only signal that no connection was free in time.
POOL_EXHAUSTED = "No connection available."
# A cluster that is failing over, or a slot no node serves yet: try again soon.
_CLUSTER_UNAVAILABLE = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
)
_CROSS_SLOT = "same key slot"
# A full server (on Cluster it says "max number of clients + cluster
# connections reached", which redis-py does not take for a connection error).
_MAX_CLIENTS = "max number of clients"
# What redis-py's text holds when the TLS handshake failed.
_TLS_FAILURE = re.compile(r"CERTIFICATE_VERIFY_FAILED|SSL|certificate", re.IGNORECASE)
# How redis-py labels an error in a pipeline: it quotes the command, keys and
# values (identities, jtis) included.
_PIPELINE_LABEL = re.compile(r"Command # \d+ \(.*?\) of pipeline caused error: ", re.DOTALL)


class translated:
    """Re-raise redis-py errors as the extension's, with password-free text
    that says which key to change.

    Named and used like a function (``with translated(settings):``). A
    class rather than a generator-based context manager: it wraps every
    command, and a generator costs about three times as much to enter and
    leave.
    """

    __slots__ = ("_settings",)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if isinstance(exc, (redis.RedisError, redis.exceptions.RedisClusterException)):
            raise _translate(self._settings, exc) from None
        if _closed_under_us(exc, traceback):
            target = self._settings.target
            raise RedisUnavailableError(
                f"Redis at {target.display} is unavailable: the connection closed mid-reply"
            ) from None
        return False


_CLOSED_FILE = "I/O operation on closed file."


def _closed_under_us(exc: BaseException | None, traceback: TracebackType | None) -> bool:
    """Whether redis-py failed reading a connection that was closed under it.

    redis-py 7.0's cluster client, when a node fails, disconnects that
    node's connections while other threads are reading them: the reader
    then raises ``ValueError("I/O operation on closed file.")`` or, its
    parser's buffer gone, ``AttributeError("'NoneType' object has no
    attribute 'readline'")``. Both mean the connection is gone; only an
    AttributeError raised inside redis-py itself is taken for one.
    """
    if isinstance(exc, ValueError):
        return str(exc) == _CLOSED_FILE
    if not isinstance(exc, AttributeError) or not str(exc).startswith(_NO_BUFFER):
        return False
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback is not None and str(
        traceback.tb_frame.f_globals.get("__name__", "")
    ).startswith("redis.")


_NO_BUFFER = "'NoneType' object has no attribute"


def _translate(settings: Settings, exc: Exception) -> FogRedisError:
    target = settings.target
    secret = settings.sentinel_password
    if isinstance(exc, redis.AuthenticationError):
        where = (
            f"the credentials {settings.key('CREDENTIAL_PROVIDER')} gives"
            if settings.credential_provider is not None
            else f"the password in {settings.key('URL')}"
        )
        return RedisUnavailableError(
            f"Redis at {target.display} refused the credentials "
            f"({describe(target, exc, secret)}): check {where}."
        )
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        if str(exc) == POOL_EXHAUSTED:
            return RedisUnavailableError(
                f"No free connection to Redis at {target.display} within "
                f"{settings.pool_timeout:g} s (all {settings.pool_size} in use): raise "
                f"{settings.key('POOL_SIZE')} or {settings.key('POOL_TIMEOUT')}, or hold "
                "connections for less time."
            )
        what = "did not answer in time" if isinstance(exc, redis.TimeoutError) else "is unavailable"
        hint = ""
        if _TLS_FAILURE.search(str(exc)):
            hint = (
                f". The TLS handshake failed: check {settings.key('SSL_CA_CERTS')} (the CA "
                f"that signed the server's certificate), {settings.key('SSL_CHECK_HOSTNAME')} "
                "and the host name in the URL"
            )
        return RedisUnavailableError(
            f"Redis at {target.display} {what}: {describe(target, exc, secret)}{hint}"
        )
    if isinstance(exc, redis.ResponseError) and _MAX_CLIENTS in str(exc):
        return RedisUnavailableError(
            f"Redis at {target.display} has no room for another connection (maxclients): "
            f"{describe(target, exc, secret)}. Raise maxclients, or lower "
            f"{settings.key('POOL_SIZE')} or the number of processes."
        )
    if isinstance(exc, _CLUSTER_UNAVAILABLE):
        return RedisUnavailableError(
            f"Redis Cluster at {target.display} cannot serve the command now: "
            f"{describe(target, exc, secret)}"
        )
    if isinstance(exc, redis.exceptions.RedisClusterException):
        # The cluster client's own: no node answers (an outage), or keys of
        # one command in different slots (a mistake in the command).
        if _CROSS_SLOT in str(exc):
            return RedisCommandError(
                f"Redis Cluster at {target.display} cannot run it: {describe(target, exc, secret)}"
            )
        return RedisUnavailableError(
            f"Redis Cluster at {target.display} is unavailable: {describe(target, exc, secret)}"
        )
    return RedisCommandError(
        f"Redis at {target.display} refused the command: {describe(target, exc, secret)}"
    )
