"""OpenTelemetry traces and metrics, and the blinker signals, in one place.

OpenTelemetry is optional (the ``otel`` extra: ``opentelemetry-api`` only).
Whether to trace is decided once per app state, when it is built: with no
API installed, or no tracer provider set (the API's default, which records
nothing), the features keep ``tracer`` None and pay one attribute check.
Metrics are decided once per process, at the first state built with a meter
provider set. No span is made per Redis command: that is
``opentelemetry-instrumentation-redis``'s, whose command spans become
children of ours.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app
from werkzeug.wrappers import Response

from . import signals
from ._errors import RedisUnavailableError
from ._version import __version__

if TYPE_CHECKING:
    from blinker import NamedSignal

    from ._probe import PingResult
    from ._stats import Stats

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # the extra is not installed
    otel_metrics = None  # type: ignore[assignment]
    otel_trace = None  # type: ignore[assignment]

_R = TypeVar("_R", bound=Response)
SCOPE = "flask_fogredis"
CACHE_SPAN = "fogredis.cache"
REVOCATION_SPAN = "fogredis.revocation.check"
HEALTH_SPAN = "fogredis.health.check"
# Set on a view's response that the near cache answered.
_NEAR_MARK = "_fogredis_near_cache"


def tracer() -> Any | None:
    """The tracer to use, or None when tracing costs nothing: no API
    installed, or no tracer provider configured."""
    if otel_trace is None:
        return None
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer(SCOPE, __version__)


def send(signal: NamedSignal, **arguments: Any) -> None:
    """Send ``signal`` from the current app, if anyone listens."""
    if signal.receivers:
        signal.send(current_app._get_current_object(), **arguments)  # type: ignore[attr-defined]


def looked_up(namespace: str, key: str, hit: bool) -> None:
    """The hit or miss signal of ``fog.cache_get``."""
    if hit:
        if signals.cache_hit.receivers:
            send(signals.cache_hit, namespace=namespace, key=key, near_cache=False, result="hit")
    elif signals.cache_miss.receivers:
        send(signals.cache_miss, namespace=namespace, key=key)


def stored(namespace: str, key: str | None) -> None:
    """The store signal (``key`` None for a view's response)."""
    if signals.cache_store.receivers:
        send(signals.cache_store, namespace=namespace, key=key)


def invalidated(namespace: str, key: str | None, count: int) -> None:
    """The invalidation signal (``key`` None for a whole namespace)."""
    if signals.cache_invalidated.receivers:
        send(signals.cache_invalidated, namespace=namespace, key=key, count=count)


def mark_near(response: _R) -> _R:
    """Note on ``response`` that the near cache answered it."""
    setattr(response, _NEAR_MARK, True)
    return response


def observe_view(tracer: Any | None, namespace: str, serve: Callable[[], Response]) -> Response:
    """Run a cached view's ``serve`` in a ``fogredis.cache`` span (with a
    tracer), and send the hit or miss signal (with receivers). The result
    is the ``X-Cache`` tag that ``serve`` put on the response."""
    if tracer is None:
        return _signal_view(namespace, serve())
    with tracer.start_as_current_span(
        CACHE_SPAN, attributes={"fogredis.namespace": namespace}
    ) as span:
        response = serve()
        result = str(response.headers.get("X-Cache", "")).lower() or "miss"
        span.set_attribute("fogredis.cache.result", result)
        span.set_attribute("fogredis.cache.near", bool(getattr(response, _NEAR_MARK, False)))
        return _signal_view(namespace, response)


def _signal_view(namespace: str, response: Response) -> Response:
    result = str(response.headers.get("X-Cache", "")).lower()
    if result in ("hit", "stale"):
        near = bool(getattr(response, _NEAR_MARK, False))
        send(signals.cache_hit, namespace=namespace, key=None, near_cache=near, result=result)
    elif result == "miss":
        send(signals.cache_miss, namespace=namespace, key=None)
    return response


def watching_views(tracer: Any | None) -> bool:
    """Whether a cached view needs :func:`observe_view`."""
    return tracer is not None or bool(signals.cache_hit.receivers or signals.cache_miss.receivers)


class RevocationSpan:
    """A ``fogredis.revocation.check`` span around a check, when tracing."""

    __slots__ = ("_context", "_span")

    def __init__(self, tracer: Any) -> None:
        self._context = tracer.start_as_current_span(REVOCATION_SPAN)
        self._span: Any = None

    def __enter__(self) -> RevocationSpan:
        self._span = self._context.__enter__()
        return self

    def revoked(self, revoked: bool) -> bool:
        """Record the answer on the span; returns it."""
        self._span.set_attribute("fogredis.revocation.revoked", revoked)
        return revoked

    def __exit__(self, *exc: Any) -> Any:
        return self._context.__exit__(*exc)


def revoked_signal(jti: str | None, identity: object, *, everywhere: bool) -> None:
    """The revocation signal."""
    if signals.token_revoked.receivers:
        send(signals.token_revoked, jti=jti, identity=identity, everywhere=everywhere)


def refused(error: RedisUnavailableError) -> None:
    """A token refused because the list could not be read."""
    send(signals.revocation_refused, error=error)


def traced_health(tracer: Any | None, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A health check in a ``fogredis.health.check`` span, when tracing."""
    if tracer is None:
        return check()
    with tracer.start_as_current_span(HEALTH_SPAN) as span:
        report = check()
        span.set_attribute("fogredis.health.healthy", bool(report.get("healthy")))
        if report.get("error"):
            span.set_attribute("fogredis.health.error", str(report["error"]))
        return report


def availability_signals(app: Any, prefix: str) -> Callable[[PingResult | None, PingResult], None]:
    """What a health probe calls on each finished check: the unavailable
    and available signals on a change, sent by ``app`` (held weakly)."""
    app_ref = weakref.ref(app)

    def changed(previous: PingResult | None, result: PingResult) -> None:
        was_healthy = previous is None or previous.healthy
        signal = None
        arguments: dict[str, Any] = {"config_prefix": prefix}
        if was_healthy and not result.healthy:
            signal = signals.redis_unavailable
            arguments["error"] = result.error
        elif not was_healthy and result.healthy:
            signal = signals.redis_available
        app = app_ref()
        if signal is not None and app is not None and signal.receivers:
            signal.send(app, **arguments)

    return changed


# -- metrics ----------------------------------------------------------------

# Stats counter name -> (OpenTelemetry instrument, description).
_COUNTERS = {
    "revocation_checks": (
        "fogredis.revocation_checks",
        "JWTs checked against the revocation list.",
    ),
    "revocations": ("fogredis.revocations", "Revocations written."),
    "redis_errors": (
        "fogredis.redis_errors",
        "Operations that failed because Redis was unavailable.",
    ),
    "near_cache_hits": ("fogredis.near_cache.hits", "Answers the near cache gave from memory."),
    "near_cache_misses": ("fogredis.near_cache.misses", "Near-cache lookups that went to Redis."),
    "cache_hits": ("fogredis.cache.hits", "Cache hits, per namespace."),
    "cache_misses": ("fogredis.cache.misses", "Cache misses, per namespace."),
    "cache_errors": ("fogredis.cache.errors", "Cache operations Redis failed, per namespace."),
}


class OtelMetrics:
    """The process's OpenTelemetry instruments: counters mirroring the
    Prometheus ones, and observable gauges of every pool in the process."""

    def __init__(self, meter: Any) -> None:
        self._counters = {
            name: meter.create_counter(instrument, description=text)
            for name, (instrument, text) in _COUNTERS.items()
        }
        self._pools: weakref.WeakKeyDictionary[Any, list[tuple[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            "fogredis.pool.in_use",
            callbacks=[self._observe("in_use")],
            description="Pooled connections lent to callers.",
        )
        meter.create_observable_gauge(
            "fogredis.pool.waiting",
            callbacks=[self._observe("waiting")],
            description="Callers waiting for a free pooled connection.",
        )

    def watch_pools(self, owner: Any, sources: list[tuple[str, Any]]) -> None:
        """Report each (prefix, pool) of ``sources`` while ``owner`` lives."""
        with self._lock:
            self._pools[owner] = list(sources)

    def _observe(self, field: str) -> Callable[[Any], Iterator[Any]]:
        from opentelemetry.metrics import Observation

        from ._connections import pool_stats

        def observe(_options: Any) -> Iterator[Any]:
            with self._lock:
                pools = [source for sources in self._pools.values() for source in sources]
            for prefix, pool in pools:
                yield Observation(pool_stats(pool)[field], {"config_prefix": prefix})

        return observe

    def mirror(self, prefix: str) -> Callable[[str, str | None, int], None]:
        """What a :class:`Stats` calls with each count it takes."""
        counters = self._counters

        def count(name: str, namespace: str | None, amount: int) -> None:
            counter = counters.get(name)
            if counter is None:
                return
            labels = {"config_prefix": prefix}
            if namespace is not None:
                labels["fogredis.namespace"] = namespace
            counter.add(amount, labels)

        return count


_metrics: OtelMetrics | None = None
_metrics_lock = threading.Lock()


def otel_metrics_now() -> OtelMetrics | None:
    """The process's instruments, made at the first call that finds a meter
    provider configured; None while there is none (or no API)."""
    global _metrics
    if _metrics is not None or otel_metrics is None:
        return _metrics
    provider = otel_metrics.get_meter_provider()
    # The API's default stands in until an SDK is set: it records nothing.
    if isinstance(provider, otel_metrics.NoOpMeterProvider) or type(provider).__name__ == (
        "_ProxyMeterProvider"
    ):
        return None
    with _metrics_lock:
        if _metrics is None:
            _metrics = OtelMetrics(provider.get_meter(SCOPE, __version__))
    return _metrics


def attach_metrics(owner: Any, stats: Stats, sources: list[tuple[str, Any]]) -> None:
    """Mirror ``stats`` (of the first source) into OpenTelemetry and watch
    the pools of ``sources`` (prefix, pool) while ``owner`` lives, when a
    meter provider is configured."""
    found = otel_metrics_now()
    if found is None:
        return
    stats.mirror = found.mirror(sources[0][0])
    found.watch_pools(owner, sources)
