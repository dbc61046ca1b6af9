"""Redis Cluster: a ``RedisCluster`` whose per-node pools are the
extension's blocking pools, built on first use.

redis-py honours ``connection_pool_class`` only on its URL path (``url=``),
and keeps only the connection options it knows of (it drops
``health_check_interval``, for one): every option is therefore baked into the
connection class, and the pool class and size are passed on the URL path.
Each node gets a pool of ``POOL_SIZE`` connections of its own.

Writes are never re-sent: redis-py's cluster retries (which would run an
``INCR`` twice when a reply is lost) are off, as on the other pools. After a
failover, the first command that reaches the dead node fails, redis-py reads
the new layout of the cluster, and the next commands go to the new primary;
a read that fails so (refused or reset connection) is sent once more, on the
new layout. Redirects (``MOVED``, ``ASK``) are followed by redis-py.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import AbstractConnection, BlockingConnectionPool
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    MaxConnectionsError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry

from ._config import Settings
from ._connections import (
    POOL_EXHAUSTED,
    SCAN_COUNT,
    UNLINK_BATCH,
    BeforeUnlink,
    PoolQueue,
    batched,
    pool_stats,
)
from ._probe import HealthProbe, PingResult, info_number, parse_info

# Before 6.0, RedisCluster counted its retries in this argument, not in retry=.
_LEGACY_RETRIES = int(redis.__version__.split(".")[0]) < 6
SLOTS = 16384
# Reads sent once more when their node is gone: running them twice is harmless.
_RETRIED_READS = frozenset({"GET", "MGET", "EXISTS", "TTL", "PTTL", "STRLEN", "TYPE", "PING"})


class NodePool(BlockingConnectionPool):
    """One node's blocking pool. An exhausted pool is reported as such
    (``MaxConnectionsError``), not as a node failure: redis-py would
    otherwise re-read the whole cluster layout and drop the node's
    connections."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except MaxConnectionsError:
            raise
        except redis.ConnectionError as exc:
            if str(exc) == POOL_EXHAUSTED:
                raise MaxConnectionsError(POOL_EXHAUSTED) from None
            raise


def baked(cls: type[Any], options: dict[str, Any]) -> type[Any]:
    """``cls`` with ``options`` as defaults: redis-py's cluster client passes
    on only the options it knows of (which ones depends on its version)."""

    def __init__(self: Any, **kwargs: Any) -> None:
        cls.__init__(self, **{**options, **kwargs})

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": __name__})


class FogRedisCluster(RedisCluster):
    """A ``RedisCluster`` that reads the cluster's layout on first use, not
    when it is created: an app starts while the cluster is down, and its
    commands fail (and then succeed) as with a single Redis."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(_fog_kwargs=kwargs, _fog_lock=threading.RLock(), _fog_ready=False)
        self.__dict__["_fog_builder"] = None

    @property
    def started(self) -> bool:
        """Whether the cluster's layout has been read."""
        return bool(self.__dict__["_fog_ready"])

    def start(self) -> None:
        """Read the cluster's layout now; raises ``redis.ConnectionError`` if no
        listed node answers."""
        state = self.__dict__
        if state["_fog_ready"]:
            return
        with state["_fog_lock"]:
            if state["_fog_ready"]:
                return
            state["_fog_builder"] = threading.get_ident()
            try:
                super().__init__(**state["_fog_kwargs"])
            except RedisClusterException as exc:
                raise redis.ConnectionError(str(exc)) from None
            finally:
                state["_fog_builder"] = None
            state["_fog_ready"] = True

    def __getattr__(self, name: str) -> Any:
        # Only attributes that RedisCluster.__init__ sets land here.
        state = self.__dict__
        if (
            name.startswith("__")
            or state.get("_fog_ready", True)
            or state.get("_fog_builder") == threading.get_ident()
        ):
            raise AttributeError(name)
        self.start()
        return object.__getattribute__(self, name)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """As redis-py's, but a read whose node refused or dropped the
        connection is sent once more: redis-py has read the new layout by
        then, so the first request after a failover does not fail."""
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except MaxConnectionsError:
            raise
        except redis.ConnectionError:
            if "target_nodes" in kwargs or str(args[0]).upper() not in _RETRIED_READS:
                raise
        return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def refresh(self) -> None:
        """Read the cluster's layout again (primaries, replicas, slots)."""
        self.start()
        self.nodes_manager.initialize()

    def uncovered_slots(self) -> int:
        """How many of the 16384 slots no known primary serves."""
        cache = self.nodes_manager.slots_cache
        return sum(1 for slot in range(SLOTS) if not cache.get(slot))

    def close(self) -> None:
        if self.started:
            super().close()

    def __del__(self) -> None:
        if self.__dict__.get("_fog_ready"):
            super().__del__()  # type: ignore[no-untyped-call]


