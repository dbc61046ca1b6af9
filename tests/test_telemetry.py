"""OpenTelemetry spans and metrics, and the blinker signals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token, jwt_required
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flask_fogredis import FogRedis, signals

from .conftest import make_app
from .servers import RedisServer

_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module")
def _providers() -> None:
    """The SDK's in-memory exporters as the global providers, set once (the
    API allows no second one): the tests of this module read them."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))


@pytest.fixture
def exporter(_providers: None) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _app(**config: Any) -> tuple[Flask, FogRedis]:
    app = make_app(REDIS_URL="memory://", JWT_SECRET_KEY="k" * 32, **config)
    JWTManager(app)
    fog = FogRedis(app)

    @app.get("/page")
    @fog.cached(ttl=60, namespace="pages")
    def page() -> str:
        return "body"

    @app.get("/private")
    @jwt_required()
    def private() -> str:
        return "ok"

    return app, fog


def _spans(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def test_cache_spans_say_miss_then_hit(exporter: InMemorySpanExporter) -> None:
    app, _ = _app()
    client = app.test_client()
    assert client.get("/page").headers["X-Cache"] == "MISS"
    assert client.get("/page").headers["X-Cache"] == "HIT"
    assert client.get("/page", headers={"Authorization": "Bearer x"}).status_code == 200
    spans = _spans(exporter, "fogredis.cache")
    results = [span.attributes["fogredis.cache.result"] for span in spans]
    assert results == ["miss", "hit", "bypass"]
    assert {span.attributes["fogredis.namespace"] for span in spans} == {"pages"}
    assert [span.attributes["fogredis.cache.near"] for span in spans] == [False] * 3


def test_revocation_and_health_spans(exporter: InMemorySpanExporter) -> None:
    app, fog = _app()
    with app.app_context():
        token = create_access_token("alice")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/private", headers=headers).status_code == 200
    with app.app_context():
        fog.revoke_token(token)
    assert client.get("/private", headers=headers).status_code == 401
    checks = _spans(exporter, "fogredis.revocation.check")
    assert [span.attributes["fogredis.revocation.revoked"] for span in checks] == [False, True]
    assert client.get("/health/redis").status_code == 200
    with app.app_context():
        fog.health_check()
    health = _spans(exporter, "fogredis.health.check")
    assert [span.attributes["fogredis.health.healthy"] for span in health] == [True, True]


def test_our_span_is_the_parent_of_spans_made_inside_it(exporter: InMemorySpanExporter) -> None:
    """As a per-command span of opentelemetry-instrumentation-redis would be."""
    app, fog = _app()
    tracer = trace.get_tracer("test")

    @app.get("/inner")
    @fog.cached(ttl=60, namespace="inner")
    def inner() -> str:
        with tracer.start_as_current_span("inner-work"):
            return "x"

    app.test_client().get("/inner")
    (outer,) = _spans(exporter, "fogredis.cache")
    (child,) = _spans(exporter, "inner-work")
    assert child.parent is not None and child.parent.span_id == outer.context.span_id


def test_metrics_mirror_the_counters(_providers: None) -> None:
    app, fog = _app()
    client = app.test_client()
    client.get("/page")
    client.get("/page")
    with app.app_context():
        fog.cache_get("helper", "absent")
    data = _READER.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name == "flask_fogredis":
                for metric in scope.metrics:
                    points[metric.name] = list(metric.data.data_points)
    hits = {p.attributes["fogredis.namespace"]: p.value for p in points["fogredis.cache.hits"]}
    misses = {p.attributes["fogredis.namespace"]: p.value for p in points["fogredis.cache.misses"]}
    assert hits["pages"] >= 1 and misses["pages"] >= 1 and misses["helper"] >= 1
    assert "fogredis.pool.in_use" in points and "fogredis.pool.waiting" in points


def test_no_provider_no_tracer() -> None:
    """In a process with no provider configured (or no API at all), the
    features see no tracer and no meter: nothing is made per request."""
    code = (
        "from flask import Flask\n"
        "from flask_fogredis import FogRedis\n"
        "from flask_fogredis import _telemetry\n"
        "app = Flask('x'); app.config.update(TESTING=True, REDIS_URL='memory://')\n"
        "fog = FogRedis(app)\n"
        "with app.app_context():\n"
        "    state = fog.state()\n"
        "    assert state.tracer is None and state.cache.tracer is None\n"
        "    assert state.revocations.tracer is None and state.stats.mirror is None\n"
        "    assert _telemetry._metrics is None\n"
        "print('ok')\n"
    )
    blocked = "import sys; sys.modules['opentelemetry'] = None\n"
    for prelude in ("", blocked):
        done = subprocess.run(
            [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60
        )
        assert done.stdout.strip() == "ok", done.stderr


# -- signals ---------------------------------------------------------------


def _record(signal: Any, app: Flask) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **arguments: Any) -> None:
        assert sender is app
        seen.append(arguments)

    signal.connect(receiver, sender=app, weak=False)
    return seen


def test_cache_signals() -> None:
    app, fog = _app()
    hits, misses = _record(signals.cache_hit, app), _record(signals.cache_miss, app)
    stores = _record(signals.cache_store, app)
    dropped = _record(signals.cache_invalidated, app)
    try:
        client = app.test_client()
        client.get("/page")
        client.get("/page")
        with app.app_context():
            fog.cache_set("n", "k", "v")
            assert fog.cache_get("n", "k") == "v"
            assert fog.cache_get("n", "absent") is None
            fog.cache_delete("n", "k")
            fog.cache_clear_namespace("pages")
    finally:
        for signal in (
            signals.cache_hit,
            signals.cache_miss,
            signals.cache_store,
            signals.cache_invalidated,
        ):
            signal.receivers.clear()
    assert misses == [{"namespace": "pages", "key": None}, {"namespace": "n", "key": "absent"}]
    assert hits == [
        {"namespace": "pages", "key": None, "near_cache": False, "result": "hit"},
        {"namespace": "n", "key": "k", "near_cache": False, "result": "hit"},
    ]
    assert stores == [{"namespace": "pages", "key": None}, {"namespace": "n", "key": "k"}]
    assert dropped == [
        {"namespace": "n", "key": "k", "count": 1},
        {"namespace": "pages", "key": None, "count": 1},
    ]


def test_revocation_signals() -> None:
    app, fog = _app()
    revoked = _record(signals.token_revoked, app)
    refused = _record(signals.revocation_refused, app)
    try:
        with app.app_context():
            token = create_access_token("alice")
            fog.revoke_token(token)
            fog.revoke_all_tokens("bob")
        assert [r["everywhere"] for r in revoked] == [False, True]
        assert revoked[0]["jti"] and revoked[1] == {
            "jti": None,
            "identity": "bob",
            "everywhere": True,
        }
        assert refused == []
    finally:
        signals.token_revoked.receivers.clear()
        signals.revocation_refused.receivers.clear()


def test_refused_check_and_availability_signals(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url, JWT_SECRET_KEY="k" * 32, REDIS_CONNECT_TIMEOUT=0.5)
    JWTManager(app)
    fog = FogRedis(app)

    @app.get("/private")
    @jwt_required()
    def private() -> str:
        return "ok"

    refused = _record(signals.revocation_refused, app)
    down = _record(signals.redis_unavailable, app)
    up = _record(signals.redis_available, app)
    try:
        with app.app_context():
            token = create_access_token("alice")
            assert fog.health_check()["healthy"] is True
        redis_server.kill()
        headers = {"Authorization": f"Bearer {token}"}
        assert app.test_client().get("/private", headers=headers).status_code == 503
        with app.app_context():
            assert fog.health_check()["healthy"] is False
            redis_server.start()
            assert fog.health_check()["healthy"] is True
    finally:
        for signal in (
            signals.revocation_refused,
            signals.redis_unavailable,
            signals.redis_available,
        ):
            signal.receivers.clear()
    assert len(refused) == 1 and "password" not in str(refused[0]["error"]).lower()
    assert down == [{"config_prefix": "REDIS", "error": "unreachable"}]
    assert up == [{"config_prefix": "REDIS"}]


# -- metrics joining the app's own --------------------------------------------


def test_our_metrics_are_on_prometheus_clients_registry() -> None:
    from prometheus_client import REGISTRY, generate_latest

    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with app.app_context():
        fog.cache_get("joined", "absent")
    text = generate_latest(REGISTRY).decode()
    assert 'fogredis_cache_misses_total{config_prefix="REDIS",namespace="joined"}' in text
    assert "fogredis_pool_size" in text


def test_an_apps_own_metrics_route_added_later_wins_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(REDIS_URL="memory://")
    FogRedis(app)

    @app.get("/metrics")
    def own_metrics() -> str:
        return "the app's own"

    client = app.test_client()
    with caplog.at_level("WARNING", logger="flask_fogredis"):
        assert client.get("/metrics").get_data(as_text=True) == "the app's own"
        assert client.get("/metrics").get_data(as_text=True) == "the app's own"
    warnings = [r for r in caplog.records if "the app's answers it" in r.getMessage()]
    assert len(warnings) == 1
    assert "REDIS_METRICS_URL" in warnings[0].getMessage()
