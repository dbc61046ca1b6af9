"""An app that uses Flask-FogRedis the way a production app would: an app
factory, JWT auth with revocation, a cached read endpoint invalidated by a
write, the health check and metrics."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask

from . import settings
from .auth import auth
from .errors import register_error_handlers
from .extensions import fog, jwt
from .probes import probes
from .reports import reports
from .settings import UnsafeSettings
from .users import default_users

__all__ = ["UnsafeSettings", "create_app", "fog", "jwt"]
logger = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Settings come from the environment (``REDIS_URL``,
    ``REDIS_CACHE_URL``, ``JWT_SECRET_KEY``, ``DEMO_PASSWORD``,
    ``REDIS_METRICS_TOKEN``, ``MAX_CONTENT_LENGTH``), then from ``config``.
    Raises :class:`UnsafeSettings` outside debug and testing when a secret is
    missing, short or a placeholder."""
    app = Flask(__name__)
    settings.from_environment(app)
    app.config.update(
        REPORT_COMPUTE_SECONDS=0.2,
        REPORTS_DATABASE=os.environ.get("REPORTS_DATABASE")
        or os.path.join(app.instance_path, "reports.sqlite3"),
    )
    app.config.update(config or {})
    settings.check(app)
    # Only the hashes are kept: the password leaves the config here.
    password = app.config.pop("DEMO_PASSWORD")
    if "DEMO_USERS" not in app.config:  # hashing is slow on purpose: only when needed
        app.config["DEMO_USERS"] = default_users(password)
    if app.debug and not app.testing:
        logger.warning("Debug mode: demo credentials and a local-only setup; never deploy it.")

    jwt.init_app(app)
    fog.init_app(app)
    register_error_handlers(app)
    app.register_blueprint(auth)
    app.register_blueprint(reports)
    app.register_blueprint(probes)
    return app
