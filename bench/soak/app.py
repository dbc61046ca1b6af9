"""The example app as the soak serves it: the example's own ``create_app``
with more demo users (cheap password hashes, so that logins do not eat the
CPU) and long-lived tokens (so that an expired token never hides a lost
revocation), plus one per-user cached view: the place where a wrong cache
key would hand one user another's data.

Settings come from the soak runner's environment: ``SOAK_REDIS_URL``,
``SOAK_WAIT_REPLICAS``, ``SOAK_USERS`` (comma separated; the last is the
administrator) and ``DEMO_PASSWORD``.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from flask import Flask
from flask_jwt_extended import get_jwt_identity, jwt_required
from werkzeug.security import generate_password_hash

from example_app import create_app, fog


def build() -> Flask:
    """The soak's app. Raises KeyError when a ``SOAK_`` variable is missing."""
    password = os.environ["DEMO_PASSWORD"]
    names = os.environ["SOAK_USERS"].split(",")
    digest = generate_password_hash(password, method="pbkdf2:sha256:1000")
    users = {name: {"password_hash": digest, "roles": ["user"]} for name in names[:-1]}
    users[names[-1]] = {"password_hash": digest, "roles": ["user", "admin"]}
    flask_app = create_app(
        {
            "REDIS_URL": os.environ["SOAK_REDIS_URL"],
            "REDIS_NEAR_CACHE": True,
            "REDIS_JWT_WAIT_REPLICAS": int(os.environ.get("SOAK_WAIT_REPLICAS", "0")),
            "DEMO_USERS": users,
            "JWT_ACCESS_TOKEN_EXPIRES": timedelta(hours=6),
            "JWT_REFRESH_TOKEN_EXPIRES": timedelta(hours=6),
        }
    )

    @flask_app.get("/soak/profile")
    @jwt_required()  # type: ignore[untyped-decorator]
    @fog.cached("soak-profile", ttl=30, vary_on_identity=True)
    def profile() -> dict[str, Any]:
        return {"username": get_jwt_identity(), "computed_at": time.time()}

    return flask_app


app = build()
