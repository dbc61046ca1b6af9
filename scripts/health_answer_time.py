"""How long /health/redis takes to answer when Redis is down or silent.

Serves an app over real HTTP (werkzeug, threaded) and times sequential
requests, then a burst of concurrent ones, for each case and for reuse of
results on (1 s, the default) and off (0: every request waits for a check):

    .venv/bin/python scripts/health_answer_time.py [--requests 50]

No redis-server is needed: "down" is a port nobody listens on, "silent" a
socket that accepts and never answers.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

from flask_fogredis import FogRedis

# The test suite's loopback helpers, from the checkout this script is in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import free_port, silent_socket


@contextmanager
def serving(redis_url: str, cache_seconds: float) -> Iterator[str]:
    app = Flask("measure")
    app.config.update(REDIS_URL=redis_url, REDIS_HEALTH_CACHE_SECONDS=cache_seconds)
    FogRedis(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/health/redis"
    finally:
        server.shutdown()
        thread.join()


def get(url: str) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, time.perf_counter() - start


def summary(label: str, results: list[tuple[int, float]]) -> str:
    times = [seconds * 1000 for _, seconds in results]
    statuses = sorted({status for status, _ in results})
    return (
        f"{label:<44} n={len(times):<4} status={statuses} "
        f"median={statistics.median(times):7.1f} ms  worst={max(times):7.1f} ms"
    )


def burst(url: str, count: int) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        result = get(url)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    count = parser.parse_args().requests
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    with silent_socket() as silent:
        cases = {
            "down (connection refused)": f"redis://127.0.0.1:{free_port()}/0",
            "silent (accepts, never answers)": f"redis://127.0.0.1:{silent}/0",
        }
        for case, redis_url in cases.items():
            for cache_seconds in (1.0, 0.0):
                with serving(redis_url, cache_seconds) as url:
                    label = f"{case}, reuse {cache_seconds:g} s"
                    print(summary(f"{label}, sequential", [get(url) for _ in range(count)]))
                    print(summary(f"{label}, concurrent", burst(url, count)))


if __name__ == "__main__":
    main()
