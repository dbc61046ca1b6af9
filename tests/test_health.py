"""The health endpoint: body, headers, routing, config and the detailed mode
(logic on the embedded store; outages are in test_health_network.py)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from flask import Flask

from flask_fogredis import ConfigurationError, FogRedis

from .conftest import make_app

TOKEN = "a-detail-credential-long-enough"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
INFO_FIELDS = ("redis_version", "used_memory", "maxmemory", "role", "connected_clients")


def app_with(**config: Any) -> tuple[Flask, FogRedis]:
    app = make_app(REDIS_URL="memory://", **config)
    return app, FogRedis(app)


def test_healthy_answer_is_json_with_the_documented_fields() -> None:
    app, _ = app_with()
    response = app.test_client().get("/health/redis")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["healthy"] is True
    assert body["connected"] is True
    assert isinstance(body["latency_ms"], float) and body["latency_ms"] >= 0
    assert body["pool_size"] == 10
    assert body["pool_in_use"] == 0
    assert body["pool_waiting"] == 0
    assert body["error"] is None
    assert "details" not in body


def test_head_answers_the_same_status_without_a_body() -> None:
    app, _ = app_with()
    response = app.test_client().head("/health/redis")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.data == b""


def test_other_methods_are_not_allowed() -> None:
    app, _ = app_with()
    assert app.test_client().post("/health/redis").status_code == 405


def test_path_is_configurable_and_the_endpoint_can_be_turned_off() -> None:
    app, _ = app_with(REDIS_HEALTH_URL="/ops/redis/")
    client = app.test_client()
    assert client.get("/ops/redis").status_code == 200
    assert client.get("/health/redis").status_code == 404
    off, _ = app_with(REDIS_HEALTH_ENABLED=False)
    assert off.test_client().get("/health/redis").status_code == 404


def test_two_prefixes_on_one_app_get_their_own_endpoints() -> None:
    app = make_app(REDIS_URL="memory://", CACHE_REDIS_URL="memory://", CACHE_REDIS_POOL_SIZE=3)
    FogRedis(app)
    FogRedis(app, config_prefix="CACHE_REDIS")
    client = app.test_client()
    assert client.get("/health/redis").get_json()["pool_size"] == 10
    assert client.get("/health/cache-redis").get_json()["pool_size"] == 3
    assert app.config["CACHE_REDIS_HEALTH_URL"] is None  # the default, derived from the prefix


def test_a_path_the_app_already_serves_is_a_clear_error() -> None:
    app = make_app(REDIS_URL="memory://")

    @app.get("/health/redis")
    def mine() -> str:
        return "mine"

    with pytest.raises(ConfigurationError, match=r"REDIS_HEALTH_URL.*REDIS_HEALTH_ENABLED"):
        FogRedis(app)
    assert app.test_client().get("/health/redis").data == b"mine"
    assert "fogredis" not in app.extensions or not app.extensions["fogredis"]


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("REDIS_HEALTH_URL", "health", "path"),
        ("REDIS_HEALTH_URL", "/health/<name>", "path"),
        ("REDIS_HEALTH_URL", 5, "path"),
        ("REDIS_METRICS_URL", "/health/redis", "different paths"),
        ("REDIS_HEALTH_ENABLED", "sometimes", "True or False"),
        ("REDIS_HEALTH_CACHE_SECONDS", -1, "seconds"),
        ("REDIS_HEALTH_DETAILS_TOKEN", "has spaces in it", "spaces"),
        ("REDIS_HEALTH_DETAILS_TOKEN", 1234, "string"),
        ("REDIS_METRICS_TOKEN", " padded ", "spaces"),
    ],
)
def test_bad_endpoint_config_names_the_key(key: str, value: object, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        app_with(**{key: value})
    assert key in str(info.value) and named in str(info.value)


def test_result_is_reused_briefly_and_then_refreshed() -> None:
    app, fog = app_with(REDIS_HEALTH_CACHE_SECONDS=60)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/health/redis").status_code == 200
    with app.app_context():
        probe = fog.state().probe
    assert probe.pings == 1

    app, fog = app_with(REDIS_HEALTH_CACHE_SECONDS=0)
    client = app.test_client()
    for _ in range(5):
        client.get("/health/redis")
    with app.app_context():
        assert fog.state().probe.pings == 5


def test_health_check_method_stays_fresh() -> None:
    app, fog = app_with(REDIS_HEALTH_CACHE_SECONDS=60)
    app.test_client().get("/health/redis")
    with app.app_context():
        fog.health_check()
        fog.health_check()
        assert fog.state().probe.pings == 3


def test_a_storm_shares_one_check_per_interval() -> None:
    app, fog = app_with(REDIS_HEALTH_CACHE_SECONDS=60)
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def probe() -> None:
        client = app.test_client()
        start.wait()
        for _ in range(4):
            status = client.get("/health/redis").status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=probe) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 200
    with app.app_context():
        assert fog.state().probe.pings == 1


# -- detailed mode ---------------------------------------------------------


def test_detailed_mode_is_off_by_default() -> None:
    app, fog = app_with()
    client = app.test_client()
    for response in (
        client.get("/health/redis?details=1"),
        client.get("/health/redis?details=1", headers=BEARER),
        client.get("/health/redis", headers={"Authorization": "Bearer anything"}),
    ):
        assert response.status_code == 200
        body = response.get_json()
        assert "details" not in body
        assert not any(field in response.get_data(as_text=True) for field in INFO_FIELDS)
    with app.app_context():
        assert fog.state().probe.collect_info is False


def test_detailed_mode_refuses_a_missing_credential() -> None:
    app, _ = app_with(REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    client = app.test_client()
    for headers in ({}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/health/redis?details=1", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.headers["Cache-Control"] == "no-store"
        assert "details" not in response.get_json()


def test_detailed_mode_refuses_a_wrong_credential() -> None:
    app, _ = app_with(REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    client = app.test_client()
    for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "é"):
        response = client.get(
            "/health/redis?details=true", headers={"Authorization": f"Bearer {wrong}"}
        )
        assert response.status_code == 403
        assert TOKEN not in response.get_data(as_text=True)


def test_probes_without_details_are_unaffected_by_the_detailed_mode() -> None:
    app, _ = app_with(REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer some-gateway-token"}):
        response = client.get("/health/redis", headers=headers)
        assert response.status_code == 200
        assert "details" not in response.get_json()


def test_detailed_report_with_the_credential() -> None:
    app, fog = app_with(REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    with app.app_context():
        stats = fog.state().stats
    for kind in ("hits", "hits", "hits", "misses"):
        stats.cache_event("pages", kind)
    stats.cache_event("empty", "errors")
    client = app.test_client()
    for url in ("/health/redis", "/health/redis?details=1"):
        response = client.get(url, headers=BEARER)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        details = response.get_json()["details"]
        assert details["cache"]["pages"] == {"hits": 3, "misses": 1, "errors": 0, "hit_rate": 0.75}
        assert details["cache"]["empty"]["hit_rate"] is None
        assert details["pool_in_use"] == 0
        assert isinstance(details["pool_idle"], int)
        assert set(INFO_FIELDS) <= set(details)


def test_a_short_credential_warns_in_production(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("prod")
    app.config.update(REDIS_URL="memory://", REDIS_HEALTH_DETAILS_TOKEN="short")
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        FogRedis(app)
    assert "REDIS_HEALTH_DETAILS_TOKEN is shorter than 16" in caplog.text
    assert "short" not in caplog.text.replace("shorter", "")
