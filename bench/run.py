"""``python -m bench``: every scenario, one table, a JSON file and a chart."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import load, report
from .http_scenarios import (
    Options,
    cached_view,
    conditional_get,
    health_storm,
    near_cache_memory,
    revocation,
)
from .local_scenarios import memoize_and_conditional, plain_operations, pool_contention
from .results import Scenario
from .servers import GUNICORN_THREADS, GUNICORN_WORKERS, RedisServer

RESULTS = Path(__file__).resolve().parent / "results"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="rounds per scenario (>= 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one load run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per contender")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="load generator threads")
    parser.add_argument(
        "--loader", choices=["auto", "wrk", "python"], default="auto", help="load generator"
    )
    parser.add_argument(
        "--only",
        default="1,2,3,4,5,6,7,8,9,10",
        help="scenarios to run, comma-separated (default: all)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a median of fewer says little")
    return args


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meta(args: argparse.Namespace, loader: str, redis_version: str) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpu": _cpu(),
            "cpus": os.cpu_count(),
            "system": platform.platform(terse=True),
            "shared": "noisy: other work ran on the same cores",
        },
        "versions": {
            "python": platform.python_version(),
            "redis-server": redis_version,
            "redis": _version("redis"),
            "hiredis": _version("hiredis"),
            "flask": _version("flask"),
            "flask-fogredis": _version("flask-fogredis"),
            "flask-caching": _version("flask-caching"),
            "flask-jwt-extended": _version("flask-jwt-extended"),
            "gunicorn": _version("gunicorn"),
            "wrk": load.wrk_version() if loader == "wrk" else None,
        },
        "load": {
            "generator": loader,
            "threads": args.threads,
            "connections": args.connections,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
        },
        "gunicorn": {
            "workers": GUNICORN_WORKERS,
            "threads": GUNICORN_THREADS,
            "worker_class": "gthread (scenarios 7 and 8: gevent)",
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    wanted = {int(n) for n in args.only.split(",") if n.strip()}
    loader = load.generator() if args.loader == "auto" else args.loader
    if loader == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --loader python")
    if loader == "python":
        print("wrk not found: using the Python load generator (lower absolute figures)")
    # The harness's own apps have no password and no persistence: expected here.
    logging.getLogger("flask_fogredis").setLevel(logging.ERROR)
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    options = Options(
        rounds=args.rounds,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        loader=loader,
        logs=logs,
    )
    server = RedisServer(out / "redis")
    scenarios: list[Scenario] = []
    crashed: list[int] = []
    began = time.monotonic()
    try:
        meta = _meta(args, loader, server.version())
        steps: list[tuple[int, Callable[[], Scenario]]] = [
            (1, lambda: cached_view(options, server)),
            (2, lambda: revocation(options, server)),
            (3, lambda: plain_operations(server.url, rounds=max(9, args.rounds), pairs=3000)),
            (4, lambda: pool_contention(server.url, rounds=args.rounds, seconds=2.0)),
            (5, lambda: health_storm(options)),
            (
                6,
                lambda: memoize_and_conditional(server.url, rounds=max(9, args.rounds), calls=2000),
            ),
            (7, lambda: cached_view(options, server, "gevent")),
            (8, lambda: revocation(options, server, "gevent")),
            (9, lambda: conditional_get(options, server)),
            (10, lambda: near_cache_memory(options, server)),
        ]
        for number, step in steps:
            if number not in wanted:
                continue
            print(f"scenario {number} ...", flush=True)
            try:
                scenario = step()
            except Exception:
                # The scenarios measured so far are still reported; the run fails.
                traceback.print_exc()
                crashed.append(number)
                continue
            scenarios.append(scenario)
            server.admin().flushdb()
    finally:
        server.stop()
    meta["seconds_taken"] = round(time.monotonic() - began)
    table = report.text(meta, scenarios)
    print()
    print(table)
    report.write_json(out / "results.json", meta, scenarios)
    (out / "table.md").write_text(report.markdown(meta, scenarios) + "\n")
    report.chart(out / "results.png", meta, scenarios)
    print(f"written: {out / 'results.json'}, {out / 'table.md'}, {out / 'results.png'}")
    failed = [text for s in scenarios for text, ok in s.checks if not ok]
    if crashed:
        print(f"scenarios that crashed (traceback above): {crashed}")
    return 1 if failed or crashed else 0
