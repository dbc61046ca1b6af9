"""Prometheus metrics in the text exposition format.

Two scopes. By default each process reports its own counters and pool, with
no dependency: right for one process, and for one gunicorn worker with
threads. With several workers a scrape reaches one of them, so when
``PROMETHEUS_MULTIPROC_DIR`` is set, the counters and gauges are written
through prometheus-client's multiprocess mode instead, and every scrape
reports the sum over all workers, whichever worker answers.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._connections import PoolQueue, pool_stats
from ._errors import ConfigurationError
from ._multiproc import mark_process_dead
from ._probe import HealthProbe, PingResult
from ._stats import Stats

logger = logging.getLogger("flask_fogredis")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NAME_PREFIX = "fogredis_"


@dataclass(frozen=True)
class Family:
    """One metric: its name (without ``_total``), type and help text."""

    name: str
    kind: str
    help: str


POOL_SIZE = Family(
    "fogredis_pool_size", "gauge", "Connections the pool may open, per process (POOL_SIZE)."
)
POOL_IN_USE = Family("fogredis_pool_in_use", "gauge", "Pooled connections lent to callers.")
POOL_WAITING = Family(
    "fogredis_pool_waiting", "gauge", "Callers waiting for a free pooled connection."
)
UP = Family("fogredis_up", "gauge", "1 if the last health-check PING got PONG in time, else 0.")
PING_LATENCY = Family(
    "fogredis_ping_latency_seconds",
    "gauge",
    "Round trip of the last health-check PING (time to failure when it failed).",
)
COUNTERS = {
    "revocation_checks": Family(
        "fogredis_revocation_checks", "counter", "JWTs checked against the revocation list."
    ),
    "revocations": Family("fogredis_revocations", "counter", "Revocations written."),
    "redis_errors": Family(
        "fogredis_redis_errors", "counter", "Operations that failed because Redis was unavailable."
    ),
    "near_cache_hits": Family(
        "fogredis_near_cache_hits", "counter", "Answers the near cache gave from process memory."
    ),
    "near_cache_misses": Family(
        "fogredis_near_cache_misses", "counter", "Near-cache lookups that went to Redis."
    ),
    "near_cache_invalidations": Family(
        "fogredis_near_cache_invalidations", "counter", "Keys Redis told the near cache to drop."
    ),
    "near_cache_flushes": Family(
        "fogredis_near_cache_flushes",
        "counter",
        "Times the near cache was emptied (its channel went down or came back, FLUSHDB).",
    ),
}
CACHE = {
    "hits": Family("fogredis_cache_hits", "counter", "Cache hits, per namespace."),
    "misses": Family("fogredis_cache_misses", "counter", "Cache misses, per namespace."),
    "errors": Family(
        "fogredis_cache_errors", "counter", "Cache operations Redis failed, per namespace."
    ),
}
FAMILIES = (
    POOL_SIZE,
    POOL_IN_USE,
    POOL_WAITING,
    UP,
    PING_LATENCY,
    *COUNTERS.values(),
    *CACHE.values(),
)

Sample = tuple[str, Mapping[str, str], float]


class Source(NamedTuple):
    """One Redis the metrics report on, labelled ``config_prefix=label``:
    its pool, its health probe (whose result may be ``max_age`` seconds
    old), and the counters of the app's operations (None for a Redis with
    none of its own, such as the cache's)."""

    label: str
    pool: Any
    probe: HealthProbe
    stats: Stats | None
    max_age: float


def render(sources: Iterable[Source]) -> str:
    """The metrics of ``sources``, after refreshing each one's health check
    if its last result is older than its ``max_age``."""
    sources = list(sources)
    for source in sources:
        source.probe.result(source.max_age)
    if _shared is not None:
        return _render_shared({source.label for source in sources})
    return _render_local(sources)


def _render_local(sources: list[Source]) -> str:
    samples: dict[Family, list[Sample]] = {family: [] for family in FAMILIES}
    _fill(samples, sources)
    return "".join(_text(family, found) for family, found in samples.items() if found)


