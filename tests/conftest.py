from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_fogredis import FogRedis, testing

from .servers import RedisServer, silent_socket

ServerFactory = Callable[..., RedisServer]


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
