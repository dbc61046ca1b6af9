"""A small JWT-protected app for the revocation tests."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_identity, jwt_required

from flask_fogredis import FogRedis

from .conftest import make_app

SECRET_KEY = "a-test-signing-key-that-is-long-enough-for-hs256"


def add_views(app: Flask) -> None:
    @app.get("/protected")
    @jwt_required()
    def protected() -> dict[str, Any]:
        return {"sub": get_jwt_identity(), "jti": get_jwt()["jti"]}

    @app.get("/protected-any")
    @jwt_required()
    def protected_any() -> dict[str, Any]:
        return {"sub": get_jwt_identity()}

    @app.post("/refresh")
    @jwt_required(refresh=True)
    def refresh() -> dict[str, Any]:
        return {"sub": get_jwt_identity()}


def jwt_app(
    url: str = "memory://", *, manager_first: bool = True, **config: Any
) -> tuple[Flask, FogRedis, JWTManager]:
    app = make_app(REDIS_URL=url, JWT_SECRET_KEY=SECRET_KEY, **config)
    if manager_first:
        jwt = JWTManager(app)
        fog = FogRedis(app)
    else:
        fog = FogRedis(app)
        jwt = JWTManager(app)
    add_views(app)
    return app, fog, jwt


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
