"""A pytest plugin that runs the ``limits`` library's own test suite with
every ``redis://`` storage it builds on FogRedis's pool (see
scripts/peer-tests).

Each :class:`limits.storage.RedisStorage` built from a ``redis://`` URI
without a pool gets the pool of one app's FogRedis instead
(``connection_pool=fog.client_for(app).connection_pool``, what an app passes
as Flask-Limiter's ``storage_options``), against the Redis at
``FOGREDIS_PEER_REDIS_URL``; the suite's own client for that Redis (port
7379 in its sources) is pointed there by the runner. Its ``docker_services``
fixture gets a stand-in that starts nothing: the runner already started the
one Redis that applies. Tests of other storages (Cluster, Sentinel, TLS,
password, Unix socket, memcached, MongoDB, Valkey, in-memory, asyncio) cannot
apply: each is listed at the end with the reason, never left out silently. A
run in which FogRedis's pool served nothing fails.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter
from flask import Flask
from limits.storage import RedisStorage

from flask_fogredis import FogRedis

URL = os.environ.get("FOGREDIS_PEER_REDIS_URL", "")
if not URL:
    raise pytest.UsageError("Set FOGREDIS_PEER_REDIS_URL to the Redis the suite may use.")

_app = Flask("limits_peer_tests")
_app.config["REDIS_URL"] = URL
_fog = FogRedis(_app)
POOL = _fog.client_for(_app).connection_pool

# The fixture that names the server a parametrised test runs on -> why it
# cannot run on FogRedis's pool.
_CLUSTER = "Redis Cluster: limits builds its own RedisCluster and takes no pool"
_SENTINEL = "Sentinel storage: limits builds its own Sentinel client and takes no pool"
_WHY_NOT: dict[str, str] = {
    "redis_uds": "a Redis on a Unix socket: the URI's socket is what it tests",
    "redis_auth": "a Redis with a password: the URI's credentials are what it tests",
    "redis_ssl": "a Redis over TLS: the URI's certificates are what it tests",
    "redis_cluster": _CLUSTER,
    "redis_auth_cluster": _CLUSTER,
    "redis_ssl_cluster": _CLUSTER,
    "redis_sentinel": _SENTINEL,
    "redis_sentinel_auth": _SENTINEL,
    "memcached": "memcached storage, no Redis",
    "memcached_cluster": "memcached storage, no Redis",
    "memcached_uds": "memcached storage, no Redis",
    "memcached_sasl": "memcached storage, no Redis",
    "mongodb": "MongoDB storage, no Redis",
    "valkey_basic": "Valkey storage (the valkey client library), not redis-py",
    "valkey_cluster": "Valkey Cluster storage, not redis-py",
}
_ASYNC = "asyncio storages take an asyncio client; FogRedis's pool is redis-py's synchronous one"
_BENCHMARK = "a benchmark (limits' own configuration deselects them), needs memcached and MongoDB"
_NO_REDIS = "in-memory storage or no storage at all: FogRedis takes no part"
_SERVING = "redis_basic"
# Timed against the wall clock: a million entries in one script must finish
# inside a 2 s window. It measures limits' own Lua on a shared, loaded CI
# machine, not the pool it runs on (it passes alone).
_TIMED = {
    "test_moving_window_huge_cost": "times limits' own million-entry script against a 2 s "
    "window: a measure of the machine, not of the pool"
}

_counts = {"storages": 0, "operations": 0}
_storage_init = RedisStorage.__init__
_get_connection = RedisStorage.get_connection


@functools.wraps(_storage_init)
def _init_on_fogredis(
    self: RedisStorage, uri: str, connection_pool: Any = None, **kwargs: Any
) -> None:
    if type(self) is RedisStorage and connection_pool is None and uri.startswith("redis://"):
        connection_pool = POOL
        _counts["storages"] += 1
    _storage_init(self, uri, connection_pool, **kwargs)


@functools.wraps(_get_connection)
def _counted_connection(self: RedisStorage, readonly: bool = False) -> Any:
    client = _get_connection(self, readonly)
    if getattr(client, "connection_pool", None) is POOL:
        _counts["operations"] += 1
    return client


RedisStorage.__init__ = _init_on_fogredis  # type: ignore[method-assign, assignment]
RedisStorage.get_connection = _counted_connection  # type: ignore[method-assign]


class _NoDocker:
    """Stands in for pytest-docker: the one service that applies is running."""

    def start(self, service: str) -> None:
        if service != "redis-basic":
            pytest.fail(f"this run starts no {service!r}; the test should have been listed")

    def wait_for_service(self, service: str, *args: Any, **kwargs: Any) -> None:
        self.start(service)


@pytest.fixture(scope="session")
def docker_services() -> _NoDocker:
    """What the suite's conftest asks for before it connects to its Redis."""
    return _NoDocker()


def _server_fixture(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    fixture = callspec.params.get("fixture")
    return getattr(fixture, "name", None)


def _why_not(item: pytest.Item) -> str | None:
    path = item.nodeid.split("tests/", 1)[-1]
    if path.startswith("aio/") or inspect.iscoroutinefunction(getattr(item, "obj", None)):
        return _ASYNC
    if path.startswith("benchmarks/"):
        return _BENCHMARK
    timed = _TIMED.get(getattr(item, "originalname", item.name))
    if timed is not None:
        return timed
    server = _server_fixture(item)
    if server == _SERVING:
        return None
    if server is None:
        return _NO_REDIS
    return _WHY_NOT.get(server, f"needs the server of fixture {server!r}, not started here")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = _why_not(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"not applicable: {reason}"))


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    stats = terminalreporter.stats
    counts = {kind: len(stats.get(kind, [])) for kind in ("passed", "failed", "error", "skipped")}
    terminalreporter.write_line(
        f"limits' suite on FogRedis's pool: {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['error']} errors, {counts['skipped']} not "
        f"applicable; FogRedis's pool under {_counts['storages']} storages, "
        f"{_counts['operations']} operations"
    )
    reasons: dict[str, int] = {}
    for report in stats.get("skipped", []):
        reason = str(report.longrepr[-1]).removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
        terminalreporter.write_line(f"  not applicable: {report.nodeid}: {reason}")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"  {count:4d} x {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _counts["storages"] == 0 or _counts["operations"] == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
