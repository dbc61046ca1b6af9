"""A pytest plugin that runs Flask-Caching's own test suite with every cache
it builds on FogRedis (see scripts/peer-tests).

Every ``Cache`` whose ``CACHE_TYPE`` is Flask-Caching's in-process or Redis
backend gets :class:`FogRedisCache` instead, on the app's FogRedis (installed
on the app if missing) against the Redis at ``FOGREDIS_PEER_REDIS_URL``.
Tests that cannot apply to a Redis backend without pickle are listed in
:data:`NOT_APPLICABLE` with the reason, and reported at the end; a run in
which FogRedisCache served nothing fails.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter
from flask import Flask
from flask_caching import Cache

from flask_fogredis import FogRedis
from flask_fogredis.contrib.flask_caching import FogRedisCache

URL = os.environ.get("FOGREDIS_PEER_REDIS_URL", "")
if not URL:
    raise pytest.UsageError("Set FOGREDIS_PEER_REDIS_URL to the Redis the suite may use.")
OURS = "flask_fogredis.contrib.flask_caching.FogRedisCache"
REPLACED = {"SimpleCache", "simple", "RedisCache", "redis"}

_FAKE_CLOCK = (
    "uses the fake clock (the clock fixture) that only the in-process SimpleCache reads; "
    "Redis expires on real time"
)
_CACHELIB = (
    "about cachelib's serializer objects (pickle-based); FogRedisCache has its own codec "
    "and no pickle"
)
_WHICH_CLASS = "asserts which backend class Flask-Caching built (here: FogRedisCache)"
_REDIS_CLASS = "asserts Flask-Caching's own RedisCache class or its pickled format"
_OTHER_BACKEND = (
    "tests another backend class directly (FogRedisCache runs the same generic tests "
    "as TestFogRedisCache)"
)
NOT_APPLICABLE = {
    "test_backend_cache.py::TestSimpleCache::": _OTHER_BACKEND,
    "test_backend_cache.py::TestFileSystemCache::": _OTHER_BACKEND,
    "test_backend_cache.py::TestRedisCache::": _OTHER_BACKEND,
    "test_backend_cache.py::TestRedisCacheClientsOverride::": _OTHER_BACKEND,
    "test_backend_cache.py::TestMemcachedCache::": _OTHER_BACKEND,
    "test_backend_cache.py::TestNullCache::": _OTHER_BACKEND,
    "test_basic_app.py::test_dict_config_initapp": _WHICH_CLASS,
    "test_basic_app.py::test_dict_config_both": _WHICH_CLASS,
    "test_basic_app.py::test_init_app_multi_apps": _WHICH_CLASS,
    "test_init.py::test_init_nullcache[MemcachedCache]": "needs a memcached client library",
    "test_cachelib.py::": _CACHELIB,
    "test_serializer.py::": _CACHELIB,
    "test_basic_app.py::test_app_redis_cache_backend_url": _REDIS_CLASS,
    "test_cache.py::test_cache_unlink": _REDIS_CLASS,
}

_counts = {"caches": 0, "served": 0}
_fog = FogRedis()
_set_cache = Cache._set_cache


@functools.wraps(_set_cache)
def _set_fogredis_cache(self: Cache, app: Flask, config: dict[str, Any]) -> None:
    if config.get("CACHE_TYPE") in REPLACED:
        config = {**config, "CACHE_TYPE": OURS}
        app.config.setdefault("REDIS_URL", URL)
        _fog.init_app(app)
        _counts["caches"] += 1
    _set_cache(self, app, config)


_get = FogRedisCache.get


@functools.wraps(_get)
def _counted_get(self: FogRedisCache, key: str) -> Any:
    _counts["served"] += 1
    return _get(self, key)


Cache._set_cache = _set_fogredis_cache  # type: ignore[method-assign]
FogRedisCache.get = _counted_get  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _empty_redis() -> None:
    """Each test starts on an empty Redis, as each gets a fresh SimpleCache."""
    import redis

    redis.Redis.from_url(URL).flushdb()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "clock" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=f"not applicable: {_FAKE_CLOCK}"))
            continue
        name = item.nodeid.split("tests/", 1)[-1]
        for entry, reason in NOT_APPLICABLE.items():
            if (
                name == entry
                or name.startswith(entry + "[")
                or (entry.endswith(("::", "url")) and name.startswith(entry))
            ):
                item.add_marker(pytest.mark.skip(reason=f"not applicable: {reason}"))


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    stats = terminalreporter.stats
    counts = {kind: len(stats.get(kind, [])) for kind in ("passed", "failed", "error", "skipped")}
    terminalreporter.write_line(
        f"Flask-Caching's suite on FogRedisCache: {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['error']} errors, {counts['skipped']} not "
        f"applicable; FogRedisCache on {_counts['caches']} caches, {_counts['served']} reads"
    )
    for report in stats.get("skipped", []):
        terminalreporter.write_line(f"  not applicable: {report.nodeid}: {report.longrepr[-1]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _counts["caches"] == 0 or _counts["served"] == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
