"""An app that uses Flask-FogRedis the way a production app would: an app
factory, JWT auth with revocation, a cached read endpoint invalidated by a
write, the health check and metrics."""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from flask import Flask

from .auth import auth
from .errors import register_error_handlers
from .extensions import fog, jwt
from .reports import reports
from .users import default_users

__all__ = ["create_app", "fog", "jwt"]
logger = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Settings come from the environment (``REDIS_URL``,
    ``REDIS_CACHE_URL``, ``JWT_SECRET_KEY``), then from ``config``."""
    app = Flask(__name__)
    app.config.update(
        REDIS_URL=os.environ.get("REDIS_URL") or "memory://",
        REDIS_CACHE_URL=os.environ.get("REDIS_CACHE_URL") or None,
        JWT_SECRET_KEY=os.environ.get("JWT_SECRET_KEY"),
        REPORT_COMPUTE_SECONDS=0.2,
        REPORTS_DATABASE=os.environ.get("REPORTS_DATABASE")
        or os.path.join(app.instance_path, "reports.sqlite3"),
    )
    app.config.update(config or {})
    if not app.config["JWT_SECRET_KEY"]:
        # Fine for a demo under gunicorn's preload (workers share it);
        # tokens do not survive a restart. Production sets JWT_SECRET_KEY.
        app.config["JWT_SECRET_KEY"] = secrets.token_urlsafe(32)
        if not (app.debug or app.testing):
            logger.warning("JWT_SECRET_KEY is not set: using a random key for this run.")
    if "DEMO_USERS" not in app.config:  # hashing is slow on purpose: only when needed
        app.config["DEMO_USERS"] = default_users()

    jwt.init_app(app)
    fog.init_app(app)
    register_error_handlers(app)
    app.register_blueprint(auth)
    app.register_blueprint(reports)
    return app
