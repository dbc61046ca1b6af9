"""A pytest plugin that runs flask-jwt-extended's own test suite with
FogRedis on every app that suite builds (see scripts/peer-tests).

``FOGREDIS_PEER_ORDER`` says when FogRedis joins an app: ``before`` (as the
app is created, so before its JWTManager) or ``after`` (right after the
JWTManager is attached). Either way the app uses the embedded store
(``memory://``). At the end it reports how many apps got FogRedis and how
many revocation checks FogRedis made, so that a run in which FogRedis took
no part cannot pass as one in which it did.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter
from flask import Flask
from flask_jwt_extended import JWTManager

from flask_fogredis import FogRedis
from flask_fogredis._revocation import Revocations

ORDER = os.environ.get("FOGREDIS_PEER_ORDER", "")
if ORDER not in ("before", "after"):
    raise pytest.UsageError("Set FOGREDIS_PEER_ORDER to 'before' or 'after'.")

_counts = {"apps": 0, "checks": 0}
_fog = FogRedis()


def _add_fogredis(app: Flask) -> None:
    app.config["REDIS_URL"] = "memory://"
    _fog.init_app(app)
    _counts["apps"] += 1


_flask_init = Flask.__init__
_manager_init_app = JWTManager.init_app
_is_revoked = Revocations.is_revoked


@functools.wraps(_flask_init)
def _flask_init_then_fogredis(self: Flask, *args: Any, **kwargs: Any) -> None:
    _flask_init(self, *args, **kwargs)
    _add_fogredis(self)


@functools.wraps(_manager_init_app)
def _init_app_then_fogredis(self: JWTManager, app: Flask, *args: Any, **kwargs: Any) -> None:
    _manager_init_app(self, app, *args, **kwargs)
    _add_fogredis(app)


@functools.wraps(_is_revoked)
def _counted(self: Revocations, *args: Any, **kwargs: Any) -> bool:
    _counts["checks"] += 1
    return _is_revoked(self, *args, **kwargs)


if ORDER == "before":
    Flask.__init__ = _flask_init_then_fogredis  # type: ignore[method-assign]
else:
    JWTManager.init_app = _init_app_then_fogredis  # type: ignore[method-assign]
Revocations.is_revoked = _counted  # type: ignore[method-assign]


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    stats = terminalreporter.stats
    counts = {kind: len(stats.get(kind, [])) for kind in ("passed", "failed", "error", "skipped")}
    terminalreporter.write_line(
        f"flask-jwt-extended's suite, FogRedis {ORDER} JWTManager: "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} not applicable; FogRedis on {_counts['apps']} apps, "
        f"{_counts['checks']} revocation checks by FogRedis"
    )
    for report in stats.get("skipped", []):
        terminalreporter.write_line(f"  not applicable: {report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _counts["apps"] == 0 or _counts["checks"] == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
