"""Prometheus metrics: the text format, the counters, the pool gauges, the
credential, and sums over gunicorn's workers in multiprocess mode."""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from flask_jwt_extended import create_access_token
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import TestResponse

from flask_fogredis import ConfigurationError, FogRedis, RedisUnavailableError, _multiproc
from flask_fogredis._metrics import CONTENT_TYPE, FAMILIES, MULTIPROC_ENV

from .conftest import make_app
from .jwt_helpers import bearer, jwt_app
from .processes import ROOT, Gunicorn
from .servers import RedisServer

TOKEN = "a-metrics-credential-long-enough"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, keyed by name and labels; fails on malformed text."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset({"config_prefix": "REDIS", **labels}.items()))]


def scrape(app: Flask, path: str = "/metrics") -> Samples:
    response = app.test_client().get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.get_data(as_text=True))


def test_text_format_has_every_family_with_help_and_type() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with app.app_context():
        fog.state().stats.cache_event("pages", "hits")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for expected in FAMILIES:
        family = families[expected.name]
        assert family.type == expected.kind
        assert family.documentation
    assert text.endswith("\n")


def test_counters_follow_what_happened() -> None:
    app, fog, _ = jwt_app()
    with app.app_context():
        stats = fog.state().stats
        token = create_access_token("ada")
        fog.blacklist_token("one", 60)
        fog.blacklist_token("two", 60)
    for kind in ("hits", "hits", "misses", "errors"):
        stats.cache_event("pages", kind)
    stats.cache_event('odd "name"\\', "misses")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/protected", headers=bearer(token)).status_code == 200
    samples = scrape(app)
    assert value(samples, "fogredis_revocations_total") == 2
    assert value(samples, "fogredis_revocation_checks_total") == 3
    assert value(samples, "fogredis_redis_errors_total") == 0
    assert value(samples, "fogredis_cache_hits_total", namespace="pages") == 2
    assert value(samples, "fogredis_cache_misses_total", namespace="pages") == 1
    assert value(samples, "fogredis_cache_errors_total", namespace="pages") == 1
    assert value(samples, "fogredis_cache_misses_total", namespace='odd "name"\\') == 1
    assert value(samples, "fogredis_pool_size") == 10
    assert value(samples, "fogredis_up") == 1


def test_redis_errors_latency_and_up_on_a_real_server(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_HEALTH_CACHE_SECONDS=0)
    fog = FogRedis(app)
    samples = scrape(app)
    assert value(samples, "fogredis_up") == 1
    assert 0 < value(samples, "fogredis_ping_latency_seconds") < 1
    redis_server.kill()
    with app.app_context(), pytest.raises(RedisUnavailableError):
        fog.get("k")
    samples = scrape(app)
    assert value(samples, "fogredis_redis_errors_total") == 1
    assert value(samples, "fogredis_up") == 0


def test_pool_gauges_show_connections_in_use_and_callers_waiting(
    redis_server: RedisServer,
) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_POOL_SIZE=2, REDIS_POOL_TIMEOUT=10)
    fog = FogRedis(app)

    def hold() -> None:
        with app.app_context():
            fog.client.blpop(["never-pushed"], timeout=2)

    holders = [threading.Thread(target=hold) for _ in range(4)]
    for thread in holders:
        thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        samples = scrape(app)
        if value(samples, "fogredis_pool_waiting") == 2:
            break
        time.sleep(0.05)
    assert value(samples, "fogredis_pool_waiting") == 2
    assert value(samples, "fogredis_pool_in_use") == 2
    for thread in holders:
        thread.join(15)
    samples = scrape(app)
    assert (value(samples, "fogredis_pool_in_use"), value(samples, "fogredis_pool_waiting")) == (
        0,
        0,
    )


def test_credential_when_configured() -> None:
    app = make_app(REDIS_URL="memory://", REDIS_METRICS_TOKEN=TOKEN)
    FogRedis(app)
    client = app.test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers=bearer(TOKEN + "x")).status_code == 403
    allowed = client.get("/metrics", headers=bearer(TOKEN))
    assert allowed.status_code == 200
    assert parse(allowed.get_data(as_text=True))


def test_path_is_configurable_and_metrics_can_be_turned_off() -> None:
    app = make_app(REDIS_URL="memory://", REDIS_METRICS_URL="/internal/metrics")
    FogRedis(app)
    assert app.test_client().get("/metrics").status_code == 404
    assert scrape(app, "/internal/metrics")
    off = make_app(REDIS_URL="memory://", REDIS_METRICS_ENABLED=False)
    FogRedis(off)
    assert off.test_client().get("/metrics").status_code == 404


def test_the_apps_own_metrics_route_is_not_shadowed() -> None:
    app = make_app(REDIS_URL="memory://")

    @app.get("/metrics")
    def own() -> str:
        return "own"

    with pytest.raises(ConfigurationError, match="REDIS_METRICS_URL"):
        FogRedis(app)


