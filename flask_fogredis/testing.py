"""Helpers for the test suites of apps that use FogRedis (pytest or not).

::

    from flask_fogredis import testing

    with testing.app_context("memory://") as (app, fog):
        fog.set("greeting", "hello")

    # between tests that share one app and one real Redis:
    testing.reset(app)

    # after each test (a pytest fixture, say): close what tests opened
    testing.close_all()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

from ._config import EXTENSION_KEY
from ._extension import FogRedis
from ._state import close_all

__all__ = ["app_context", "close_all", "make_app", "reset"]


def make_app(url: str = "memory://", *, config_prefix: str = "REDIS", **config: Any) -> Flask:
    """A new Flask app in testing mode whose FogRedis (under
    ``config_prefix``) uses the Redis at ``url``: ``memory://`` (the embedded
    store, one of its own per app), or a real Redis such as
    ``redis://127.0.0.1:6379/15``. ``config`` is applied before ``init_app``.
    Raises :class:`~flask_fogredis.ConfigurationError` for a bad value."""
    app = Flask(f"fogredis-test-{id(config)}")
    app.config.update(TESTING=True, **{f"{config_prefix}_URL": url}, **config)
    FogRedis(app, config_prefix=config_prefix)
    return app


@contextmanager
def app_context(
    url: str = "memory://", *, config_prefix: str = "REDIS", **config: Any
) -> Iterator[tuple[Flask, FogRedis]]:
    """An app from :func:`make_app` with its context pushed, and a FogRedis
    bound to the same prefix; its connections are closed on the way out."""
    app = make_app(url, config_prefix=config_prefix, **config)
    fog = FogRedis(config_prefix=config_prefix)
    try:
        with app.app_context():
            yield app, fog
    finally:
        for state in app.extensions.get(EXTENSION_KEY, {}).values():
            state.close()


def reset(app: Flask) -> None:
    """Put ``app``'s FogRedis back as it started, for the next test: delete
    every key it wrote (revocations and cache entries, under its
    ``KEY_PREFIX``, on its Redis and the cache's own), zero its counters,
    forget the last health check and empty its near cache. Other keys of
    that Redis are left alone. Raises
    :class:`~flask_fogredis.RedisUnavailableError` when Redis cannot be
    reached."""
    for state in app.extensions.get(EXTENSION_KEY, {}).values():
        state.reset()
