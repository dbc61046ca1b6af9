"""A cached read endpoint over a deliberately slow computation, and a write
endpoint that invalidates it."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from flask import Blueprint, current_app

from .errors import json_body
from .extensions import fog

reports = Blueprint("reports", __name__)
_KEY = "example:reports"


@reports.get("/reports/summary")
@fog.cached("reports", ttl=300)
def summary() -> dict[str, Any]:
    """Aggregates every report; slow on purpose (``REPORT_COMPUTE_SECONDS``)
    so that the cache shows its worth."""
    time.sleep(current_app.config["REPORT_COMPUTE_SECONDS"])
    rows = [json.loads(row) for row in fog.client.lrange(_KEY, 0, -1)]
    values = [row["value"] for row in rows]
    return {
        "count": len(rows),
        "total": sum(values),
        "mean": sum(values) / len(values) if values else None,
        "latest": rows[-1]["title"] if rows else None,
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
    fog.client.rpush(_KEY, json.dumps({"title": title, "value": body["value"]}))
    removed = fog.cache_clear_namespace("reports")
    return {"stored": title, "invalidated": removed}, 201
