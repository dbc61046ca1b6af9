from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_fogredis import FogRedis, testing

from .servers import RedisServer, silent_socket

ServerFactory = Callable[..., RedisServer]

# Modules whose tests run on the embedded store (memory://) and start no
# server: the version matrix's middle cells leave them out (`-m "not memory"`)
# and spend their time on what differs between redis-py versions, the wire.
_MEMORY_MODULES = frozenset(
    {
        "test_cache.py",
        "test_config.py",
        "test_example_app.py",
        "test_health.py",
        "test_revocation.py",
    }
)
_SERVER_FIXTURES = frozenset({"redis_factory", "redis_server", "silent_port"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks ``memory`` the tests of those modules that ask for no server."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in _MEMORY_MODULES and not fixtures & _SERVER_FIXTURES:
            item.add_marker(pytest.mark.memory)


@pytest.fixture(autouse=True)
def _close_pools_after_each_test() -> Iterator[None]:
    """Every app a test made is closed after it: pools, and near-cache
    listeners that would otherwise keep calling a server that is gone."""
    yield
    testing.close_all()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts real redis-servers on free loopback ports; stops them after."""
    servers: list[RedisServer] = []

    def start(*args: str, password: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", *args, password=password)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: ServerFactory) -> RedisServer:
    return redis_factory()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers a byte."""
    with silent_socket() as port:
        yield port


def make_app(**config: object) -> Flask:
    """A fresh app with testing on and ``config`` applied."""
    app = Flask(f"test-{id(config)}")
    app.config.update(TESTING=True, **config)
    return app


@pytest.fixture
def memory_app() -> Iterator[tuple[Flask, FogRedis]]:
    """An app on the embedded store, with an app context pushed."""
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with app.app_context():
        yield app, fog
