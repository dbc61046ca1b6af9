"""The near cache behind Sentinel: its invalidation channel follows the
master the pool writes to, and nothing is answered from memory while the
two differ. A real failover, with the old master left running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from flask_jwt_extended import create_access_token

from flask_fogredis import FogRedis
from flask_fogredis._config import read_settings
from flask_fogredis._near import Address, NearCache
from flask_fogredis._topology import single_connection

from .conftest import ServerFactory
from .jwt_helpers import bearer, jwt_app
from .test_near_cache import remember
from .topologies import SERVICE, SentinelSet, master_state, wait_for


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    found = SentinelSet(tmp_path, down_after_ms=1000)
    try:
        yield found.start()
    finally:
        found.stop()


def _near_app(url: str) -> tuple[Any, FogRedis]:
    app, fog, _ = jwt_app(url, REDIS_NEAR_CACHE=True)
    return app, fog


def _near(app: Any, fog: FogRedis) -> NearCache:
    with app.app_context():
        near = fog.state().near
    assert near is not None
    return near


class _Pool:
    """Stands for a Sentinel pool: ``named`` is what the sentinels would
    answer, ``master_address`` what the pool learned when it last asked."""

    def __init__(self, named: Address) -> None:
        self.named = named
        self.master_address: Address | None = None

    def get_master_address(self) -> Address:
        self.master_address = self.named
        return self.named


def _following(redis_factory: ServerFactory) -> tuple[NearCache, _Pool, Address, Any]:
    first, second = redis_factory(), redis_factory()
    one, two = ("127.0.0.1", first.port), ("127.0.0.1", second.port)
    pool = _Pool(one)
    settings = read_settings(
        {"REDIS_URL": first.url, "REDIS_SENTINEL_CHECK_INTERVAL": 0.2}, "REDIS"
    )
    near = NearCache(
        settings,
        ["fog:"],
        1000,
        1 << 20,
        ping_interval=0.2,
        master=pool,
        connect=partial(single_connection, settings),
    )
    near.lookup(["fog:warmup"])  # starts the listener
    wait_for(lambda: near.healthy, 5, "the near cache")
    assert near.listening_to == one
    return near, pool, two, second


def test_while_the_pool_writes_elsewhere_nothing_comes_from_memory(
    redis_factory: ServerFactory,
) -> None:
    near, pool, two, second = _following(redis_factory)
    try:
        remember(near, "fog:a", b"1")
        assert near.lookup(["fog:a"]) == [b"1"]
        # The pool learned of a new master (a write met READONLY, or its
        # own check): the channel still hears the old one.
        pool.named = pool.master_address = two
        assert near.lookup(["fog:a"]) is None
        assert near.begin(["fog:b"]) is None
        assert near.expect("fog:a") is None
        wait_for(lambda: near.healthy and near.listening_to == two, 5, "the channel to follow")
        assert near.lookup(["fog:a"]) is None  # the move flushed it
        remember(near, "fog:a", b"1")
        assert near.lookup(["fog:a"]) == [b"1"]
        second.admin().set("fog:a", "2")  # now heard from the new master
        wait_for(lambda: near.lookup(["fog:a"]) is None, 5, "the invalidation")
    finally:
        near.close()


def test_the_channel_asks_the_sentinels_though_the_pool_is_idle(
    redis_factory: ServerFactory,
) -> None:
    # A process answering every check from memory never takes a connection,
    # so its pool never asks: the listener does, and the pool follows.
    near, pool, two, _ = _following(redis_factory)
    try:
        remember(near, "fog:a", b"1")
        pool.named = two
        wait_for(lambda: near.healthy and near.listening_to == two, 5, "the channel to follow")
        assert pool.master_address == two
        assert near.lookup(["fog:a"]) is None
    finally:
        near.close()


def _named_by_all(sentinel_set: SentinelSet) -> set[int]:
    """The master ports the sentinels name (one when they agree)."""
    # SENTINEL MASTERS: redis-py 6 and 7.0 cannot parse GET-MASTER-ADDR-BY-NAME
    # on a plain client.
    return {int(master_state(sentinel)["port"]) for sentinel in sentinel_set.sentinels}


@pytest.mark.slow
def test_revoked_after_a_failover_is_refused_while_the_old_master_runs(
    sentinel_set: SentinelSet,
) -> None:
    reader, reader_fog = _near_app(sentinel_set.url())
    writer, writer_fog = _near_app(sentinel_set.url())
    client = reader.test_client()
    with reader.app_context():
        token = create_access_token("alice")
    near = _near(reader, reader_fog)
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    wait_for(lambda: near.healthy, 10, "the near cache")
    old_port = sentinel_set.master_address()[1]
    old = sentinel_set.server_at(old_port)
    assert near.listening_to == ("127.0.0.1", old_port)
    # From here on the reader answers from memory, never asking Redis.
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    hits = near.stats()["hits"]
    assert client.get("/protected", headers=bearer(token)).status_code == 200
    assert near.stats()["hits"] > hits

    trigger = time.monotonic()
    sentinel_set.sentinels[0].admin().execute_command("SENTINEL", "FAILOVER", SERVICE)
    wait_for(lambda: sentinel_set.master_address()[1] != old_port, 30, "a new master")
    new_port = sentinel_set.master_address()[1]
    wait_for(lambda: _named_by_all(sentinel_set) == {new_port}, 30, "every sentinel to agree")
    named = time.monotonic() - trigger
    with writer.app_context():
        writer_fog.revoke_token(token)
    assert sentinel_set.server_at(new_port).admin().dbsize() >= 1  # written to the new one
    revoked = time.monotonic()
    refused = None
    while time.monotonic() - revoked < 3:
        if client.get("/protected", headers=bearer(token)).status_code == 401:
            refused = time.monotonic() - revoked
            break
        time.sleep(0.01)
    old_role = old.admin().info("replication")["role"]
    followed = near.listening_to
    print(
        f"\nSentinel failover: sentinels named the new master {named:.2f} s after the trigger; "
        f"a token revoked then was refused by the near-cache reader after "
        f"{'more than 3 s' if refused is None else f'{refused * 1000:.0f} ms'} "
        f"(the old master's role then: {old_role})"
    )
    assert refused is not None, "a revoked token was still accepted 3 s after the failover"
    assert old.process is not None and old.process.poll() is None  # the old master still runs
    # Once it follows the new master, the near cache answers from memory again.
    wait_for(lambda: near.healthy and near.listening_to == ("127.0.0.1", new_port), 10, "follow")
    assert followed in (None, ("127.0.0.1", old_port), ("127.0.0.1", new_port))
    assert client.get("/protected", headers=bearer(token)).status_code == 401
    hits = near.stats()["hits"]
    assert client.get("/protected", headers=bearer(token)).status_code == 401
    assert near.stats()["hits"] > hits
