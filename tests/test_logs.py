"""The flask_fogredis logger's records reach gunicorn's error log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask

from flask_fogredis import FogRedis
from flask_fogredis._logs import _forward

from .processes import Gunicorn
from .servers import free_port


@pytest.mark.slow
def test_an_outage_warning_reaches_gunicorns_error_log(tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = Gunicorn(
        "tests.apps.logs_app:app",
        {"REDIS_URL": dead},
        "--workers",
        "1",
        "--error-logfile",
        str(error_log),
        log=tmp_path / "stdout.log",
    )
    try:
        status, _, _ = server.request("/health/redis")
        assert status == 503
    finally:
        server.stop()
    text = error_log.read_text()
    assert "Redis health check failing (REDIS_URL): unreachable" in text
    assert "Redis health check failing" not in (tmp_path / "stdout.log").read_text()


def test_without_gunicorn_records_go_to_the_app_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no logging configured (pytest's own handler taken off the root),
    a record of the flask_fogredis logger reaches the app's logger."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    ours = logging.getLogger("flask_fogredis")
    monkeypatch.setattr(ours, "handlers", [])
    monkeypatch.setattr(_forward, "apps", [])
    app = Flask("logs-test")
    app.config.update(TESTING=True, REDIS_URL="memory://")
    FogRedis(app)
    assert _forward in ours.handlers
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    monkeypatch.setattr(app.logger, "handlers", [Keep()])
    ours.warning("outage %s", "here")
    assert [r.getMessage() for r in seen] == ["outage here"]
