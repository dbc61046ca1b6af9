"""FogRedis under other Flask extensions: Flask-Caching's backend
(:mod:`flask_fogredis.contrib.flask_caching`), and the one place where they
reach an app's FogRedis state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from .._config import EXTENSION_KEY
from .._errors import NotInitializedError

if TYPE_CHECKING:
    from .._state import AppState


def app_state(app: Flask, config_prefix: str = "REDIS") -> AppState:
    """The FogRedis state of ``app`` for ``config_prefix`` (its settings,
    client, pool and counters), found without an app context. Raises
    :class:`NotInitializedError` before ``FogRedis.init_app(app)``."""
    state = app.extensions.get(EXTENSION_KEY, {}).get(config_prefix)
    if state is None:
        raise NotInitializedError(
            f"FogRedis (config prefix {config_prefix!r}) is not set up on app {app.name!r}: "
            "call fog.init_app(app) before setting up the extensions that use it."
        )
    return state  # type: ignore[no-any-return]
