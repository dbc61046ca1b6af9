"""A near cache: recent answers kept in process memory, invalidated by Redis.

One listener connection per process (per Redis) turns on ``CLIENT TRACKING``
in broadcast mode for the extension's key prefixes, redirected to itself,
and subscribes to ``__redis__:invalidate`` (RESP2, so it works on every
redis-py from 5.0.1 and on Redis 6+; redis-py's own client-side cache needs
RESP3 and a newer server). Every write, deletion or expiry of a key under
those prefixes, by any client, reaches every process as an invalidation
message, and the local copy is dropped.

Why a local copy is never staler than one network delivery:

- A read first puts a placeholder for its key, then asks Redis, and stores
  the answer only if the placeholder is still there. A write that Redis
  applies after the read sends its invalidation after the read's reply; if
  the invalidation is processed before the reply arrives, it removes the
  placeholder and the stale answer is not stored; if after, it removes the
  stored answer. A write applied before the read is already in the answer.
- While the listener is not subscribed (starting, reconnecting, after a
  CLIENT KILL or a Redis restart), or when a PING through it is not
  answered in time (it is behind), the cache is flushed and bypassed, and
  every read that began before is discarded (an epoch counter): nothing
  learned while invalidations could have been missed is kept.
- Behind Sentinel the channel opens to the master the pool names, and
  moves when the pool's master changes (the listener also asks the sentinels
  every ``SENTINEL_CHECK_INTERVAL``, so that a process answering only from
  memory notices a failover too). While the two differ, nothing is answered
  from memory; the move flushes the cache.

Memory stays bounded: entries and read placeholders count against
``max_entries``, and a writer's waiter (see :meth:`NearCache.expect`) is
dropped after a few seconds if its invalidation never comes (a write that
wrote nothing, or failed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import redis
from redis.connection import AbstractConnection

from ._config import Settings
from ._forking import renew_locks_after_fork, reset_after_fork

logger = logging.getLogger("flask_fogredis")

CHANNEL = "__redis__:invalidate"
_ENTRY_OVERHEAD = 100  # bytes a cached entry costs beyond its key and value
# A writer waits for its invalidation a tenth of a second at most: a waiter
# this old has nobody waiting on it any more (its write wrote nothing).
_WAITER_AGE = 2.0
_WAITER_LIMIT = 4096

Address = tuple[str, int]


class MasterSource(Protocol):
    """Where a Sentinel pool sends its commands (a
    :class:`~flask_fogredis._sentinel.SentinelBlockingPool`)."""

    @property
    def master_address(self) -> Address | None:
        """The master the pool learned when it last connected or asked; None
        before it has."""

    def get_master_address(self) -> Address:
        """Ask the sentinels again (the pool then follows their answer).
        Raises ``redis.ConnectionError`` when none names a master."""


class _MasterMoved(redis.ConnectionError):
    """The pool now sends its commands to another server than the one the
    invalidation channel listens to."""


class _Pending:
    """A read in flight: its answer is kept only if this is still there."""

    __slots__ = ("epoch", "keys")

    def __init__(self, epoch: int, keys: tuple[str, ...]) -> None:
        self.epoch = epoch
        self.keys = keys


class NearCache:
    """Process-local copies of keys under ``prefixes``, bounded in entries
    and bytes (least recently used first out)."""

    def __init__(
        self,
        settings: Settings,
        prefixes: Sequence[str],
        max_entries: int,
        max_bytes: int,
        ping_interval: float = 0.25,
        on_event: Callable[[str, int], None] | None = None,
        master: MasterSource | None = None,
        *,
        connect: Callable[..., AbstractConnection],
    ) -> None:
        """``on_event(name, amount)`` hears of ``near_cache_hits``,
        ``_misses``, ``_invalidations`` and ``_flushes``. ``master``, for a
        Sentinel target, is the pool whose master the channel follows.
        ``connect(address, **options)`` makes the channel's connection, not
        yet open: to ``address`` when given, else to the target (see
        :func:`topology.single_connection`)."""
        self._settings = settings
        self._connect = connect
        self._on_event = on_event
        self._prefixes = tuple(prefixes)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._ping_interval = ping_interval
        # Answers come from memory only while the channel was heard from this
        # recently: a listener that cannot keep up (a starved thread or
        # greenlet) may have invalidations unread, and its PONGs stop too.
        self._silence_limit = 3 * ping_interval
        self._heard = 0.0
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        reset_after_fork(self, NearCache._forget_listener)
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._epoch = 0
        self._healthy = False
        # Whether this process started the listener (a forked child has not).
        self._started = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connection: AbstractConnection | None = None
        self.hits = self.misses = self.invalidations = self.flushes = 0
        self._waiters: dict[str, list[threading.Event]] = {}
        # Every waiter in the order it came, with when: the oldest go first.
        self._waiting: deque[tuple[float, str, threading.Event]] = deque()
        self._said_down = False
        self._master = master
        self._address: Address | None = None

    # -- reads ----------------------------------------------------------

    def lookup(self, keys: Sequence[str]) -> list[Any] | None:
        """The local values of all ``keys``, or None if any is missing (or
        the cache is bypassed). A value may be None: "absent in Redis"."""
        # On every hit: the checks of _ensure_listener() and _diverged() inlined.
        if not self._started:
            self._ensure_listener()
        master = self._master
        if master is not None and master.master_address != self._address:
            return None  # the pool writes where the channel does not listen
        entries = self._entries
        with self._lock:
            if not self._healthy or time.monotonic() - self._heard > self._silence_limit:
                return None
            values = []
            for key in keys:
                value = entries.get(key, _Pending)
                if value is _Pending or type(value) is _Pending:
                    self.misses += 1
                    break
                values.append(value)
            else:
                for key in keys:
                    entries.move_to_end(key)
                self.hits += 1
        on_event = self._on_event
        if len(values) < len(keys):
            if on_event is not None:
                on_event("near_cache_misses", 1)
            return None
        if on_event is not None:
            on_event("near_cache_hits", 1)
        return values

    def begin(self, keys: Iterable[str]) -> _Pending | None:
        """Mark ``keys`` as being read from Redis; pass the result to
        :meth:`fill` with the answers, or to :meth:`abandon` if the read
        fails. Placeholders count against ``max_entries``."""
        self._ensure_listener()
        if self._diverged():
            return None
        with self._lock:
            if not self._healthy or time.monotonic() - self._heard > self._silence_limit:
                return None
            pending = _Pending(self._epoch, tuple(keys))
            for key in pending.keys:
                self._drop(key)
                self._entries[key] = pending
                self._sizes[key] = 0
            self._evict()
            return pending

    def abandon(self, pending: _Pending | None) -> None:
        """Forget a read that got no answer (from :meth:`begin`)."""
        if pending is None:
            return
        with self._lock:
            for key in pending.keys:
                if self._entries.get(key) is pending:
                    self._drop(key)

    def fill(self, pending: _Pending | None, items: Iterable[tuple[str, Any]]) -> None:
        """Keep the answers of a read, unless it was overtaken by an
        invalidation, a flush or a reconnect."""
        if pending is None:
            return
        with self._lock:
            if not self._healthy or pending.epoch != self._epoch:
                return
            for key, value in items:
                if self._entries.get(key) is not pending:
                    continue
                size = _ENTRY_OVERHEAD + len(key) + (len(value) if value else 0)
                if size > self.max_bytes:
                    self._drop(key)
                    continue
                self._entries[key] = value
                self._sizes[key] = size
                self._bytes += size
                self._entries.move_to_end(key)
            self._evict()

    def replace(self, key: str, value: Any, parsed: Any) -> None:
        """Keep ``parsed`` instead of ``value`` (what :meth:`lookup` gave for
        ``key``) if ``key`` still holds it: later lookups of ``key`` give
        ``parsed``. Its size is still counted as ``value``'s."""
        with self._lock:
            if self._entries.get(key) is value:
                self._entries[key] = parsed

    def forget(self, key: str) -> None:
        """Drop this process's copy of ``key`` now, after writing it: the
        next read goes to Redis even if Redis's notice is still on its way.
        A read in flight keeps its place (that notice settles it)."""
        with self._lock:
            if not isinstance(self._entries.get(key), _Pending):
                self._drop(key)

    def expect(self, key: str) -> threading.Event | None:
        """An event set when Redis has sent out the invalidation of ``key``
        (to every process, this one included), or when the cache is flushed;
        None while the cache is bypassed. An event whose invalidation never
        comes (the write wrote nothing) is set and dropped after
        ``_WAITER_AGE`` seconds, or when ``_WAITER_LIMIT`` newer ones wait."""
        self._ensure_listener()
        if self._diverged():
            return None
        with self._lock:
            if not self._healthy:
                return None
            now = time.monotonic()
            self._prune_waiters(now, _WAITER_LIMIT - 1)
            event = threading.Event()
            self._waiters.setdefault(key, []).append(event)
            self._waiting.append((now, key, event))
            return event

    def stats(self) -> dict[str, int | bool]:
        with self._lock:
            return {
                "healthy": self._healthy,
                "entries": len(self._entries),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "invalidations": self.invalidations,
                "flushes": self.flushes,
                "waiters": len(self._waiting),
            }

    def flush(self) -> None:
        """Drop every local copy (the listener stays)."""
        self._flush(self._healthy)

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def listening_to(self) -> Address | None:
        """The Sentinel master the channel last subscribed on (None for
        other targets, or before it has)."""
        return self._address

    def _diverged(self) -> bool:
        master = self._master
        return master is not None and master.master_address != self._address

    # -- bookkeeping (callers hold the lock) ------------------------------

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._bytes -= self._sizes.pop(key, 0)

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            key = next(iter(self._entries))
            self._drop(key)

    def _prune_waiters(self, now: float, keep: int) -> None:
        """Set and forget the waiters older than ``_WAITER_AGE``, and the
        oldest beyond ``keep``."""
        waiting = self._waiting
        while waiting and (len(waiting) > keep or waiting[0][0] < now - _WAITER_AGE):
            _, key, event = waiting.popleft()
            event.set()
            events = self._waiters.get(key)
            if events is not None and event in events:
                events.remove(event)
                if not events:
                    del self._waiters[key]

    def _event(self, name: str, amount: int) -> None:
        if self._on_event is not None and amount:
            self._on_event(name, amount)

    def _flush(self, healthy: bool) -> None:
        with self._lock:
            for events in self._waiters.values():
                for event in events:
                    event.set()
            self._waiters.clear()
            self._waiting.clear()
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0
            self._epoch += 1
            self._healthy = healthy
            self.flushes += 1
        self._event("near_cache_flushes", 1)

    def _invalidate(self, keys: Iterable[bytes | str] | None) -> None:
        if keys is None:  # FLUSHDB, FLUSHALL, or a tracking table overflow
            self._flush(self._healthy)
            return
        count = 0
        with self._lock:
            for raw in keys:
                key = raw.decode() if isinstance(raw, bytes) else raw
                self._drop(key)
                # Set now; the age queue forgets them in its own time.
                for event in self._waiters.pop(key, ()):
                    event.set()
                count += 1
            self.invalidations += count
        self._event("near_cache_invalidations", count)

    # -- the listener ---------------------------------------------------

    def _ensure_listener(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            # First use in this process (or first after a fork): the parent's
            # listener and entries are not ours.
            self._started = True
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0
            self._healthy = False
            self._epoch += 1
            self._stop = threading.Event()
            self._connection = None
            # The thread gets its own stop event: one left behind by close()
            # (a join that timed out) stops too, and never touches the next.
            self._thread = threading.Thread(
                target=self._listen, args=(self._stop,), name="fogredis-near-cache", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the listener and drop every entry."""
        self._stop.set()
        connection = self._connection
        if connection is not None and self._started:
            connection.disconnect()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        self._flush(False)
        self._started = False

    def _forget_listener(self) -> None:
        # In a forked child: the parent's listener thread is not here, and
        # its connection is the parent's; the next use starts them anew.
        self._started = False
        self._connection = None
        self._thread = None

    def _listen(self, stop: threading.Event) -> None:
        pause = 0.05
        while not stop.is_set():
            opened: list[AbstractConnection] = []
            try:
                self._subscribe_and_read(stop, opened)
            except Exception as exc:  # the listener must outlive any failure
                # Said once each time the channel goes down, not at every retry.
                if not self._said_down and not stop.is_set():
                    self._said_down = True
                    logger.warning(
                        "Near cache bypassed until its invalidation channel is back (%s)",
                        "the Sentinel master changed"
                        if isinstance(exc, _MasterMoved)
                        else type(exc).__name__,
                    )
            finally:
                if stop is self._stop:
                    if self._healthy:
                        pause = 0.05
                    self._flush(False)
                for connection in opened:
                    connection.disconnect()
            stop.wait(pause)
            pause = min(pause * 2, 2.0)

    def _subscribe_and_read(self, stop: threading.Event, opened: list[AbstractConnection]) -> None:
        master = self._master
        address: Address | None = None
        if master is not None:
            # The pool is asked (and so follows the sentinels' answer too):
            # the channel must hear the server the pool writes to.
            address = master.get_master_address()
        connection = self._connect(address, protocol=2, socket_timeout=self._ping_interval * 2)
        opened.append(connection)
        if stop is not self._stop:
            return
        self._connection = connection
        connection.connect()
        connection.send_command("CLIENT", "ID")
        client_id = connection.read_response()
        args: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
        for prefix in self._prefixes:
            args += ["PREFIX", prefix]
        connection.send_command(*args)
        connection.read_response()
        connection.send_command("SUBSCRIBE", CHANNEL)
        connection.read_response()
        if stop is not self._stop:
            return
        self._address = address
        self._heard = time.monotonic()
        self._flush(True)
        self._said_down = False
        # A PING every interval proves the channel is alive and not behind:
        # its answer comes after every invalidation sent before it.
        ping_sent: float | None = None
        last_pong = time.monotonic()
        ask_every = self._settings.sentinel_check_interval
        next_ask = last_pong + ask_every
        while not stop.is_set():
            now = time.monotonic()
            if master is not None:
                if ask_every and now >= next_ask:
                    next_ask = now + ask_every
                    # No sentinel answers: the pool keeps its master too.
                    with contextlib.suppress(redis.ConnectionError):
                        master.get_master_address()
                # None: the pool was reset (a fork) and has not connected yet.
                if master.master_address not in (None, address):
                    raise _MasterMoved
            if ping_sent is None and now - last_pong >= self._ping_interval:
                connection.send_command("PING")
                ping_sent = now
            elif ping_sent is not None and now - ping_sent > self._ping_interval:
                raise redis.TimeoutError("the invalidation channel is behind")
            if not connection.can_read(timeout=self._ping_interval / 4):
                continue
            message = connection.read_response()
            kind = message[0]
            if kind in (b"message", "message"):
                self._invalidate(message[2])
            elif kind in (b"pong", "pong"):
                ping_sent, last_pong = None, time.monotonic()
                self._heard = last_pong
                with self._lock:
                    self._prune_waiters(last_pong, _WAITER_LIMIT)
