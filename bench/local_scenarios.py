"""Scenarios 3 and 4: the extension in this process, against redis-py on
an equal blocking pool."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import redis
from flask import Flask

from flask_fogredis import FogRedis, RedisUnavailableError

from .results import Scenario

KEY = "bench:plain"
VALUE = "v" * 100


def _app(url: str, **config: Any) -> tuple[Flask, FogRedis]:
    app = Flask("bench-local")
    app.config.update(REDIS_URL=url, **config)
    return app, FogRedis(app)


def _equal_pool(app: Flask, fog: FogRedis) -> tuple[redis.Redis, redis.BlockingConnectionPool]:
    """A plain redis-py client on a BlockingConnectionPool built with the
    options the extension's pool has (size, timeouts, keepalive, health
    checks, decoding)."""
    with app.app_context():
        settings = fog.state().settings
    connection = settings.target.connection
    pool = redis.BlockingConnectionPool(
        host=connection["host"],
        port=connection["port"],
        db=connection["db"],
        max_connections=settings.pool_size,
        timeout=settings.pool_timeout,
        socket_connect_timeout=settings.connect_timeout,
        socket_timeout=settings.socket_timeout,
        socket_keepalive=settings.keepalive,
        health_check_interval=settings.health_check_interval,
        decode_responses=settings.decode_responses,
    )
    return redis.Redis(connection_pool=pool), pool


def plain_operations(url: str, rounds: int, pairs: int) -> Scenario:
    """3. SET then GET, one thread: ``fog.set/get``, ``fog.client`` and
    redis-py, in turns."""
    scenario = Scenario(
        3, f"Plain operations, one thread (SET then GET, {len(VALUE)}-byte value)", "ops/s", "ops"
    )
    app, fog = _app(url)
    raw, raw_pool = _equal_pool(app, fog)
    client_ops = scenario.contender("fog_ops", "fog.set / fog.get")
    client_attr = scenario.contender("fog_client", "fog.client.set / .get")
    plain = scenario.contender("redis_py", "redis-py, equal BlockingConnectionPool")

    def fog_ops() -> None:
        for _ in range(pairs):
            fog.set(KEY, VALUE)
            fog.get(KEY)

    def fog_client() -> None:
        for _ in range(pairs):
            fog.client.set(KEY, VALUE)
            fog.client.get(KEY)

    def redis_py() -> None:
        for _ in range(pairs):
            raw.set(KEY, VALUE)
            raw.get(KEY)

    runs: list[tuple[Any, Callable[[], None]]] = [
        (client_ops, fog_ops),
        (client_attr, fog_client),
        (plain, redis_py),
    ]
    with app.app_context():
        fog.set(KEY, VALUE)
        if fog.get(KEY) != VALUE:
            raise RuntimeError("fog.get did not read back what fog.set wrote")
        for _, run in runs:
            run()  # warm-up: connections open, code paths hot
        for round_ in range(rounds):
            shift = round_ % len(runs)
            for contender, run in runs[shift:] + runs[:shift]:
                began = time.perf_counter()
                run()
                contender.add("ops", 2 * pairs / (time.perf_counter() - began))
        fog.disconnect()
    raw_pool.disconnect()
    scenario.ratio("fog.set/get / redis-py", client_ops, plain, target=0.97)
    scenario.ratio("fog.client / redis-py", client_attr, plain, target=0.97)
    return scenario


def _timed_waits(pool: redis.BlockingConnectionPool) -> list[float]:
    """Time every wait for a connection from ``pool`` (the list fills as
    commands run)."""
    waits: list[float] = []
    take: Callable[..., Any] = pool.get_connection

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return take(*args, **kwargs)
        finally:
            waits.append(time.perf_counter() - began)

    setattr(pool, "get_connection", timed)  # noqa: B010 - an instance attribute on purpose
    return waits


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def _storm(
    threads: int,
    seconds: float,
    work: Callable[[], Any],
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[int, int, float]:
    """``threads`` threads calling ``work`` until ``seconds`` pass, each
    inside its own ``context()``; returns calls done, errors, and the time
    taken."""
    done = [0] * threads
    errors = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def loop(n: int) -> None:
        with context():
            start.wait()
            while time.perf_counter() < deadline[0]:
                try:
                    work()
                except Exception:
                    errors[n] += 1
                else:
                    done[n] += 1

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for worker in workers:
        worker.join()
    return sum(done), sum(errors), time.perf_counter() - began


def pool_contention(
    url: str, rounds: int, seconds: float, threads: int = 64, pool_size: int = 10
) -> Scenario:
    """4. ``threads`` threads on a pool of ``pool_size``: throughput, waits
    for a connection, errors; then the pool timeout exceeded."""
    scenario = Scenario(
        4, f"Pool under contention ({threads} threads, pool of {pool_size}, GET)", "ops/s", "ops"
    )
    scenario.columns = [
        "ops",
        "wait_p50_ms",
        "wait_p99_ms",
        "errors",
        "attempts",
        "fail_p50_over_timeout",
        "fail_max_over_timeout",
    ]
    app, fog = _app(url, REDIS_POOL_SIZE=pool_size)
    raw, raw_pool = _equal_pool(app, fog)
    with app.app_context():
        fog.set(KEY, VALUE)
        fog_waits = _timed_waits(fog.pool)
    raw_waits = _timed_waits(raw_pool)
    ours = scenario.contender("fog", "fog.get")
    plain = scenario.contender("redis_py", "redis-py, equal BlockingConnectionPool")

    # Each thread works inside an app context, as a request's thread would.
    runs: list[tuple[Any, Callable[[], Any], Callable[[], Any], list[float]]] = [
        (ours, lambda: fog.get(KEY), app.app_context, fog_waits),
        (plain, lambda: raw.get(KEY), contextlib.nullcontext, raw_waits),
    ]
    for round_ in range(rounds):
        shift = round_ % len(runs)
        for contender, work, context, waits in runs[shift:] + runs[:shift]:
            waits.clear()
            done, errors, took = _storm(threads, seconds, work, context)
            contender.add("ops", done / took)
            contender.add("errors", errors)
            contender.add("wait_p50_ms", 1000 * _percentile(waits, 0.50))
            contender.add("wait_p99_ms", 1000 * _percentile(waits, 0.99))
    with app.app_context():
        fog.disconnect()
    raw_pool.disconnect()
    scenario.ratio("fog.get / redis-py", ours, plain)
    scenario.ratio(
        "p99 wait, fog.get / redis-py", ours, plain, figure="wait_p99_ms", higher_is_better=False
    )
    for contender in (ours, plain):
        scenario.checks.append(
            (f"{contender.label}: zero errors", sum(contender.figures["errors"]) == 0)
        )
    _timeouts(scenario, url, rounds, threads, pool_size)
    return scenario


def _timeouts(scenario: Scenario, url: str, rounds: int, threads: int, pool_size: int) -> None:
    """Every connection held by a blocking command, then ``threads -
    pool_size`` more callers: each must fail with the extension's error
    after ``REDIS_POOL_TIMEOUT``, not hang, not succeed."""
    timeout = 0.1
    app, fog = _app(url, REDIS_POOL_SIZE=pool_size, REDIS_POOL_TIMEOUT=timeout)
    starved = scenario.contender("fog_timeout", f"fog.get, pool exhausted ({timeout:g} s timeout)")
    callers = threads - pool_size
    for _ in range(rounds):
        busy, outcomes = _starve(app, fog, pool_size, callers)
        failed = [took for outcome, took in outcomes if outcome == "RedisUnavailableError"]
        starved.add("errors", len(failed))
        starved.add("attempts", len(outcomes))
        starved.add("other_outcomes", len(outcomes) - len(failed))
        starved.add("all_busy", float(busy))
        starved.add("fail_p50_over_timeout", statistics.median(failed) / timeout if failed else 0.0)
        starved.add("fail_max_over_timeout", max(failed) / timeout if failed else 0.0)
    with app.app_context():
        fog.disconnect()
    scenario.checks.append(
        (
            f"pool exhausted: all {callers} callers got RedisUnavailableError, every round",
            all(e == callers for e in starved.figures["errors"])
            and all(starved.figures["all_busy"]),
        )
    )


def _starve(
    app: Flask, fog: FogRedis, holders: int, callers: int, hold: float = 1.5
) -> tuple[bool, list[tuple[str, float]]]:
    """``holders`` threads block on BLPOP for ``hold`` seconds, taking every
    connection; then ``callers`` threads try a GET. Returns whether the pool
    was indeed all taken, and each caller's outcome and time to it."""
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()

    def holder() -> None:
        with app.app_context():
            fog.client.blpop(["bench:never"], timeout=hold)

    def caller() -> None:
        began = time.perf_counter()
        with app.app_context():
            try:
                fog.get(KEY)
                outcome = "succeeded"
            except RedisUnavailableError:
                outcome = "RedisUnavailableError"
            except Exception as exc:
                outcome = type(exc).__name__
        with lock:
            outcomes.append((outcome, time.perf_counter() - began))

    holding = [threading.Thread(target=holder) for _ in range(holders)]
    for thread in holding:
        thread.start()
    with app.app_context():
        # The pool's queue holds its free slots: empty when all are taken.
        slots = fog.state().pool.pool
    deadline = time.monotonic() + hold / 2
    while slots.qsize() and time.monotonic() < deadline:
        time.sleep(0.005)
    busy = slots.qsize() == 0
    waiting = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in waiting:
        thread.start()
    for thread in waiting + holding:
        thread.join()
    return busy, outcomes


