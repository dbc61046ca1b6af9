"""What differs between one Redis, Sentinel and Cluster, decided here and
nowhere else: the client and its pools, single connections, the health
probe, where keys live (hash slots), clearing a pattern, reading a server
setting, and writes that wait for replicas. The parts built on a Redis get
a :class:`Topology` (or a function from here) and never ask which kind it
is."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from redis.connection import AbstractConnection

from ._cluster import (
    ClusterProbe,
    build_cluster,
    clear_matching,
    config_of_primaries,
    write_and_wait,
)
from ._config import Settings
from ._connections import (
    BeforeUnlink,
    PoolQueue,
    build_pool,
    node_options,
    translated,
    unlink_matching,
)
from ._errors import RedisUnavailableError
from ._forking import renew_locks_after_fork
from ._probe import HealthProbe
from ._sentinel import (
    SentinelBlockingPool,
    SentinelProbe,
    build_sentinel_pool,
    master_connection_options,
)
from ._undecoded import UndecodedRedis

# Deletes the keys matching a pattern; returns how many (see key_clearer).
KeyClearer = Callable[[Any, str, "BeforeUnlink | None"], int]


@dataclass(frozen=True)
class Topology:
    """What the parts built on one Redis need to know of its topology,
    chosen once by :func:`topology_of`."""

    # Keys of one command may live on different nodes (Cluster): a
    # multi-key command (MGET, DEL of several keys) must go key by key.
    multi_key_commands_span_nodes: bool
    # Makes a name a hash tag, so that the keys holding it share a slot;
    # None where every key is on one server anyway.
    key_tagger: Callable[[str], str] | None
    # Deletes the keys matching a pattern on every server that holds keys.
    clear_matching: KeyClearer
    # ``CONFIG GET name``'s reply from every server that holds keys.
    config_replies: Callable[[Any, str], list[Any]]
    # A client over the same pool that returns bytes; None where redis-py
    # parses replies in a client per node (Cluster).
    undecoded: Callable[[Any], redis.Redis] | None


def topology_of(settings: Settings) -> Topology:
    """The :class:`Topology` of the Redis in ``settings``."""
    if settings.target.is_cluster:
        return Topology(
            multi_key_commands_span_nodes=True,
            key_tagger=slot_tag,
            clear_matching=clear_matching,
            config_replies=config_of_primaries,
            undecoded=None,
        )
    return Topology(
        multi_key_commands_span_nodes=False,
        key_tagger=None,
        clear_matching=unlink_matching,
        config_replies=_config_of_server,
        undecoded=UndecodedRedis,
    )


def _config_of_server(client: Any, name: str) -> list[Any]:
    return [client.execute_command("CONFIG", "GET", name)]


def build_client(
    settings: Settings, observe: Callable[[PoolQueue], None] | None = None
) -> tuple[Any, Any]:
    """The pool (or a cluster's pools) and the client for ``settings``;
    nothing connects until first use."""
    if settings.target.is_cluster:
        connection_class, options = node_options(settings)
        return build_cluster(settings, connection_class, options, observe)
    pool = (
        build_sentinel_pool(settings, observe)
        if settings.target.is_sentinel
        else build_pool(settings, observe)
    )
    # The lock redis-py takes to reset the pool in a forked child: one made
    # before gevent patched the worker lets every greenlet in at once (an
    # OS RLock) or blocks them all (an OS Lock, before redis-py 6).
    renew_locks_after_fork(pool, "_fork_lock")
    return pool, redis.Redis(connection_pool=pool)


def connection_options(settings: Settings) -> tuple[type[AbstractConnection], dict[str, Any]]:
    """The connection class and its keyword arguments for ``settings``: for
    Sentinel, a connection that asks the sentinels for the master whenever it
    connects; for Cluster, one to the first listed node."""
    connection_class, options = node_options(settings)
    target = settings.target
    if target.is_sentinel:
        return master_connection_options(settings, options)
    if target.is_cluster:
        options.pop("db", None)
        options["host"], options["port"] = target.nodes[0]
    return connection_class, options


def single_connection(
    settings: Settings, address: tuple[str, int] | None = None, **overrides: Any
) -> AbstractConnection:
    """One connection outside any pool (a health probe's, a near cache's
    channel, a startup check), not yet open: to ``address`` when given, else
    as :func:`connection_options` says. It does not retry a refused connect
    and runs no health check of redis-py's: its owner has its own schedule.
    ``overrides`` replace options (timeouts, protocol)."""
    if address is None:
        connection_class, options = connection_options(settings)
    else:
        connection_class, options = node_options(settings)
        options["host"], options["port"] = address
    options.pop("fog_retry_attempts", None)
    options.pop("fog_retry_backoff", None)
    options.update(health_check_interval=0)
    options.update(overrides)
    return connection_class(**options)


def build_probe(settings: Settings, pool: Any, client: Any, **options: Any) -> HealthProbe:
    """The health probe that suits the target (see :class:`HealthProbe`)."""
    timeout = settings.health_timeout
    connect = partial(single_connection, settings)
    if settings.target.is_cluster:
        return ClusterProbe(settings, pool, timeout, connect, client=client, **options)
    if settings.target.is_sentinel:
        return SentinelProbe(settings, pool, timeout, connect, **options)
    return HealthProbe(settings, pool, timeout, connect, **options)


def topology_details(probe: HealthProbe) -> dict[str, Any]:
    """The detailed health report's part about Sentinel (the master the
    sentinels name) or Cluster (its state as the checked node sees it)."""
    details = getattr(probe, "details", None)
    return details() if callable(details) else {}


def master_source(pool: Any) -> SentinelBlockingPool | None:
    """The pool a near cache's channel follows: a Sentinel pool's master."""
    return pool if isinstance(pool, SentinelBlockingPool) else None


def key_clearer(settings: Settings) -> KeyClearer:
    """How to delete the keys matching a pattern on the target: on every
    primary of a cluster, else on its one server."""
    return topology_of(settings).clear_matching


def slot_tag(name: str) -> str:
    """``name`` as a Redis Cluster hash tag: keys that contain it share a slot.
    A name with braces in it is replaced by its digest, since a brace would
    end the tag early (or leave it empty)."""
    if "{" in name or "}" in name:
        name = "#" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return "{" + name + "}"


def write_acknowledged(
    client: Any, settings: Settings, key: str, command: list[Any], replicas: int, timeout: float
) -> Any:
    """Run ``command`` (a write to ``key``), then ``WAIT`` on the same
    connection until ``replicas`` replicas have it, at most ``timeout``
    seconds; returns the write's reply. Raises :class:`RedisUnavailableError`
    when fewer acknowledge it: the write is on the primary, but a failover
    could lose it. On Cluster, a redirect or a lost node re-reads the layout
    and sends both once more (see :func:`cluster.write_and_wait`); what still
    fails raises :class:`RedisUnavailableError` too."""
    wait_ms = max(1, round(timeout * 1000))
    with translated(settings):
        if settings.target.is_cluster:
            reply, acknowledged = write_and_wait(client, key, command, replicas, wait_ms)
        else:
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(*command)
            pipe.execute_command("WAIT", replicas, wait_ms)
            reply, acknowledged = pipe.execute()
    if int(acknowledged) < replicas:
        raise RedisUnavailableError(
            f"Only {acknowledged} of {replicas} replicas acknowledged the write within "
            f"{timeout:g} s ({settings.key('URL')} at {settings.target.display}); it is on the "
            "primary but a failover could lose it. Retry, or lower "
            f"{settings.key('JWT_WAIT_REPLICAS')}."
        )
    return reply
