"""One app's FogRedis, built in one step from its validated configuration:
pools and clients, the health probes, the counters, the near caches, and the
revocation list and cache built on them, each given what it needs."""

from __future__ import annotations

import atexit
import logging
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis

from ._cache import Cache, cache_prefix, glob_escape
from ._config import AppConfig, NearCacheSettings, Settings
from ._connections import translated
from ._metrics import (
    SharedMetrics,
    SharedStats,
    Source,
    register_on_default_registry,
    shared_metrics,
)
from ._near import NearCache
from ._probe import HealthProbe
from ._revocation import Revocations, revocation_prefix
from ._stats import Stats
from ._telemetry import attach_metrics, tracer
from ._topology import (
    Topology,
    build_client,
    build_probe,
    master_source,
    single_connection,
    topology_of,
)

logger = logging.getLogger("flask_fogredis")


@dataclass(frozen=True)
class CacheRedis:
    """The cache's own Redis, when ``CACHE_URL`` gives it one: a first-class
    Redis, with a pool, a health probe and metrics of its own (under the
    label ``<prefix>_CACHE``)."""

    settings: Settings
    pool: Any
    client: Any
    probe: HealthProbe


class AppState:
    """What one app holds for one config prefix. Built whole by
    :func:`build_state`; nothing in it refers back to it."""

    def __init__(
        self,
        config: AppConfig,
        topology: Topology,
        stats: Stats,
        pool: Any,
        client: Any,
        probe: HealthProbe,
        revocations: Revocations,
        cache: Cache,
        cache_redis: CacheRedis | None,
        near: NearCache | None,
    ) -> None:
        self.config = config
        self.settings = config.connection
        self.endpoints = config.endpoints
        self.topology = topology
        self.stats = stats
        # Typed as for one Redis: for Cluster they are a RedisCluster and its
        # pools seen as one (ClusterPools), with the same commands and stats.
        self.pool: redis.BlockingConnectionPool = pool
        self.client: redis.Redis = client
        self.probe = probe
        self.revocations = revocations
        self.cache = cache
        self.cache_redis = cache_redis
        self.near = near
        # OpenTelemetry's tracer when tracing is on.
        self.tracer: Any = None
        _open_states.add(self)

    def sources(self) -> list[Source]:
        """What the metrics report: the main Redis, and the cache's own."""
        max_age = self.endpoints.cache_seconds
        found = [Source(self.settings.prefix, self.pool, self.probe, self.stats, max_age)]
        if self.cache_redis is not None:
            own = self.cache_redis
            found.append(Source(own.settings.prefix, own.pool, own.probe, None, max_age))
        return found

    def reset(self) -> None:
        """Delete every key this state wrote (under its key prefix, on its
        Redis and on the cache's), zero its counters and forget the last
        health checks: a clean start for the next test."""
        pattern = glob_escape(self.settings.key_prefix) + ":*"
        with translated(self.settings):
            self.topology.clear_matching(self.client, pattern, None)
        if self.cache_redis is not None:
            self.cache.clear_matching(pattern)
            self.cache_redis.probe.forget()
        self.stats.reset()
        self.probe.forget()
        for near in {self.near, self.cache.near} - {None}:
            near.flush()  # type: ignore[union-attr]

    def close(self) -> None:
        """Close every connection; the pools reopen them on the next use
        (and the near caches restart their listeners on the next use)."""
        self.probe.close()
        self.pool.disconnect()
        if self.cache_redis is not None:
            self.cache_redis.probe.close()
            self.cache_redis.pool.disconnect()
        for near in {self.near, self.cache.near} - {None}:
            near.close()  # type: ignore[union-attr]


def build_state(config: AppConfig) -> AppState:
    """Every part of one FogRedis, from ``config``; nothing connects yet."""
    settings = config.connection
    prefix = settings.prefix
    # Shared between gunicorn's workers when PROMETHEUS_MULTIPROC_DIR is set.
    shared = shared_metrics() if config.endpoints.metrics_enabled else None
    stats = Stats() if shared is None else SharedStats(shared, prefix)
    pool, client = build_client(settings, _pool_observer(shared, settings))
    probe = build_probe(
        settings,
        pool,
        client,
        collect_info=config.endpoints.details_token is not None,
        on_result=shared.probe_observer(prefix) if shared else None,
    )
    cache_redis = None
    cache_pool, cache_client = pool, client
    if config.cache.own:
        own = config.cache.connection
        cache_pool, cache_client = build_client(own, _pool_observer(shared, own))
        cache_redis = CacheRedis(
            own,
            cache_pool,
            cache_client,
            build_probe(
                own,
                cache_pool,
                cache_client,
                on_result=shared.probe_observer(own.prefix) if shared else None,
            ),
        )
    key_prefix = settings.key_prefix
    near = cache_near = None
    if config.near.enabled:
        near_of_cache = [] if cache_redis else [cache_prefix(key_prefix)]
        near = _near_cache(
            config.near, settings, pool, [revocation_prefix(key_prefix), *near_of_cache], stats
        )
        cache_near = near
        if cache_redis is not None:
            cache_near = _near_cache(
                config.near, cache_redis.settings, cache_pool, [cache_prefix(key_prefix)], stats
            )
    topology = topology_of(settings)
    revocations = Revocations(client, settings, config.revocation, topology, stats, near)
    cache = Cache(cache_client, config.cache, key_prefix=key_prefix, stats=stats, near=cache_near)
    state = AppState(
        config, topology, stats, pool, client, probe, revocations, cache, cache_redis, near
    )
    # Decided once: with no OpenTelemetry provider, the features see None.
    state.tracer = revocations.tracer = cache.tracer = tracer()
    pools = [(prefix, pool)] + ([(cache_redis.settings.prefix, cache_pool)] if cache_redis else [])
    attach_metrics(state, stats, pools)
    if config.endpoints.metrics_enabled:
        register_on_default_registry(_every_source)
    return state


def _every_source() -> list[Source]:
    """What prometheus-client's registry reports: every app of the process
    with metrics on."""
    return [
        source
        for state in list(_open_states)
        if state.endpoints.metrics_enabled
        for source in state.sources()
    ]


def _pool_observer(shared: SharedMetrics | None, settings: Settings) -> Any:
    return shared.pool_observer(settings.prefix, settings.pool_size) if shared else None


def _near_cache(
    section: NearCacheSettings,
    settings: Settings,
    pool: Any,
    prefixes: list[str],
    stats: Stats,
) -> NearCache:
    return NearCache(
        settings,
        prefixes,
        max_entries=section.max_entries,
        max_bytes=section.max_bytes,
        on_event=stats.count,
        master=master_source(pool),
        connect=partial(single_connection, settings),
    )


_open_states: weakref.WeakSet[AppState] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """Close every app state of this process (at exit, and between tests)."""
    for state in list(_open_states):
        try:
            state.close()
        except Exception:  # exiting: a failure to close must not mask the real exit
            logger.debug("closing a pool at exit failed", exc_info=True)
