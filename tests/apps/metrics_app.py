"""Served by gunicorn with several workers; counts events the way the cache
and revocation code does."""

from __future__ import annotations

import os

from flask import Flask

from flask_fogredis import FogRedis

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
fog = FogRedis(app)

with app.app_context():
    # The parent uses the pool and the health probe before forking.
    fog.set("preloaded", "parent")
    assert fog.health_check()["healthy"]


@app.get("/hit/<namespace>")
def hit(namespace: str) -> str:
    fog.state().stats.cache_event(namespace, "hits")
    fog.get("anything")  # takes and returns a pooled connection
    return str(os.getpid())


@app.get("/revoke/<jti>")
def revoke(jti: str) -> str:
    fog.blacklist_token(jti, 60)
    return str(os.getpid())
