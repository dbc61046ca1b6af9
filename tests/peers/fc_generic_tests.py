"""Flask-Caching's generic backend tests (its ``GenericCacheTests``) run
against FogRedisCache; scripts/peer-tests copies this file into that suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from test_backend_cache import GenericCacheTests  # type: ignore[import-not-found]

from flask_fogredis import FogRedis
from flask_fogredis.contrib.flask_caching import FogRedisCache


class TestFogRedisCache(GenericCacheTests):  # type: ignore[misc]
    _can_use_fast_sleep = False

    @pytest.fixture
    def make_cache(self, app: Flask) -> Iterator[Callable[[], FogRedisCache]]:
        app.config["REDIS_URL"] = os.environ["FOGREDIS_PEER_REDIS_URL"]
        FogRedis(app)
        cache = FogRedisCache(app, key_prefix="generic-tests:")
        yield lambda: cache
        cache.clear()
