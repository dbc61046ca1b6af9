"""What differs between one Redis, Sentinel and Cluster, in one place: the
client and its pools, the health probe, hash slots, and writes that wait for
replicas."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import redis

from ._cluster import ClusterProbe, build_cluster, clear_matching, write_and_wait
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
from ._probe import HealthProbe
from ._sentinel import SentinelBlockingPool, SentinelProbe


def build_client(
    settings: Settings, observe: Callable[[PoolQueue], None] | None = None
) -> tuple[Any, Any]:
    """The pool (or a cluster's pools) and the client for ``settings``;
    nothing connects until first use."""
    if settings.target.is_cluster:
        connection_class, options = node_options(settings)
        return build_cluster(settings, connection_class, options, observe)
    pool = build_pool(settings, observe)
    return pool, redis.Redis(connection_pool=pool)


def build_probe(settings: Settings, pool: Any, client: Any, **options: Any) -> HealthProbe:
    """The health probe that suits the target (see :class:`HealthProbe`)."""
    timeout = settings.health_timeout
    if settings.target.is_cluster:
        return ClusterProbe(settings, pool, timeout, client=client, **options)
    if settings.target.is_sentinel:
        return SentinelProbe(settings, pool, timeout, **options)
    return HealthProbe(settings, pool, timeout, **options)


def topology_details(probe: HealthProbe) -> dict[str, Any]:
    """The detailed health report's part about Sentinel (the master the
    sentinels name) or Cluster (its state as the checked node sees it)."""
    details = getattr(probe, "details", None)
    return details() if callable(details) else {}


def master_source(pool: Any) -> SentinelBlockingPool | None:
    """The pool a near cache's channel follows: a Sentinel pool's master."""
    return pool if isinstance(pool, SentinelBlockingPool) else None


def key_clearer(settings: Settings) -> Callable[[Any, str, BeforeUnlink | None], int]:
    """How to delete the keys matching a pattern on the target: on every
    primary of a cluster, else on its one server."""
    return clear_matching if settings.target.is_cluster else unlink_matching


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
