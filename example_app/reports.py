"""A cached read endpoint over a deliberately slow computation, and a write
endpoint that invalidates it. The reports live in SQLite, the app's
database: Redis only caches, so the summary can still be computed when Redis
is down."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app

from .errors import json_body
from .extensions import fog

reports = Blueprint("reports", __name__)


def _db() -> sqlite3.Connection:
    path = Path(current_app.config["REPORTS_DATABASE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    connection.execute("CREATE TABLE IF NOT EXISTS reports (title TEXT NOT NULL, value REAL)")
    return connection


@reports.get("/reports/summary")
@fog.cached("reports", ttl=300)
def summary() -> dict[str, Any]:
    """Aggregates every report; slow on purpose (``REPORT_COMPUTE_SECONDS``)
    so that the cache shows its worth."""
    time.sleep(current_app.config["REPORT_COMPUTE_SECONDS"])
    with _db() as db:
        count, total = db.execute("SELECT COUNT(*), TOTAL(value) FROM reports").fetchone()
        latest = db.execute("SELECT title FROM reports ORDER BY rowid DESC LIMIT 1").fetchone()
    return {
        "count": count,
        "total": total,
        "mean": total / count if count else None,
        "latest": latest[0] if latest else None,
    }


@reports.post("/reports")
def add_report() -> tuple[dict[str, Any], int]:
    """Store a report and drop the cached summaries it changes."""
    body = json_body(title=str, value=(int, float))
    title = body["title"].strip()
    if not title or len(title) > 200:
        return {"error": "title must be 1 to 200 characters."}, 400
    if not math.isfinite(body["value"]):
        return {"error": "value must be a finite number."}, 400
    with _db() as db:
        db.execute("INSERT INTO reports (title, value) VALUES (?, ?)", (title, body["value"]))
    removed = fog.cache_clear_namespace("reports")
    return {"stored": title, "invalidated": removed}, 201