def _fill(samples: dict[Family, list[Sample]], sources: list[Source]) -> None:
    """Add the samples of ``sources`` to ``samples``, by family."""
    for source in sources:
        labels = {"config_prefix": source.label}
        pool = pool_stats(source.pool)
        samples[POOL_SIZE].append((POOL_SIZE.name, labels, pool["size"]))
        samples[POOL_IN_USE].append((POOL_IN_USE.name, labels, pool["in_use"]))
        samples[POOL_WAITING].append((POOL_WAITING.name, labels, pool["waiting"]))
        last = source.probe.last
        if last is not None:
            samples[UP].append((UP.name, labels, float(last.healthy)))
            samples[PING_LATENCY].append((PING_LATENCY.name, labels, last.latency))
        stats = source.stats
        if stats is None:
            continue
        for name, family in COUNTERS.items():
            samples[family].append((family.name + "_total", labels, getattr(stats, name)))
        for namespace, counts in sorted(stats.cache().items()):
            for kind, family in CACHE.items():
                per_namespace = {**labels, "namespace": namespace}
                samples[family].append((family.name + "_total", per_namespace, counts[kind]))


def _render_shared(prefixes: set[str]) -> str:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    # The directory may hold the app's own metrics too; this endpoint is ours.
    text = []
    for metric in registry.collect():
        if metric.name.startswith(NAME_PREFIX):
            family = Family(metric.name, metric.type, metric.documentation)
            # Only the prefixes this scrape may see: another prefix's series
            # may be behind a credential, or served on another path.
            found = [
                (s.name, s.labels, s.value)
                for s in metric.samples
                if s.labels.get("config_prefix") in prefixes
            ]
            if not found:
                continue
            text.append(_text(family, sorted(found, key=lambda s: sorted(s[1].items()))))
    return "".join(text)


def _text(family: Family, samples: Iterable[Sample]) -> str:
    shown = family.name + "_total" if family.kind == "counter" else family.name
    help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {shown} {help_text}\n", f"# TYPE {shown} {family.kind}\n"]
    for name, labels, value in samples:
        pairs = ",".join(f'{key}="{_escape(label)}"' for key, label in labels.items())
        lines.append(f"{name}{{{pairs}}} {_number(value)}\n")
    return "".join(lines)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class SharedMetrics:
    """The metrics as prometheus-client objects in multiprocess mode: each
    process writes its own file and the endpoint adds them up.

    One per process (two objects for one metric would overwrite each other's
    file entries), labelled by config prefix.
    """

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        by_prefix = ["config_prefix"]

        def gauge(family: Family, mode: Any) -> Gauge:
            return Gauge(family.name, family.help, by_prefix, registry=None, multiprocess_mode=mode)

        # Every process reports the same configured size: the largest is it.
        self.pool_size = gauge(POOL_SIZE, "max")
        # Live processes only: a dead worker lends no connections.
        self.pool_in_use = gauge(POOL_IN_USE, "livesum")
        self.pool_waiting = gauge(POOL_WAITING, "livesum")
        # Whichever process checked last knows best.
        self.up = gauge(UP, "mostrecent")
        self.ping_latency = gauge(PING_LATENCY, "mostrecent")
        self.counters = {
            name: Counter(family.name, family.help, by_prefix, registry=None)
            for name, family in COUNTERS.items()
        }
        self.cache = {
            kind: Counter(family.name, family.help, [*by_prefix, "namespace"], registry=None)
            for kind, family in CACHE.items()
        }

    def pool_observer(self, prefix: str, size: int) -> Callable[[PoolQueue], None]:
        """Records a pool's size now and its use at every take and return."""
        self.pool_size.labels(prefix).set(size)
        in_use, waiting = self.pool_in_use.labels(prefix), self.pool_waiting.labels(prefix)

        def observe(queue: PoolQueue) -> None:
            in_use.set(queue.maxsize - queue.qsize())
            waiting.set(queue.waiting)

        return observe

    def probe_observer(self, prefix: str) -> Callable[[PingResult], None]:
        """Records every finished health check."""
        up, latency = self.up.labels(prefix), self.ping_latency.labels(prefix)

        def observe(result: PingResult) -> None:
            up.set(float(result.healthy))
            latency.set(result.latency)

        return observe