class ClusterPools:
    """The per-node pools of one cluster client, seen as one: what the
    health report, metrics and ``disconnect()`` need."""

    def __init__(self, client: FogRedisCluster, size: int) -> None:
        self.client = client
        self.size = size

    def pools(self) -> list[BlockingConnectionPool]:
        if not self.client.started:
            return []
        found = []
        for node in self.client.get_nodes():  # type: ignore[no-untyped-call]
            connection = node.redis_connection
            if connection is not None:
                found.append(connection.connection_pool)
        return found

    def disconnect(self, inuse_connections: bool = True) -> None:
        for pool in self.pools():
            pool.disconnect()

    def stats(self) -> dict[str, int]:
        """The sum of the nodes' :func:`pool_stats`; ``size`` is per node."""
        total = {"size": self.size, "open": 0, "idle": 0, "in_use": 0, "waiting": 0}
        for pool in self.pools():
            for name, value in pool_stats(pool).items():
                if name != "size":
                    total[name] += value
        return total

    # The metrics' pool observer reads these, as on one pool's queue.
    @property
    def maxsize(self) -> int:
        return sum(pool.max_connections for pool in self.pools())

    @property
    def waiting(self) -> int:
        return self.stats()["waiting"]

    def qsize(self) -> int:
        return sum(pool.pool.qsize() for pool in self.pools())


def build_cluster(
    settings: Settings,
    connection_class: type[AbstractConnection],
    options: dict[str, Any],
    observe: Callable[[PoolQueue], None] | None,
) -> tuple[ClusterPools, FogRedisCluster]:
    """The cluster client of ``settings`` and its pools, not yet connected."""
    for name in ("host", "port", "db"):
        options.pop(name, None)
    (first_host, first_port), *others = settings.target.nodes
    host = f"[{first_host}]" if ":" in first_host else first_host
    # Each node's queue reports to one observer, for the whole cluster.
    queue_class = (
        PoolQueue if observe is None else partial(PoolQueue, observe=lambda _queue: observe(whole))
    )
    pool_options = {
        "max_connections": settings.pool_size,
        "timeout": settings.pool_timeout,
        "queue_class": queue_class,
        "connection_class": baked(connection_class, options),
    }
    kwargs: dict[str, Any] = {
        "url": f"redis://{host}:{first_port}",
        "startup_nodes": [ClusterNode(h, p) for h, p in others],
        "connection_pool_class": baked(NodePool, pool_options),
        "decode_responses": settings.decode_responses,
        "retry": Retry(NoBackoff(), 0),
        "require_full_coverage": False,
        **pool_options,
    }
    if _LEGACY_RETRIES:
        kwargs["cluster_error_retry_attempts"] = 0
    client = FogRedisCluster(**kwargs)
    whole: Any = ClusterPools(client, settings.pool_size)
    return whole, client


def node_client(client: RedisCluster, key: str) -> redis.Redis:
    """The plain client of the primary holding ``key``: commands that must
    share one connection (a write and its WAIT) go through it."""
    return client.get_redis_connection(client.get_node_from_key(key))


