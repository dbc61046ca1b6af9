"""One app, one Redis pool per worker: JWT revocation and FogRedis's own
cache, Flask-Caching, Flask-Session and Flask-Limiter on it."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, session
from flask_caching import Cache
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, jwt_required
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_session import Session

from flask_fogredis import FogRedis

from ..jwt_helpers import SECRET_KEY

app = Flask(__name__)
app.config.update(
    REDIS_URL=os.environ["REDIS_URL"],
    REDIS_POOL_SIZE=int(os.environ.get("REDIS_POOL_SIZE", "4")),
    REDIS_CLIENT_NAME="one-redis-app",
    JWT_SECRET_KEY=SECRET_KEY,
    SECRET_KEY="test-only-session-key",
    CACHE_TYPE="flask_fogredis.contrib.flask_caching.FogRedisCache",
)
fog = FogRedis(app)
JWTManager(app)
cache = Cache(app)
app.config.update(SESSION_TYPE="redis", SESSION_REDIS=fog.client_for(app, decode=False))
Session(app)
limiter = Limiter(
    get_remote_address,
    app=app,
    storage_uri="redis://",
    # Flask-Limiter types its options as str | int; limits passes this one on as the pool.
    storage_options={"connection_pool": fog.client_for(app).connection_pool},  # type: ignore[dict-item]
)


@app.post("/login/<user>")
def login(user: str) -> dict[str, Any]:
    session["user"] = user
    return {"token": create_access_token(user)}


@app.get("/me")
def me() -> dict[str, Any]:
    return {"user": session.get("user")}


@app.post("/logout")
@jwt_required()
def logout() -> dict[str, Any]:
    return {"revoked": fog.revoke_token(get_jwt())}


@app.get("/private")
@jwt_required()
def private() -> dict[str, Any]:
    return {"ok": True}


@app.get("/fog-cached")
@fog.cached("views", ttl=60)
def fog_cached() -> dict[str, Any]:
    return {"pid": os.getpid()}


@app.get("/flask-cached")
@cache.cached(timeout=60)
def flask_cached() -> dict[str, Any]:
    return {"pid": os.getpid()}


@app.get("/limited")
@limiter.limit("5 per minute")
def limited() -> dict[str, Any]:
    return {"pid": os.getpid()}


@app.after_request
def tag_worker(response: Response) -> Response:
    response.headers["X-Worker"] = str(os.getpid())
    return response
