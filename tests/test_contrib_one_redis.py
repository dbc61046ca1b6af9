"""One pool per worker for everything, under real gunicorn with two workers:
JWT revocation, FogRedis's cache, Flask-Caching, Flask-Session and
Flask-Limiter (tests/apps/one_redis_app.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .processes import Gunicorn
from .servers import RedisServer

APP = "tests.apps.one_redis_app:app"
POOL_SIZE = 4
CLIENT_NAME = "one-redis-app"


@pytest.fixture
def served(redis_server: RedisServer, tmp_path: Path) -> Iterator[Gunicorn]:
    config = tmp_path / "gunicorn_empty.conf.py"
    config.write_text("")
    server = Gunicorn(
        APP,
        {"REDIS_URL": redis_server.url, "REDIS_POOL_SIZE": str(POOL_SIZE)},
        "--config",
        str(config),
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "2",
        log=tmp_path / "gunicorn.log",
    )
    yield server
    server.stop()


def _concurrently(server: Gunicorn, path: str, count: int) -> list[tuple[int, str]]:
    def one(_: int) -> tuple[int, str]:
        status, headers, _body = server.request(path)
        return status, headers["X-Worker"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_the_limit_holds_across_both_workers(served: Gunicorn) -> None:
    answers: list[tuple[int, str]] = []
    # Until both workers have answered: on a loaded machine one worker may
    # accept whole batches.
    deadline = time.monotonic() + 60
    while len({worker for _, worker in answers}) < 2 and time.monotonic() < deadline:
        answers += _concurrently(served, "/limited", 16)
        time.sleep(0.05)
    assert len({worker for _, worker in answers}) == 2
    statuses = [status for status, _ in answers]
    # Two separate counters (one per worker) would let up to 10 through.
    assert statuses.count(200) == 5
    assert statuses.count(429) == len(answers) - 5


def test_every_library_runs_on_the_one_pool_per_worker(
    served: Gunicorn, redis_server: RedisServer
) -> None:
    admin = redis_server.admin()
    for _ in range(3):
        _concurrently(served, "/fog-cached", 16)
        _concurrently(served, "/flask-cached", 16)
        _concurrently(served, "/limited", 16)
    status, headers, body = served.request("/login/alice", method="POST")
    assert status == 200
    token = json.loads(body)["token"]
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    assert json.loads(served.request("/me", headers={"Cookie": cookie})[2]) == {"user": "alice"}
    bearer = {"Authorization": f"Bearer {token}"}
    assert served.request("/logout", method="POST", headers=bearer)[0] == 200
    assert served.request("/private", headers=bearer)[0] == 401

    keys = {key.split(":")[0] + ":" + key.split(":")[1] for key in admin.scan_iter()}
    # Each library wrote through it: sessions, limits, Flask-Caching, our
    # cache, and the revocation.
    assert any(key.startswith("session:") for key in keys), keys
    assert any(key.startswith("LIMITS:") for key in keys), keys
    assert "fog:flask_caching" in keys and "fog:cache" in keys, keys
    assert len(keys - {"fog:flask_caching", "fog:cache"}) >= 3, keys

    own = admin.client_id()
    clients = [c for c in admin.client_list() if int(c["id"]) != own]
    named = [c for c in clients if c["name"] == CLIENT_NAME]
    print(f"CLIENT LIST: {len(clients)} app connections, {len(named)} named {CLIENT_NAME!r}")
    # No library opened a pool of its own (its connections would be unnamed),
    # and the two workers' pools stay within their size.
    assert clients and len(named) == len(clients), [c for c in clients if c not in named]
    assert len(named) <= 2 * POOL_SIZE