def memoize_and_conditional(url: str, rounds: int, calls: int) -> Scenario:
    """6. A memoize hit (FogRedis without and with the near cache, and
    Flask-Caching's ``@memoize`` on its Redis backend), and a cached view's
    ``If-None-Match`` hit against a full hit, in this process."""
    from flask_caching import Cache

    scenario = Scenario(6, "Memoize hit and conditional GET, one thread", "calls/s", "calls")
    app, fog = _app(url)
    near_app, near_fog = _app(url, REDIS_NEAR_CACHE=True, REDIS_KEY_PREFIX="near")
    peer_app = Flask("bench-peer")
    peer = Cache(peer_app, config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url})
    result = {"total": 12_345, "items": list(range(10))}

    def compute(user: int, page: int = 1) -> dict[str, Any]:
        return result

    ours = fog.memoize("bench", 600)(compute)
    ours_near = near_fog.memoize("bench", 600)(compute)
    theirs = peer.memoize(600)(compute)

    @app.get("/etag")
    @fog.cached("bench-view", 600)
    def view() -> dict[str, Any]:
        return {"rows": [{"n": n, "text": "x" * 40} for n in range(50)]}

    client = app.test_client()
    etag = client.get("/etag").headers["ETag"]
    contenders: list[tuple[Any, Flask, Callable[..., Any]]] = [
        (scenario.contender("fog", "fog.memoize"), app, ours),
        (scenario.contender("fog_near", "fog.memoize, near cache"), near_app, ours_near),
        (scenario.contender("flask_caching", "Flask-Caching @memoize (Redis)"), peer_app, theirs),
    ]
    full = scenario.contender("full_hit", "cached view, full hit")
    not_modified = scenario.contender("if_none_match", "cached view, If-None-Match hit (304)")

    def memo_run(target: Flask, fn: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            with target.app_context():
                for _ in range(calls):
                    fn(7, page=2)

        return run

    def view_run(headers: dict[str, str], status: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                if client.get("/etag", headers=headers).status_code != status:
                    raise RuntimeError("the cached view answered something else")

        return run

    runs: list[tuple[Any, Callable[[], None]]] = [
        (contender, memo_run(target, fn)) for contender, target, fn in contenders
    ]
    runs += [(full, view_run({}, 200)), (not_modified, view_run({"If-None-Match": etag}, 304))]
    for _, run in runs:
        run()  # warm-up: entries stored, near cache listening and filled
    time.sleep(0.5)
    for _, run in runs:
        run()
    for round_ in range(rounds):
        shift = round_ % len(runs)
        for contender, run in runs[shift:] + runs[:shift]:
            began = time.perf_counter()
            run()
            contender.add("calls", calls / (time.perf_counter() - began))
    for target, ext in ((app, fog), (near_app, near_fog)):
        with target.app_context():
            ext.disconnect()
    scenario.ratio("fog.memoize / Flask-Caching", contenders[0][0], contenders[2][0], target=1.0)
    scenario.ratio(
        "fog.memoize near / Flask-Caching", contenders[1][0], contenders[2][0], target=1.5
    )
    scenario.ratio("If-None-Match / full hit", not_modified, full, target=1.1)
    return scenario
