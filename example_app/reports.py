"""A cached read endpoint over a deliberately slow computation, and a write
endpoint that invalidates it. The reports live in SQLite, the app's
database: Redis only caches, so the summary can still be computed when Redis
is down.

Invalidation changes a generation that is part of every summary's cache key
instead of deleting entries: one write to one key, whatever the size of the
keyspace. Entries of older generations are never read again and expire with
their TTL."""

from __future__ import annotations

import contextlib
import math
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Request, current_app
from flask_jwt_extended import jwt_required

from .errors import json_body
from .extensions import fog

reports = Blueprint("reports", __name__)


# The generation lives in a namespace of its own, so that its lookups do not
# count as the summary's hits and misses.
GENERATION_NAMESPACE = "reports-generation"
# Longer than any summary entry lives; losing it early costs a recomputation.
GENERATION_TTL = 24 * 3600


@contextlib.contextmanager
def _db() -> Iterator[sqlite3.Connection]:
    """A connection in a transaction: committed when the block succeeds,
    rolled back when it raises, and closed either way (sqlite3's own context
    manager commits but leaves the connection open)."""
    path = Path(current_app.config["REPORTS_DATABASE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as connection, connection:
        connection.execute("CREATE TABLE IF NOT EXISTS reports (title TEXT NOT NULL, value REAL)")
        yield connection


def _generation(_request: Request) -> str:
    """The summary's current generation. A missing one (never written,
    expired, evicted, or the cache is down) becomes a new random value, never
    an old one, so no entry from before an invalidation can come back."""
    current = fog.cache_get(GENERATION_NAMESPACE, "summary")
    if current is not None:
        return current if isinstance(current, str) else current.decode()
    fresh = secrets.token_hex(8)
    fog.cache_set(GENERATION_NAMESPACE, "summary", fresh, ttl=GENERATION_TTL)
    return fresh


@reports.get("/reports/summary")
@fog.cached("reports", ttl=300, key_func=_generation)
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
@jwt_required()
def add_report() -> tuple[dict[str, Any], int]:
    """Store a report, then start a new generation of cached summaries.
    ``invalidated`` is false when the cache could not be told (the old
    summary may then be served until its TTL ends)."""
    body = json_body(title=str, value=(int, float))
    title = body["title"].strip()
    if not title or len(title) > 200:
        return {"error": "title must be 1 to 200 characters."}, 400
    if not math.isfinite(body["value"]):
        return {"error": "value must be a finite number."}, 400
    with _db() as db:
        db.execute("INSERT INTO reports (title, value) VALUES (?, ?)", (title, body["value"]))
    # After the commit: a summary computed from now on sees the new report.
    invalidated = fog.cache_set(
        GENERATION_NAMESPACE, "summary", secrets.token_hex(8), ttl=GENERATION_TTL
    )
    return {"stored": title, "invalidated": invalidated}, 201