class SharedStats(Stats):
    """:class:`Stats` that also counts into the shared metrics."""

    def __init__(self, shared: SharedMetrics, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._shared_counters = {name: c.labels(prefix) for name, c in shared.counters.items()}
        self._shared_cache = shared.cache

    def count(self, name: str, amount: int = 1) -> None:
        super().count(name, amount)
        # A counter Stats has and COUNTERS does not list is not exported.
        shared = self._shared_counters.get(name)
        if shared is not None:
            shared.inc(amount)

    def cache_event(self, namespace: str, kind: str) -> None:
        super().cache_event(namespace, kind)
        self._shared_cache[kind].labels(self._prefix, namespace).inc()


_shared: SharedMetrics | None = None
_shared_lock = threading.Lock()


def shared_metrics() -> SharedMetrics | None:
    """The process's shared metrics when ``PROMETHEUS_MULTIPROC_DIR`` is set,
    else None. Raises :class:`ConfigurationError` when it is set but cannot
    be used."""
    global _shared
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return None
    with _shared_lock:
        if _shared is None:
            _check_multiprocess(directory)
            _shared = SharedMetrics()
            # Whichever process exits (a worker after --max-requests, a CLI
            # run) folds its own files; gunicorn's child_exit covers the
            # workers that are killed.
            atexit.register(lambda: mark_process_dead(os.getpid()))
        return _shared


def _check_multiprocess(directory: str) -> None:
    try:
        from prometheus_client import values
    except ImportError:
        raise ConfigurationError(
            f"{MULTIPROC_ENV} is set, so metrics are shared between processes through "
            "prometheus-client: pip install 'flask-fogredis[prometheus]', or unset it."
        ) from None
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"{MULTIPROC_ENV} is {directory!r}, which is not a directory: create it "
            "(empty) before the server starts."
        )
    if values.ValueClass is values.MutexValue:
        raise ConfigurationError(
            f"prometheus-client was imported before {MULTIPROC_ENV} was set, so its "
            "values stay per process: set the variable in the environment that starts "
            "the server (not in code run after imports)."
        )


class RegistryCollector:
    """The metrics of every app of this process, as a prometheus-client
    collector on its default ``REGISTRY``: an app that already exports its
    own metrics (its own view, prometheus-flask-exporter) shows ours too.
    ``sources`` lists what to report at each scrape."""

    def __init__(self, sources: Callable[[], Iterable[Source]]) -> None:
        self._sources = sources

    def describe(self) -> list[Any]:
        # Nothing up front: the registry then never collects at registration.
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sources = list(self._sources())
        for source in sources:
            source.probe.result(source.max_age)
        samples: dict[Family, list[Sample]] = {family: [] for family in FAMILIES}
        _fill(samples, sources)
        for family, found in samples.items():
            if not found:
                continue
            names = sorted({key for _, labels, _ in found for key in labels})
            metric: Any
            if family.kind == "counter":
                metric = CounterMetricFamily(family.name, family.help, labels=names)
            else:
                metric = GaugeMetricFamily(family.name, family.help, labels=names)
            for _, labels, value in found:
                metric.add_metric([labels.get(name, "") for name in names], value)
            yield metric


_registered = False


def register_on_default_registry(sources: Callable[[], Iterable[Source]]) -> None:
    """Put a :class:`RegistryCollector` on prometheus-client's ``REGISTRY``,
    once per process, when prometheus-client is installed and metrics are
    per process (in multiprocess mode the shared files already reach the
    app's ``MultiProcessCollector``)."""
    global _registered
    with _shared_lock:
        if _registered or _shared is not None or os.environ.get(MULTIPROC_ENV):
            return
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return
        REGISTRY.register(RegistryCollector(sources))
        _registered = True
