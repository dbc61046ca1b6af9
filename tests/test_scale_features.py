"""Every feature on Sentinel and on Cluster, against real processes: plain
operations, revocation with log out everywhere, the cache with clearing and
its stampede lock, the health report, and the pools."""

from __future__ import annotations

import inspect
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask_jwt_extended import create_access_token, decode_token
from redis.cluster import RedisCluster

from flask_fogredis import FogRedis, RedisUnavailableError, TokenError
from flask_fogredis._cluster import ClusterPools, NodePool
from flask_fogredis._sentinel import SentinelBlockingPool

from .conftest import make_app
from .jwt_helpers import bearer, jwt_app
from .servers import RedisServer, free_port
from .topologies import ClusterSet, SentinelSet

DATA_PASSWORD = "data-nodes-password"
SENTINEL_PASSWORD = "sentinels-own-password"
TOKEN = "a-long-enough-details-token"


@dataclass
class Topology:
    kind: str
    url: str
    config: dict[str, Any]
    servers: list[RedisServer]

    def app(self, **config: Any) -> tuple[Flask, FogRedis]:
        app = make_app(REDIS_URL=self.url, **self.config, **config)
        return app, FogRedis(app)

    def jwt_app(self, **config: Any) -> tuple[Flask, FogRedis]:
        app, fog, _ = jwt_app(self.url, **self.config, **config)
        return app, fog

    def holder_of(self, key: str) -> RedisServer:
        """The server that holds ``key`` (the master, for Sentinel)."""
        for server in self.servers:
            admin = server.admin()
            if admin.info("replication")["role"] == "master":
                try:
                    if admin.exists(key):
                        return server
                except redis.ResponseError:  # MOVED: another node's slot
                    continue
        raise LookupError(key)


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    found = SentinelSet(
        tmp_path_factory.mktemp("sentinel"),
        password=DATA_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    )
    try:
        yield found.start()
    finally:
        found.stop()


@pytest.fixture(scope="module")
def cluster_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    found = ClusterSet(tmp_path_factory.mktemp("cluster"))
    try:
        yield found.start()
    finally:
        found.stop()


@pytest.fixture(params=["sentinel", "cluster"])
def topology(request: pytest.FixtureRequest) -> Topology:
    if request.param == "sentinel":
        found: SentinelSet = request.getfixturevalue("sentinel_set")
        assert found.replica is not None
        return Topology(
            "sentinel",
            found.url(),
            {"REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD},
            [found.master, found.replica],
        )
    cluster: ClusterSet = request.getfixturevalue("cluster_set")
    return Topology("cluster", cluster.url(), {}, cluster.nodes)


def test_plain_operations(topology: Topology) -> None:
    app, fog = topology.app()
    with app.app_context():
        names = [f"plain:{topology.kind}:{n}" for n in range(20)]
        for n, name in enumerate(names):
            assert fog.set(name, n, expire=60)
        assert fog.get(names[3]) == "3"
        assert fog.exists(names[4])
        assert fog.expire(names[5], 30)
        assert 0 < fog.ttl(names[5]) <= 30
        assert fog.client.incr(f"plain:{topology.kind}:counter") >= 1
        holders = {topology.holder_of(name).port for name in names}
        assert fog.delete(*names) == 20
        assert fog.get(names[3]) is None
    # On a cluster the keys spread over every primary.
    assert len(holders) == (3 if topology.kind == "cluster" else 1)


def test_writes_go_to_the_primary(topology: Topology) -> None:
    app, fog = topology.app()
    with app.app_context():
        fog.set(f"where:{topology.kind}", "here")
    holder = topology.holder_of(f"where:{topology.kind}")
    assert holder.admin().info("replication")["role"] == "master"


def test_revocation_and_log_out_everywhere(topology: Topology) -> None:
    app, fog = topology.jwt_app()
    client = app.test_client()
    with app.app_context():
        revoked = create_access_token(f"alice-{topology.kind}")
        kept = create_access_token(f"bob-{topology.kind}")
        everywhere = create_access_token(f"carol-{topology.kind}")
        assert fog.revoke_token(revoked)
        fog.revoke_all_tokens(f"carol-{topology.kind}")
    assert client.get("/protected", headers=bearer(revoked)).status_code == 401
    assert client.get("/protected", headers=bearer(kept)).status_code == 200
    assert client.get("/protected", headers=bearer(everywhere)).status_code == 401
    time.sleep(1.05)  # iat is in whole seconds: a later token is a later second
    with app.app_context():
        later = create_access_token(f"carol-{topology.kind}")
    assert client.get("/protected", headers=bearer(later)).status_code == 200


def test_revocation_by_jti(topology: Topology) -> None:
    app, fog = topology.jwt_app()
    client = app.test_client()
    with app.app_context():
        token = create_access_token(f"dave-{topology.kind}")
        jti = decode_token(token)["jti"]
        if topology.kind == "cluster":
            with pytest.raises(TokenError, match="identity"):
                fog.blacklist_token(jti, 60)
            with pytest.raises(TokenError, match="identity"):
                fog.is_token_blacklisted(jti)
        identity = f"dave-{topology.kind}"
        assert not fog.is_token_blacklisted(jti, identity=identity)
        fog.blacklist_token(jti, 60, identity=identity)
        assert fog.is_token_blacklisted(jti, identity=identity)
    assert client.get("/protected", headers=bearer(token)).status_code == 401


def test_revocations_wait_for_a_replica(topology: Topology) -> None:
    app, fog = topology.jwt_app(REDIS_JWT_WAIT_REPLICAS=1)
    with app.app_context():
        token = create_access_token(f"erin-{topology.kind}")
        assert fog.revoke_token(token)
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 401
    # Every primary has one replica: two cannot acknowledge.
    app, fog = topology.jwt_app(REDIS_JWT_WAIT_REPLICAS=2, REDIS_JWT_WAIT_TIMEOUT=0.2)
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="1 of 2 replicas") as caught:
            fog.revoke_all_tokens(f"erin-{topology.kind}")
        assert time.monotonic() - started < 2
    assert DATA_PASSWORD not in str(caught.value)


