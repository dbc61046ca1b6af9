"""Every feature behind one small pool, for each gunicorn worker class.

``HOLD`` seconds spent on a pooled connection (a BLPOP on an empty list)
keep it busy so that other requests must wait for one.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, jwt_required

from flask_fogredis import FogRedis, FogRedisError

from ..jwt_helpers import SECRET_KEY

app = Flask(__name__)
app.config.update(
    REDIS_URL=os.environ["REDIS_URL"],
    REDIS_POOL_SIZE=int(os.environ.get("REDIS_POOL_SIZE", "4")),
    REDIS_POOL_TIMEOUT=float(os.environ.get("REDIS_POOL_TIMEOUT", "10")),
    REDIS_NEAR_CACHE=os.environ.get("REDIS_NEAR_CACHE", "false"),
    REDIS_HEALTH_CACHE_SECONDS=float(os.environ.get("REDIS_HEALTH_CACHE_SECONDS", "1")),
    # Longer than any hold.
    REDIS_SOCKET_TIMEOUT=10.0,
    JWT_SECRET_KEY=SECRET_KEY,
)
fog = FogRedis(app)
JWTManager(app)


@app.errorhandler(FogRedisError)
def redis_unavailable(exc: FogRedisError) -> tuple[dict[str, str], int]:
    """The answer this app documents for a Redis it cannot reach in time."""
    return {"error": str(exc)}, 503


@app.get("/plain/<name>")
def plain(name: str) -> dict[str, Any]:
    fog.set(f"plain:{name}", name, expire=60)
    return {"value": fog.get(f"plain:{name}"), "count": fog.client.incr("plain-count")}


@app.get("/cached")
@fog.cached("workers", 60)
def cached() -> dict[str, Any]:
    return {"at": time.time()}


@app.get("/token/<user>")
def token(user: str) -> dict[str, str]:
    return {"token": create_access_token(user)}


@app.get("/protected")
@jwt_required()
def protected() -> dict[str, str]:
    return {"ok": "yes"}


@app.post("/revoke")
@jwt_required()
def revoke() -> dict[str, bool]:
    return {"revoked": fog.revoke_token(get_jwt())}


@app.get("/hold/<float:seconds>")
def hold(seconds: float) -> dict[str, Any]:
    fog.client.blpop(["never-pushed"], timeout=seconds)
    return {"held": seconds}


@app.after_request
def tag_worker(response: Response) -> Response:
    response.headers["X-Worker"] = str(os.getpid())
    return response