def test_two_prefixes_share_one_endpoint_with_a_label_each() -> None:
    app = make_app(REDIS_URL="memory://", CACHE_REDIS_URL="memory://", CACHE_REDIS_POOL_SIZE=3)
    FogRedis(app)
    cache = FogRedis(app, config_prefix="CACHE_REDIS")
    with app.app_context():
        cache.state().stats.cache_event("pages", "hits")
    samples = scrape(app)
    assert value(samples, "fogredis_pool_size") == 10
    cache_labels = frozenset({"config_prefix": "CACHE_REDIS"}.items())
    assert samples[("fogredis_pool_size", cache_labels)] == 3
    hits = frozenset({"config_prefix": "CACHE_REDIS", "namespace": "pages"}.items())
    assert samples[("fogredis_cache_hits_total", hits)] == 1
    assert ("fogredis_cache_hits_total", hits | {("config_prefix", "REDIS")}) not in samples


def test_works_without_prometheus_client() -> None:
    """The counters and the endpoint need no optional dependency."""
    script = """
import sys
sys.modules["prometheus_client"] = None  # any import of it now fails
from flask import Flask
from flask_fogredis import FogRedis
app = Flask("bare")
app.config.update(TESTING=True, REDIS_URL="memory://")
fog = FogRedis(app)
with app.app_context():
    fog.state().stats.cache_event("pages", "misses")
    fog.blacklist_token("jti", 60)
sys.stdout.write(app.test_client().get("/metrics").get_data(as_text=True))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    samples = parse(out.stdout)
    assert value(samples, "fogredis_cache_misses_total", namespace="pages") == 1
    assert value(samples, "fogredis_revocations_total") == 1


def test_multiprocess_mode_needs_a_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match=MULTIPROC_ENV):
        FogRedis(make_app(REDIS_URL="memory://"))
    # Metrics off: the variable is someone else's business.
    FogRedis(make_app(REDIS_URL="memory://", REDIS_METRICS_ENABLED=False))


def test_multiprocess_mode_set_too_late_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # prometheus-client was imported by this test process without the
    # variable: its values are per process, and sums would be wrong.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(ConfigurationError, match="imported before"):
        FogRedis(make_app(REDIS_URL="memory://"))


@pytest.mark.slow
def test_gunicorn_workers_report_sums_in_multiprocess_mode(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    server = Gunicorn(
        "tests.apps.metrics_app:app",
        {"REDIS_URL": redis_server.url, MULTIPROC_ENV: str(shared)},
        "--preload",
        "--workers",
        "2",
        "--threads",
        "2",
        log=tmp_path / "gunicorn.log",
    )
    try:
        pids: set[str] = set()
        lock = threading.Lock()
        sent = {"hits": 0, "revocations": 0}

        def client(n: int) -> None:
            for i in range(10):
                status, _, body = server.request(f"/hit/pages?{n}-{i}")
                assert status == 200
                status, _, other = server.request(f"/revoke/{n}-{i}")
                assert status == 200
                with lock:
                    pids.update((body.decode(), other.decode()))
                    sent["hits"] += 1
                    sent["revocations"] += 1

        # On a loaded machine one worker may take a whole batch: send more
        # until both have counted, or the sums would prove nothing.
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert len(pids) == 2, "both workers must have counted for the sums to mean anything"
        scrapes = []
        for _ in range(8):
            status, _, body = server.request("/metrics")
            assert status == 200
            scrapes.append(parse(body.decode()))
    finally:
        server.stop()
    assert sent["hits"] == sent["revocations"] >= 60
    for samples in scrapes:
        assert value(samples, "fogredis_cache_hits_total", namespace="pages") == sent["hits"]
        assert value(samples, "fogredis_revocations_total") == sent["revocations"]
        assert value(samples, "fogredis_pool_size") == 10
        assert value(samples, "fogredis_pool_in_use") == 0
        assert value(samples, "fogredis_pool_waiting") == 0
        assert value(samples, "fogredis_up") == 1
        # Only this extension's metrics are served from the shared directory.
        assert all(name.startswith("fogredis_") for name, _ in samples)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_the_shared_directory_stays_small_across_worker_restarts_and_cli_runs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"REDIS_URL": redis_server.url, MULTIPROC_ENV: str(shared)}
    server = Gunicorn(
        "tests.apps.metrics_app:app",
        env,
        "--config",
        "tests/apps/multiproc_gunicorn.py",
        "--workers",
        "2",
        "--max-requests",
        "3",
        log=tmp_path / "gunicorn.log",
    )
    pids: set[str] = set()
    sent = answered = 0
    try:
        while answered < 60:
            sent += 1
            try:
                status, _, body = server.request(f"/hit/pages?{sent}")
            except (ConnectionResetError, http.client.RemoteDisconnected):
                # A connection gunicorn dropped while recycling a worker:
                # not answered, and maybe counted.
                assert sent < 80, "gunicorn kept dropping connections"
                continue
            assert status == 200
            answered += 1
            pids.add(body.decode())
        for _ in range(4):
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "flask",
                    "--app",
                    "tests.apps.metrics_app",
                    "fogredis",
                    "ping",
                ],
                cwd=ROOT,
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stderr
        status, _, body = server.request("/metrics")
        assert status == 200
        samples = parse(body.decode())
    finally:
        server.stop()
    # Many workers came and went, yet no count was lost...
    assert len(pids) >= 10
    # Every answered hit was counted; a dropped request may have been too.
    assert 60 <= value(samples, "fogredis_cache_hits_total", namespace="pages") <= sent
    # ...and the directory holds the live processes' files plus one archive
    # per kind, not a set of files per process that ever ran.
    files = sorted(p.name for p in shared.glob("*.db"))
    assert len(files) <= 16, files


def test_a_route_added_after_init_app_at_our_path_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(REDIS_URL="memory://")
    FogRedis(app)

    @app.get("/metrics")
    def own_metrics() -> str:
        return "the app's own"

    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        app.test_client().get("/metrics")
        assert app.test_client().get("/metrics").get_data(as_text=True) == "the app's own"
    errors = [r.getMessage() for r in caplog.records if "REDIS_METRICS_URL" in r.getMessage()]
    assert len(errors) == 1 and "own_metrics" in errors[0]


def two_prefixes(**config: object) -> Flask:
    app = make_app(REDIS_URL="memory://", CACHE_REDIS_URL="memory://", **config)
    FogRedis(app)
    FogRedis(app, config_prefix="CACHE_REDIS")
    return app


def prefixes_in(response: TestResponse) -> set[str]:
    assert response.status_code == 200
    return {dict(labels)["config_prefix"] for _, labels in parse(response.get_data(as_text=True))}


def test_a_second_prefixs_token_guards_the_shared_path() -> None:
    app = two_prefixes(CACHE_REDIS_METRICS_TOKEN=TOKEN)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(TOKEN + "x")).status_code == 403
    allowed = client.get("/metrics", headers=bearer(TOKEN))
    assert prefixes_in(allowed) == {"REDIS", "CACHE_REDIS"}


def test_each_token_shows_its_own_prefix() -> None:
    other = "another-metrics-credential-long"
    app = two_prefixes(REDIS_METRICS_TOKEN=TOKEN, CACHE_REDIS_METRICS_TOKEN=other)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert prefixes_in(client.get("/metrics", headers=bearer(TOKEN))) == {"REDIS"}
    assert prefixes_in(client.get("/metrics", headers=bearer(other))) == {"CACHE_REDIS"}


def test_a_prefix_on_another_path_is_not_shown_here() -> None:
    app = two_prefixes(CACHE_REDIS_METRICS_URL="/internal/metrics", CACHE_REDIS_METRICS_TOKEN=TOKEN)
    client = app.test_client()
    assert prefixes_in(client.get("/metrics")) == {"REDIS"}
    assert client.get("/internal/metrics").status_code == 401
    inside = client.get("/internal/metrics", headers=bearer(TOKEN))
    assert prefixes_in(inside) == {"CACHE_REDIS"}


def test_shared_mode_shows_only_the_prefixes_a_token_may_see(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, series come from the shared files: they
    are filtered by prefix too."""
    script = f"""
import sys
from flask import Flask
from flask_fogredis import FogRedis
app = Flask("shared")
app.config.update(
    TESTING=True,
    REDIS_URL="memory://",
    CACHE_REDIS_URL="memory://",
    REDIS_METRICS_TOKEN="{TOKEN}",
    CACHE_REDIS_METRICS_URL="/internal/metrics",
)
FogRedis(app)
FogRedis(app, config_prefix="CACHE_REDIS")
client = app.test_client()
assert client.get("/metrics").status_code == 401
sys.stdout.write(
    client.get("/metrics", headers={{"Authorization": "Bearer {TOKEN}"}}).get_data(as_text=True)
)
sys.stdout.write("=====")
sys.stdout.write(client.get("/internal/metrics").get_data(as_text=True))
"""
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr
    first, second = (parse(text) for text in out.stdout.split("====="))
    assert {dict(labels)["config_prefix"] for _, labels in first} == {"REDIS"}
    assert {dict(labels)["config_prefix"] for _, labels in second} == {"CACHE_REDIS"}


def test_a_death_reported_during_a_fold_is_folded_after_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # gunicorn's SIGCHLD handler may interrupt a fold under way (two workers
    # recycled at once): the nested call must neither import prometheus-client
    # half-way nor wait on the folder lock its own process holds.
    folded: list[int] = []

    def mark(pid: int, directory: str) -> None:
        if pid == 1:
            _multiproc.mark_process_dead(2, directory)  # "the signal"
            assert folded == []  # queued, not folded inside the first
        folded.append(pid)

    monkeypatch.setattr(_multiproc, "_mark", mark)
    _multiproc.mark_process_dead(1, str(tmp_path))
    assert folded == [1, 2]
    assert _multiproc._queued == []


def test_a_fold_that_fails_is_logged_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The caller is gunicorn's arbiter: an exception would end it.
    def broken(pid: int, directory: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_multiproc, "_mark", broken)
    with caplog.at_level(logging.ERROR, logger="flask_fogredis"):
        _multiproc.mark_process_dead(7, str(tmp_path))
    assert "Could not fold the metric files of process 7" in caplog.text
    assert _multiproc._queued == []
