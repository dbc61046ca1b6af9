"""An app that uses Flask-FogRedis the way a production app would."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from flask_fogredis import FogRedis

fog = FogRedis()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The app factory. ``REDIS_URL`` comes from the environment; without it
    the embedded in-process store is used."""
    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ.get("REDIS_URL") or "memory://"
    app.config.update(config or {})
    fog.init_app(app)

    @app.get("/")
    def index() -> dict[str, Any]:
        visits = fog.client.incr("example:visits")
        return {"visits": visits}

    return app
