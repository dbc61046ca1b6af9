"""A JWT app served by gunicorn with several workers."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, jwt_required

from flask_fogredis import FogRedis

from ..jwt_helpers import SECRET_KEY, add_views

app = Flask(__name__)
app.config.update(
    REDIS_URL=os.environ["REDIS_URL"],
    REDIS_NEAR_CACHE=os.environ.get("REDIS_NEAR_CACHE", "false"),
    JWT_SECRET_KEY=SECRET_KEY,
)
fog = FogRedis(app)
JWTManager(app)
add_views(app)


@app.post("/login/<user>")
def login(user: str) -> dict[str, Any]:
    return {"token": create_access_token(user)}


@app.post("/logout")
@jwt_required()
def logout() -> dict[str, Any]:
    return {"revoked": fog.revoke_token(get_jwt())}


@app.after_request
def tag_worker(response: Response) -> Response:
    response.headers["X-Worker"] = str(os.getpid())
    return response
