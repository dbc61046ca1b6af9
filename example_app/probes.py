"""The liveness probe: whether this process answers, with no Redis in it.

A liveness probe that failed with Redis would restart every pod during a
Redis outage, which fixes nothing; readiness uses ``/health/redis``."""

from __future__ import annotations

from flask import Blueprint

probes = Blueprint("probes", __name__)


@probes.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
