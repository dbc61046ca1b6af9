"""``fog.client_for(app, decode=...)``: the app's client at setup time, and a
bytes client on the same pool (Flask-Session stores msgpack)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask, session
from flask_session import Session

from flask_fogredis import ConfigurationError, FogRedis, NotInitializedError

from .conftest import make_app
from .servers import RedisServer
from .topologies import ClusterSet, SentinelSet


def _app(url: str, **config: object) -> tuple[Flask, FogRedis]:
    app = make_app(REDIS_URL=url, REDIS_POOL_SIZE=3, **config)
    return app, FogRedis(app)


def test_outside_any_app_context_it_gives_the_apps_client(redis_server: RedisServer) -> None:
    app, fog = _app(redis_server.url)
    client = fog.client_for(app)
    client.set("k", "v")
    assert client.get("k") == "v"
    with app.app_context():
        assert client is fog.client


def test_before_init_app_it_says_what_to_do() -> None:
    with pytest.raises(NotInitializedError, match="init_app"):
        FogRedis().client_for(Flask("never"))


def test_bytes_client_shares_the_one_pool(redis_server: RedisServer) -> None:
    app, fog = _app(redis_server.url)
    raw = fog.client_for(app, decode=False)
    decoded = fog.client_for(app)
    assert raw.connection_pool is decoded.connection_pool
    blob = b"\x82\xa1a\x01\xff\xfe"  # not UTF-8
    raw.set("blob", blob)
    assert raw.get("blob") == blob
    with pytest.raises(UnicodeDecodeError):
        decoded.get("blob")
    # The pool is still usable by the decoding client afterwards.
    assert decoded.get("missing") is None


def test_bytes_client_pipelines_transactions_and_scripts(redis_server: RedisServer) -> None:
    """What limits and Flask-Session send: SETEX, INCRBY, EXPIRE, Lua,
    pipelines with and without MULTI, WATCH."""
    app, fog = _app(redis_server.url)
    raw = fog.client_for(app, decode=False)
    raw.execute_command("SETEX", "s", 30, b"\xff")
    assert raw.get("s") == b"\xff"
    assert raw.incrby("n", 5) == 5
    assert raw.expire("n", 30) is True
    script = raw.register_script("return {redis.call('GET', KEYS[1]), ARGV[1]}")
    assert script(keys=["s"], args=["x"]) == [b"\xff", b"x"]
    for transaction in (False, True):
        pipe = raw.pipeline(transaction=transaction)
        pipe.get("s")
        pipe.incrby("n", 1)
        pipe.ttl("n")
        got, count, ttl = pipe.execute()
        assert got == b"\xff" and isinstance(count, int) and 0 < ttl <= 30
    with raw.pipeline() as pipe:
        pipe.watch("s")
        assert pipe.get("s") == b"\xff"
        pipe.multi()
        pipe.get("s")
        assert pipe.execute() == [b"\xff"]
    assert raw.delete("s", "n") == 2


def test_a_pool_that_returns_bytes_gives_itself_and_refuses_decoding(
    redis_server: RedisServer,
) -> None:
    app, fog = _app(redis_server.url, REDIS_DECODE_RESPONSES=False)
    with app.app_context():
        assert fog.client_for(app, decode=False) is fog.client
    with pytest.raises(ConfigurationError, match="REDIS_DECODE_RESPONSES"):
        fog.client_for(app)


def _session_app(fog_app: Flask, fog: FogRedis) -> Flask:
    fog_app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=fog.client_for(fog_app, decode=False),
        SECRET_KEY="test-only-secret-key",
    )
    Session(fog_app)

    @fog_app.post("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        session["blob"] = b"\x00\xff"
        return "ok"

    @fog_app.get("/me")
    def me() -> dict[str, object]:
        return {"user": session.get("user"), "blob": len(session.get("blob", b""))}

    return fog_app


def _round_trip(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/login/alice").status_code == 200
    answer = client.get("/me")
    assert answer.status_code == 200
    assert answer.get_json() == {"user": "alice", "blob": 2}


def test_flask_session_reads_its_msgpack_through_the_bytes_client(
    redis_server: RedisServer,
) -> None:
    app, fog = _app(redis_server.url)
    _round_trip(_session_app(app, fog))
    admin = redis_server.admin()
    assert len(admin.keys("session:*")) == 1


def test_flask_session_fails_with_the_decoding_client(redis_server: RedisServer) -> None:
    """Why decode=False exists: the app's default client cannot read them."""
    app, fog = _app(redis_server.url)
    app.config.update(
        SESSION_TYPE="redis", SESSION_REDIS=fog.client_for(app), SECRET_KEY="test-only-secret"
    )
    Session(app)
    app.testing = False

    @app.post("/login")
    def login() -> str:
        session["user"] = "alice"
        return "ok"

    client = app.test_client()
    client.post("/login")
    assert client.get("/login").status_code == 500  # UnicodeDecodeError reading it back


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    found = SentinelSet(tmp_path, down_after_ms=5000)
    found.start()
    yield found
    found.stop()


def test_flask_session_on_sentinel(sentinels: SentinelSet) -> None:
    app, fog = _app(sentinels.url())
    _round_trip(_session_app(app, fog))
    assert isinstance(fog.client_for(app, decode=False), redis.Redis)
    assert len(sentinels.server_at(sentinels.master_address()[1]).admin().keys("session:*")) == 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    found = ClusterSet(tmp_path)
    try:
        yield found.start()
    finally:
        found.stop()


def test_flask_session_on_cluster_needs_its_client_set_after_it(cluster: ClusterSet) -> None:
    """Flask-Session 0.8 takes only a ``redis.Redis`` as SESSION_REDIS: a
    cluster client is replaced, with a warning, by ``Redis()`` on
    localhost:6379. Set on its session interface afterwards, the cluster
    client serves it: it sends GET, SET and DEL of one key each, which the
    cluster routes to the key's primary."""
    app, fog = _app(cluster.url(), REDIS_DECODE_RESPONSES=False)
    client = fog.client_for(app, decode=False)
    assert isinstance(client, redis.RedisCluster)
    with pytest.warns(RuntimeWarning, match="No valid Redis instance"):
        _session_app(app, fog)
    assert app.session_interface.client is not client

    app.session_interface.client = client
    _round_trip(app)
    # A primary and its replica hold it.
    keys = {key for node in cluster.nodes for key in node.admin().keys("session:*")}
    assert len(keys) == 1
    (key,) = keys
    assert cluster.primary_of(key).admin().exists(key) == 1
    assert app.test_client().get("/me").get_json() == {"user": None, "blob": 0}