def test_the_revocation_check_is_one_command(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fog = topology.jwt_app()
    client = app.test_client()
    with app.app_context():
        token = create_access_token(f"frank-{topology.kind}")
        fog.revoke_all_tokens(f"someone-else-{topology.kind}")  # warms the policy check
    sent: list[tuple[Any, ...]] = []
    if topology.kind == "cluster":
        original: Any = RedisCluster._execute_command

        def spy(self: Any, node: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(args)
            return original(self, node, *args, **kwargs)

        monkeypatch.setattr(RedisCluster, "_execute_command", spy)
    else:
        original_plain: Any = redis.Redis.execute_command

        def spy_plain(self: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(args)
            return original_plain(self, *args, **kwargs)

        monkeypatch.setattr(redis.Redis, "execute_command", spy_plain)
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    assert [args[0] for args in sent] == ["MGET"]
    assert len(sent[0]) == 3  # the jti entry and the identity's marker


def test_an_evicting_primary_is_found_on_a_cluster(cluster_set: ClusterSet) -> None:
    from flask_fogredis import EvictionPolicyError

    primary = cluster_set.primary_of("{anyone}")
    primary.admin().config_set("maxmemory-policy", "allkeys-lru")
    try:
        app, fog, _ = jwt_app(cluster_set.url(), REDIS_JWT_STRICT_EVICTION=True)
        with app.app_context(), pytest.raises(EvictionPolicyError, match="allkeys-lru"):
            fog.revoke_all_tokens("anyone")
    finally:
        primary.admin().config_set("maxmemory-policy", "noeviction")


def test_cache_entries_views_and_clearing(topology: Topology) -> None:
    app, fog = topology.app()
    calls: list[int] = []

    @app.get("/report/<int:n>")
    @fog.cached(f"reports-{topology.kind}", ttl=60)
    def report(n: int) -> dict[str, int]:
        calls.append(n)
        return {"n": n}

    client = app.test_client()
    namespace = f"users-{topology.kind}"
    with app.app_context():
        for n in range(40):
            assert fog.cache_set(namespace, str(n), f"user {n}")
        assert fog.cache_get(namespace, "7") == "user 7"
        names = [fog.state().cache.entry_key(namespace, str(n)) for n in range(40)]
    holders = {topology.holder_of(name).port for name in names}
    if topology.kind == "cluster":
        assert len(holders) == 3  # entries spread over every primary
    for n in range(5):
        assert client.get(f"/report/{n}").headers["X-Cache"] == "MISS"
        assert client.get(f"/report/{n}").headers["X-Cache"] == "HIT"
    with app.app_context():
        assert fog.cache_clear_namespace(namespace) == 40
        assert fog.cache_get(namespace, "7") is None
        assert fog.cache_clear_namespace(f"reports-{topology.kind}") == 5
    assert client.get("/report/1").headers["X-Cache"] == "MISS"
    assert calls == [0, 1, 2, 3, 4, 1]


def test_memoize_tags_and_urls(topology: Topology) -> None:
    """Entries spread over the nodes, their indexes elsewhere: every
    invalidation goes key by key (no command spans two slots)."""
    app, fog = topology.app()
    calls: list[str] = []
    namespace = f"memo-{topology.kind}"

    @fog.memoize(namespace, 60, tags=lambda n: [f"{topology.kind}:{n % 2}"])
    def square(n: int) -> dict[str, int]:
        calls.append(f"square {n}")
        return {"n": n * n}

    @app.get("/page/<int:n>")
    @fog.cached(f"pages-{topology.kind}", 60, tags=[f"{topology.kind}:pages"])
    def page(n: int) -> str:
        calls.append(f"page {n}")
        return str(n)

    client = app.test_client()
    with app.app_context():
        for n in range(30):
            assert square(n) == square(n) == {"n": n * n}
            client.get(f"/page/{n}")
        assert len(calls) == 60
        names = [
            square.__fogredis_memoized__.entry_key(fog.state().cache, (n,), {})  # type: ignore[attr-defined]
            for n in range(30)
        ]
        if topology.kind == "cluster":
            assert len({topology.holder_of(name).port for name in names}) == 3
        assert fog.delete_memoized(square, 4) == 1
        assert fog.invalidate_tags(f"{topology.kind}:1") == 15
        for n in range(30):
            square(n)
        assert len(calls) == 60 + 16
        assert fog.delete_memoized(square) == 30
        assert fog.delete_cached_url("/page/7") == 1
        assert fog.invalidate_tags(f"{topology.kind}:pages") == 29
    assert client.get("/page/8").headers["X-Cache"] == "MISS"


def test_a_clear_during_a_computation_is_not_undone_by_it(topology: Topology) -> None:
    app, fog = topology.app()
    computing, finish = threading.Event(), threading.Event()
    answers = iter(["read before the write", "read after the write"])
    namespace = f"cleared-{topology.kind}"

    @app.get("/report")
    @fog.cached(namespace, ttl=60)
    def report() -> str:
        answer = next(answers)
        computing.set()
        finish.wait(5)
        return answer

    first = threading.Thread(target=app.test_client().get, args=("/report",))
    first.start()
    computing.wait(5)
    with app.app_context():
        fog.cache_clear_namespace(namespace)  # the data changed meanwhile
    finish.set()
    first.join(5)
    response = app.test_client().get("/report")
    assert (response.headers["X-Cache"], response.get_data()) == ("MISS", b"read after the write")
    assert app.test_client().get("/report").headers["X-Cache"] == "HIT"


def test_stampede_lock(topology: Topology) -> None:
    app, fog = topology.app(REDIS_POOL_SIZE=20)
    calls: list[int] = []
    lock = threading.Lock()

    @app.get("/slow")
    @fog.cached(f"slow-{topology.kind}", ttl=60)
    def slow() -> dict[str, int]:
        with lock:
            calls.append(1)
        time.sleep(0.5)
        return {"computed": len(calls)}

    results: list[str] = []
    barrier = threading.Barrier(8)

    def get() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.get("/slow")
        with lock:
            results.append(response.headers["X-Cache"])

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(calls) == 1
    assert sorted(results) == ["HIT"] * 7 + ["MISS"]


def test_health_details(topology: Topology, sentinel_set: SentinelSet) -> None:
    app, _ = topology.app(REDIS_HEALTH_DETAILS_TOKEN=TOKEN)
    response = app.test_client().get("/health/redis", headers=bearer(TOKEN))
    assert response.status_code == 200
    body = response.get_json()
    assert body["healthy"] is True
    if topology.kind == "sentinel":
        host, port = sentinel_set.master_address()
        assert body["details"]["sentinel"] == {"service": "mymaster", "master": f"{host}:{port}"}
        assert body["details"]["role"] == "master"
    else:
        cluster = body["details"]["cluster"]
        assert cluster["state"] == "ok"
        assert cluster["slots_ok"] == 16384
        assert cluster["primaries"] == 3
    plain = app.test_client().get("/health/redis").get_json()
    assert "details" not in plain
    assert DATA_PASSWORD not in response.get_data(as_text=True)


def test_pools_keep_their_size_and_wait(topology: Topology) -> None:
    app, fog = topology.app(REDIS_POOL_SIZE=2, REDIS_POOL_TIMEOUT=0.3)
    with app.app_context():
        fog.set(f"pool:{topology.kind}", "1")
        if topology.kind == "cluster":
            assert isinstance(fog.pool, ClusterPools)
            client: Any = fog.client
            pools = [client.get_redis_connection(n).connection_pool for n in client.get_nodes()]
            assert pools and all(isinstance(p, NodePool) for p in pools)
            assert {(p.max_connections, p.timeout) for p in pools} == {(2, 0.3)}
            pool = client.get_redis_connection(client.get_node_from_key(f"pool:{topology.kind}"))
            pool = pool.connection_pool
        else:
            pool = fog.pool
            assert isinstance(pool, SentinelBlockingPool)
            assert (pool.max_connections, pool.timeout) == (2, 0.3)
        held = [_take(pool), _take(pool)]
        started = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="REDIS_POOL_SIZE"):
            fog.get(f"pool:{topology.kind}")
        assert 0.25 < time.monotonic() - started < 2
        for connection in held:
            pool.release(connection)
        assert fog.get(f"pool:{topology.kind}") == "1"


def _take(pool: Any) -> Any:
    # redis-py 5.0 requires a command name; later ones deprecate it.
    signature = inspect.signature(redis.BlockingConnectionPool.get_connection)
    if signature.parameters["command_name"].default is inspect.Parameter.empty:
        return pool.get_connection("GET")
    return pool.get_connection()


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_starts_while_nothing_answers(kind: str) -> None:
    url = f"redis+{kind}://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    app = make_app(REDIS_URL=url + ("/mymaster" if kind == "sentinel" else ""))
    fog = FogRedis(app)  # connects lazily: no error here
    with app.app_context():
        with pytest.raises(RedisUnavailableError):
            fog.get("anything")
        health = fog.health_check()
        assert health["healthy"] is False
        assert health["error"] == ("no master" if kind == "sentinel" else "unreachable")
        assert fog.cache_get("ns", "key") is None  # the cache fails open


def test_wrong_sentinel_password_is_not_shown(sentinel_set: SentinelSet) -> None:
    app = make_app(REDIS_URL=sentinel_set.url(), REDIS_SENTINEL_PASSWORD="not-the-password")
    fog = FogRedis(app)
    with app.app_context(), pytest.raises(RedisUnavailableError) as caught:
        fog.get("anything")
    assert "not-the-password" not in str(caught.value)
    assert DATA_PASSWORD not in str(caught.value)


def test_a_silent_first_sentinel_costs_one_timeout(
    sentinel_set: SentinelSet, silent_port: int
) -> None:
    app = make_app(
        REDIS_URL=sentinel_set.url(first=[f"127.0.0.1:{silent_port}", f"127.0.0.1:{free_port()}"]),
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        REDIS_SENTINEL_TIMEOUT=0.3,
    )
    fog = FogRedis(app)
    with app.app_context():
        started = time.monotonic()
        fog.set("first", "lookup")
        first = time.monotonic() - started
        times = []
        for _ in range(5):
            fog.disconnect()  # the next command opens a connection: a new lookup
            started = time.monotonic()
            assert fog.get("first") == "lookup"
            times.append(time.monotonic() - started)
    assert 0.25 < first < 2
    assert max(times) < 0.25, times


def test_sentinel_pool_is_a_blocking_pool_on_old_redis_py_too() -> None:
    # SentinelConnectionPool asks for idle connections only to be closed;
    # before redis-py 7.0 the blocking pool's disconnect() took no argument.
    app = make_app(REDIS_URL="redis+sentinel://127.0.0.1:1/mymaster")
    fog = FogRedis(app)
    with app.app_context():
        pool = fog.pool
        assert isinstance(pool, SentinelBlockingPool)
        pool.disconnect(inuse_connections=False)
        pool.disconnect()


def test_cli_on_both(topology: Topology) -> None:
    app, _fog = topology.jwt_app()
    runner = app.test_cli_runner()
    with app.app_context():
        token = create_access_token(f"gina-{topology.kind}")
        jti = decode_token(token)["jti"]
    assert runner.invoke(args=["fogredis", "ping"]).exit_code == 0
    info = runner.invoke(args=["fogredis", "info"])
    assert info.exit_code == 0 and "Redis 7" in info.output
    if topology.kind == "cluster":  # every node, not one node as the whole cluster
        assert "6, 3 primaries" in info.output
        for server in topology.servers:
            role = server.admin().info("replication")["role"]
            shown = "Redis 7" if role == "master" else "replica of 127.0.0.1:"
            assert re.search(f"127.0.0.1:{server.port}: +{shown}", info.output), info.output
    bare = runner.invoke(args=["fogredis", "revoke", jti])
    if topology.kind == "cluster":
        assert bare.exit_code == 1 and "identity" in bare.output
    else:
        assert bare.exit_code == 0
    named = runner.invoke(args=["fogredis", "revoke", jti, "--identity", f"gina-{topology.kind}"])
    assert named.exit_code == 0, named.output
    assert app.test_client().get("/protected", headers=bearer(token)).status_code == 401
    assert runner.invoke(args=["fogredis", "clear-cache", "nothing-here"]).exit_code == 0


def test_a_full_cluster_node_is_unavailable(cluster_set: ClusterSet) -> None:
    app, fog = Topology("cluster", cluster_set.url(), {}, cluster_set.nodes).jwt_app()
    with app.app_context():
        token = create_access_token("full-node-user")
    admin = cluster_set.primary_of("{full-node-user}").admin()
    admin.config_set("maxclients", int(admin.info("clients")["connected_clients"]))
    try:
        response = app.test_client().get("/protected", headers=bearer(token))
        # The server's refusal, or (redis-py 5) the socket it then closes.
        with app.app_context(), pytest.raises(RedisUnavailableError):
            fog.revoke_all_tokens("full-node-user")
    finally:
        admin.config_set("maxclients", 10000)
    assert response.status_code == 503


def test_the_examples_admin_revoke_asks_for_the_identity_on_a_cluster(
    cluster_set: ClusterSet, tmp_path: Path
) -> None:
    from flask_jwt_extended import decode_token

    from example_app import create_app

    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": cluster_set.url(),
            "REPORT_COMPUTE_SECONDS": 0,
            "JWT_SECRET_KEY": "a-test-key-that-is-long-enough-for-hs256-5b1d",
            "REPORTS_DATABASE": str(tmp_path / "reports.sqlite3"),
        }
    )
    client = app.test_client()

    def login(username: str) -> str:
        answer = client.post(
            "/auth/login", json={"username": username, "password": "demo-password"}
        )
        assert answer.status_code == 200, answer.json
        return str(answer.json["access_token"])  # type: ignore[index]

    admin, alice = login("admin"), login("alice")
    with app.app_context():
        jti = decode_token(alice)["jti"]
    as_admin = {"Authorization": f"Bearer {admin}"}
    bare = client.post("/admin/revoke", headers=as_admin, json={"jti": jti})
    assert bare.status_code == 400
    assert "identity" in bare.json["error"]  # type: ignore[index]
    assert client.get("/me", headers={"Authorization": f"Bearer {alice}"}).status_code == 200
    named = client.post("/admin/revoke", headers=as_admin, json={"jti": jti, "identity": "alice"})
    assert named.status_code == 200
    assert client.get("/me", headers={"Authorization": f"Bearer {alice}"}).status_code == 401