def config_of_primaries(client: RedisCluster, name: str) -> list[Any]:
    """``CONFIG GET name``'s reply from every primary (each holds keys)."""
    replies = client.execute_command("CONFIG", "GET", name, target_nodes=RedisCluster.PRIMARIES)
    return list(replies.values())


class LayoutChangedError(redis.ConnectionError):
    """The cluster kept redirecting a command, or its node stayed unreachable,
    after the layout was read again: the cluster is changing (a failover
    not finished, a reshard under way). Retry shortly."""


def write_and_wait(
    client: FogRedisCluster, key: str, command: list[Any], replicas: int, wait_ms: int
) -> tuple[Any, Any]:
    """Run ``command`` (a SET of ``key``) and ``WAIT replicas wait_ms`` on one
    connection to the primary of ``key``; the replies of both.

    The primary comes from the layout the client holds. A redirect
    (``MOVED``), a refused or dropped connection, or a timeout means that
    layout is out of date: it is read again and the pair sent once more (a
    SET that did run the first time sets the same value). ``ASK`` (the slot
    is moving) sends the pair once to the node named, after ``ASKING``.
    Raises :class:`LayoutChangedError` when the second attempt fails so too;
    the message names neither the key nor its value."""
    failure = ""
    for attempt in (1, 2):
        try:
            try:
                return _send_pair(node_client(client, key), command, replicas, wait_ms)
            except AskError as exc:
                node = None if isinstance(exc, MovedError) else client.get_node(exc.host, exc.port)  # type: ignore[no-untyped-call]
                if node is None:
                    raise
                plain = client.get_redis_connection(node)
                return _send_pair(plain, command, replicas, wait_ms, asking=True)
        except MaxConnectionsError:
            raise
        except (AskError, TryAgainError):  # MOVED is an AskError too
            failure = "its slot moved"
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            failure = f"its primary did not answer ({type(exc).__name__})"
        if attempt == 1:
            client.refresh()
    raise LayoutChangedError(
        f"The cluster is changing: a write failed twice, {failure}. Retry shortly."
    )


def _send_pair(
    plain: redis.Redis, command: list[Any], replicas: int, wait_ms: int, asking: bool = False
) -> tuple[Any, Any]:
    pipe = plain.pipeline(transaction=False)
    if asking:
        pipe.execute_command("ASKING")
    pipe.execute_command(*command)
    pipe.execute_command("WAIT", replicas, wait_ms)
    replies = pipe.execute()
    return replies[-2], replies[-1]


def clear_matching(
    client: FogRedisCluster, pattern: str, before_unlink: BeforeUnlink | None = None
) -> int:
    """Delete the keys matching ``pattern`` on every primary: SCAN on each,
    and UNLINK in batches, one command per slot, pipelined per node.

    The layout is read first, so that a primary added or promoted since the
    last command is cleared too; a layout that leaves a slot without a
    primary raises :class:`LayoutChangedError` (keys there could not be
    reached). Keys whose slot moved meanwhile are deleted one by one through
    the cluster client, which follows the redirects."""
    client.refresh()
    missing = client.uncovered_slots()
    if missing:
        raise LayoutChangedError(
            f"The cluster serves only {SLOTS - missing} of {SLOTS} slots: "
            "a clear now could leave entries behind. Retry once the cluster is ok."
        )
    removed = 0
    for node in client.get_primaries():  # type: ignore[no-untyped-call]
        plain = client.get_redis_connection(node)
        for names in batched(plain.scan_iter(match=pattern, count=SCAN_COUNT), UNLINK_BATCH):
            if before_unlink is not None:
                before_unlink(names[-1])
            removed += _unlink(client, plain, names)
    return removed


