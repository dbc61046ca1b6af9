"""Every feature under gunicorn's sync, gthread and gevent workers, with more
requests in flight than the pool has connections: waiters wait for a
connection, and get the pool's timeout error when none comes in time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .processes import Gunicorn, http
from .servers import RedisServer

pytestmark = pytest.mark.slow

APP = "tests.apps.workers_app:app"
WORKER_ARGS = {
    "sync": ("--worker-class", "sync", "--workers", "2"),
    "gthread": ("--worker-class", "gthread", "--workers", "1", "--threads", "64"),
    "gevent": ("--worker-class", "gevent", "--workers", "1", "--worker-connections", "500"),
}
POOL_SIZE = 4
CONCURRENCY = 100

Answer = tuple[int, dict[str, str], bytes]


def _serve(
    worker: str, redis_server: RedisServer, tmp_path: Path, *args: str, **env: str
) -> Gunicorn:
    # An empty config file: the repository's gunicorn.conf.py (the example
    # app's settings) would otherwise be read from the working directory.
    config = tmp_path / "gunicorn_empty.conf.py"
    config.write_text("")
    return Gunicorn(
        APP,
        {"REDIS_URL": redis_server.url, "REDIS_POOL_SIZE": str(POOL_SIZE), **env},
        "--config",
        str(config),
        *WORKER_ARGS[worker],
        *args,
        log=tmp_path / f"gunicorn-{worker}.log",
    )


@pytest.fixture
def served() -> Iterator[list[Gunicorn]]:
    """Servers started by the test, stopped after it."""
    servers: list[Gunicorn] = []
    yield servers
    for server in servers:
        server.stop()


def _load(
    server: Gunicorn,
    requests: Sequence[tuple[str, str, dict[str, str]]],
    timeout: float = 15.0,
) -> list[Answer]:
    """``requests`` (method, path, headers), CONCURRENCY at a time; a request
    that gets no answer within ``timeout`` seconds counts as status 0."""

    def one(spec: tuple[str, str, dict[str, str]]) -> Answer:
        method, path, headers = spec
        try:
            return http(server.base + path, method, headers=headers, timeout=timeout)
        except OSError as exc:
            return 0, {}, type(exc).__name__.encode()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(one, requests))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(server: Gunicorn, user: str) -> str:
    status, _, body = server.request(f"/token/{user}")
    assert status == 200, body
    return str(json.loads(body)["token"])


def _statuses(answers: list[Answer]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for status, _, _ in answers:
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.mark.parametrize("near", ["off", "on"])
@pytest.mark.parametrize("preload", ["", "--preload"], ids=["fork-then-load", "preload"])
@pytest.mark.parametrize("worker", sorted(WORKER_ARGS))
def test_every_feature_with_more_requests_than_connections(
    worker: str,
    preload: str,
    near: str,
    redis_server: RedisServer,
    tmp_path: Path,
    served: list[Gunicorn],
) -> None:
    args = (preload,) if preload else ()
    server = _serve(worker, redis_server, tmp_path, *args, REDIS_NEAR_CACHE=near)
    served.append(server)
    token = _token(server, "alice")
    mix: list[tuple[str, str, dict[str, str]]] = []
    for i in range(60):
        mix += [
            ("GET", f"/plain/{i}", {}),
            ("GET", "/cached", {}),
            ("GET", "/protected", _bearer(token)),
            ("GET", "/health/redis", {}),
        ]
        if i % 6 == 0:
            # Holds a connection for a while, so that others must wait.
            mix.append(("GET", "/hold/0.2", {}))
    answers = _load(server, mix)
    assert _statuses(answers) == {200: len(mix)}, [a for a in answers if a[0] != 200][:3]
    plain = [
        json.loads(body) for (_, path, _), (_, _, body) in zip(mix, answers) if "plain" in path
    ]
    assert sorted(answer["count"] for answer in plain) == list(range(1, 61))
    assert {
        headers["X-Cache"]
        for (_, path, _), (_, headers, _) in zip(mix, answers)
        if path == "/cached"
    } <= {"HIT", "MISS"}

    status, _, body = server.request("/revoke", "POST", headers=_bearer(token))
    assert (status, json.loads(body)) == (200, {"revoked": True})
    refused = _load(server, [("GET", "/protected", _bearer(token))] * 40)
    assert _statuses(refused) == {401: 40}


def _pool_in_use(server: Gunicorn) -> dict[str, Any]:
    status, _, body = server.request("/health/redis")
    assert status == 200, body
    return dict(json.loads(body))


@pytest.mark.parametrize("preload", ["", "--preload"], ids=["fork-then-load", "preload"])
@pytest.mark.parametrize("worker", ["gthread", "gevent"])
def test_waiters_get_the_pool_timeout_error(
    worker: str, preload: str, redis_server: RedisServer, tmp_path: Path, served: list[Gunicorn]
) -> None:
    # A sync worker serves one request at a time: nothing in it ever waits
    # for a connection.
    args = (preload,) if preload else ()
    server = _serve(worker, redis_server, tmp_path, *args, REDIS_POOL_TIMEOUT="0.5")
    served.append(server)
    token = _token(server, "bob")
    with ThreadPoolExecutor(POOL_SIZE) as holders:
        held = [holders.submit(server.request, "/hold/6.0") for _ in range(POOL_SIZE)]
        deadline = time.monotonic() + 4
        while _pool_in_use(server)["pool_in_use"] < POOL_SIZE:
            assert time.monotonic() < deadline, "the holds never took the whole pool"
            time.sleep(0.05)
        mix: list[tuple[str, str, dict[str, str]]] = [("GET", f"/plain/{i}", {}) for i in range(20)]
        mix += [("GET", "/protected", _bearer(token))] * 20
        mix += [("GET", "/cached", {})] * 20
        mix += [("GET", "/health/redis", {})] * 20
        answers = _load(server, mix)
        assert [future.result()[0] for future in held] == [200] * POOL_SIZE
    by_path: dict[str, list[Answer]] = {}
    for (_, path, _), answer in zip(mix, answers):
        by_path.setdefault(path.split("/")[1], []).append(answer)
    # The app's own answer to a pool that stayed busy past its timeout.
    for status, _, body in by_path["plain"]:
        assert status == 503
        assert "No free connection" in json.loads(body)["error"]
    # The revocation check's documented answer: 503 with Retry-After.
    for status, headers, _ in by_path["protected"]:
        assert status == 503
        assert "Retry-After" in headers
    # The view cache fails open; health never borrows from the pool.
    assert _statuses(by_path["cached"]) == {200: 20}
    assert _statuses(by_path["health"]) == {200: 20}
    # Once the connections are back, every waiter's slot is usable again.
    again = _load(server, [("GET", f"/plain/again-{i}", {}) for i in range(40)])
    assert _statuses(again) == {200: 40}


@pytest.mark.parametrize("near", ["off", "on"])
def test_health_answers_within_its_bound_under_preloaded_gevent(
    near: str, redis_server: RedisServer, tmp_path: Path, served: list[Gunicorn]
) -> None:
    # Every request asks for a fresh check: more of them meet one in flight.
    server = _serve(
        "gevent",
        redis_server,
        tmp_path,
        "--preload",
        REDIS_NEAR_CACHE=near,
        REDIS_HEALTH_CACHE_SECONDS="0",
    )
    served.append(server)
    if near == "on":
        # Starts the near cache's listener in the worker.
        status, _, _ = server.request("/protected", headers=_bearer(_token(server, "carol")))
        assert status == 200
    # REDIS_HEALTH_TIMEOUT is 1 s; the client waits a little longer than that
    # for each answer, for a busy test machine.
    for _ in range(3):
        answers = _load(server, [("GET", "/health/redis", {})] * 50, timeout=3.0)
        assert _statuses(answers) == {200: 50}