def _unlink(client: RedisCluster, plain: redis.Redis, names: Iterable[Any]) -> int:
    by_slot: defaultdict[int, list[Any]] = defaultdict(list)
    for name in names:
        by_slot[key_slot(name.encode() if isinstance(name, str) else name)].append(name)
    pipe = plain.pipeline(transaction=False)
    groups = list(by_slot.values())
    for group in groups:
        pipe.unlink(*group)
    removed = 0
    for group, reply in zip(groups, pipe.execute(raise_on_error=False)):
        if isinstance(reply, (AskError, TryAgainError)):  # MOVED is an AskError too
            removed += sum(int(client.unlink(name)) for name in group)
        elif isinstance(reply, Exception):
            raise reply
        else:
            removed += int(reply)
    return removed


class ClusterProbe(HealthProbe):
    """PING and ``CLUSTER INFO`` on one node: healthy when it answers and says
    the cluster is ``ok``. The node is a primary the client knows of (a listed
    node before the client's first use); a failed check moves to the next."""

    def __init__(self, *args: Any, client: FogRedisCluster, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = client
        self._turn = 0
        self.cluster: dict[str, str] = {}
        self.nodes: dict[str, Any] = {}

    def _candidates(self) -> list[tuple[str, int]]:
        if self._client.started:
            primaries = [(n.host, n.port) for n in self._client.get_primaries()]  # type: ignore[no-untyped-call]
            if primaries:
                return primaries
        return list(self._settings.target.nodes)

    def _conn(self) -> AbstractConnection:
        fresh = self._connection is None
        connection = super()._conn()
        if fresh:
            candidates = self._candidates()
            host, port = candidates[self._turn % len(candidates)]
            connection.host, connection.port = host, port  # type: ignore[attr-defined]
        return connection

    def _after_fork(self) -> None:
        super()._after_fork()
        self.cluster = {}
        self.nodes = {}

    def _ping(self) -> PingResult:
        result = super()._ping()
        connection = self._connection
        if result.healthy and connection is not None:
            try:
                connection.send_command("CLUSTER", "INFO")
                self.cluster = parse_info(connection.read_response())
                connection.send_command("CLUSTER", "NODES")
                self.nodes = node_summary(connection.read_response())
            except redis.RedisError:
                connection.disconnect()
                result = replace(result, healthy=False, error="error")
            else:
                if self.cluster.get("cluster_state") != "ok":
                    result = replace(result, healthy=False, error="cluster down")
        if not result.healthy:
            self.cluster = {}
            self.nodes = {}
            self._turn += 1
            if connection is not None:
                connection.disconnect()
            self._connection = None
        return result

    def details(self) -> dict[str, Any]:
        info = self.cluster
        return {
            "cluster": {
                "state": info.get("cluster_state"),
                "node": None
                if self._connection is None
                else f"{self._connection.host}:{self._connection.port}",  # type: ignore[attr-defined]
                "slots_ok": info_number(info.get("cluster_slots_ok")),
                "slots_failing": info_number(
                    info.get("cluster_slots_pfail"), info.get("cluster_slots_fail")
                ),
                "known_nodes": info_number(info.get("cluster_known_nodes")),
                "primaries": info_number(info.get("cluster_size")),
                "failing_nodes": self.nodes.get("failing"),
                "primaries_without_replica": self.nodes.get("alone"),
                "pool_size_per_node": self._settings.pool_size,
            }
        }


def node_summary(reply: Any) -> dict[str, list[str]]:
    """From ``CLUSTER NODES``: the nodes marked failing (``fail`` or
    ``fail?``), and the primaries serving slots with no live replica (a
    failure there loses those slots), each as ``host:port``."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    rows = [line.split() for line in text.splitlines() if len(line.split()) >= 8]
    failing: list[str] = []
    primaries: dict[str, str] = {}
    followed: set[str] = set()
    for node_id, address, flags, primary, *rest in rows:
        where = address.split("@", 1)[0]
        marks = set(flags.split(","))
        if marks & {"fail", "fail?"}:
            failing.append(where)
        elif "master" in marks and len(rest) > 4:  # it serves slots
            primaries[node_id] = where
        elif primary != "-":
            followed.add(primary)
    alone = [where for node_id, where in primaries.items() if node_id not in followed]
    return {"failing": sorted(failing), "alone": sorted(alone)}
