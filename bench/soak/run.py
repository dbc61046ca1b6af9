"""``python -m bench.soak``: the chaos soak. Starts Redis (one with AOF, or a
Sentinel set) behind proxies, the example app under gunicorn, the clients
and the fault injector; after ``SOAK_SECONDS`` re-checks every revoked
token, writes the history, the table and the timeline under
``bench/results/``, and exits 1 if a correctness line failed.

Environment: ``SOAK_SECONDS`` (600), ``SOAK_WORKER`` (gthread|gevent),
``SOAK_TOPOLOGY`` (single|sentinel), ``SOAK_USERS`` (clients, 6),
``SOAK_WINDOW`` (seconds a revoked token may still pass, 1.0),
``SOAK_GRACE`` (seconds after a fault a 503 still belongs to it, 1.0),
``SOAK_SEED``."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType

from . import check, faults, load, plot
from .servers import ROOT, SentinelSet, Single, Topology, free_port, stop, wait_until

SETTLE_SECONDS = 3.0


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _env(name: str, default: str, allowed: tuple[str, ...] = ()) -> str:
    value = os.environ.get(name) or default
    if allowed and value not in allowed:
        raise SystemExit(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def main() -> int:
    """Run the soak; 0 if every correctness line passed, 1 otherwise."""
    seconds = float(_env("SOAK_SECONDS", "600"))
    worker = _env("SOAK_WORKER", "gthread", ("gthread", "gevent"))
    topology_name = _env("SOAK_TOPOLOGY", "single", ("single", "sentinel"))
    users = int(_env("SOAK_USERS", "6"))
    window = float(_env("SOAK_WINDOW", "1.0"))
    grace = float(_env("SOAK_GRACE", "1.0"))
    seed = int(_env("SOAK_SEED", str(int(time.time()))))
    if not 10 <= seconds <= 24 * 3600 or not 1 <= users <= 50:
        raise SystemExit("SOAK_SECONDS must be 10 to 86400 and SOAK_USERS 1 to 50")
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results" / f"soak-{topology_name}-{worker}-{stamp}"
    results.mkdir(parents=True)
    print(f"soak: {seconds:g} s, {worker}, {topology_name}, seed {seed}; results in {results}")
    with tempfile.TemporaryDirectory(prefix="fogredis-soak-") as scratch:
        return _soak(
            Path(scratch), results, seconds, worker, topology_name, users, window, grace, seed
        )


def _soak(
    scratch: Path,
    results: Path,
    seconds: float,
    worker: str,
    topology_name: str,
    users: int,
    window: float,
    grace: float,
    seed: int,
) -> int:
    topology: Topology | None = None
    server: subprocess.Popen[bytes] | None = None
    stop_load, stop_faults = threading.Event(), threading.Event()
    history = load.History(results / "history.jsonl")
    clients: list[load.Client] = []
    try:
        topology = SentinelSet(scratch) if topology_name == "sentinel" else Single(scratch)
        port = free_port()
        password = secrets.token_urlsafe(16)
        names = [f"user{n}" for n in range(users)] + ["prober", "admin"]
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("FLASK_DEBUG", "REDIS_URL", "REDIS_CACHE_URL")
        }
        env.update(
            SOAK_BIND=f"127.0.0.1:{port}",
            SOAK_WORKER=worker,
            SOAK_REDIS_URL=topology.url,
            SOAK_WAIT_REPLICAS=str(topology.wait_replicas),
            SOAK_USERS=",".join(names),
            DEMO_PASSWORD=password,
            JWT_SECRET_KEY=secrets.token_urlsafe(48),
            REDIS_METRICS_TOKEN=secrets.token_urlsafe(48),
            REPORTS_DATABASE=str(scratch / "reports.sqlite3"),
        )
        with (results / "gunicorn.log").open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "bench/soak/gunicorn_conf.py",
                 "bench.soak.app:app"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
            ),
            60,
            "gunicorn",
        )
        revoked = load.Revoked()
        threads = []
        for number, name in enumerate(names[:-2]):
            client = load.Client(port, f"c{number}", name, history, "load")
            clients.append(client)
            threads.append(
                load.start(load.user_loop, client, password, revoked, stop_load, seed + number)
            )
        admin = load.Client(port, "admin", "admin", history, "load")
        prober = load.Client(port, "prober", "prober", history, "probe")
        clients += [admin, prober]
        threads.append(load.start(load.admin_loop, admin, password, revoked, stop_load, seed))
        threads.append(load.start(load.probe_loop, prober, password, stop_load))
        fault_errors: list[str] = []
        injector = load.start(faults.run, topology, history, stop_faults, seed, fault_errors)
        watcher = load.start(faults.watch_replicas, topology, history, stop_load)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end and injector.is_alive():
            time.sleep(0.2)
        stop_faults.set()
        injector.join(60)
        # The load runs on a little after the last fault, to see it recover.
        time.sleep(SETTLE_SECONDS)
        stop_load.set()
        for thread in [*threads, watcher]:
            thread.join(30)
        final = load.Client(port, "final", "", history, "final")
        clients.append(final)
        load.final_recheck(final, revoked)
    finally:
        for client in clients:
            client.close()
        stop_load.set()
        stop_faults.set()
        stop(server, timeout=10)
        if topology is not None:
            topology.close()
        history.close()
    records = check.load(results / "history.jsonl")
    report = check.check(records, window=window, grace=grace)
    table = check.format_table(report)
    header = f"soak {seconds:g} s, worker {worker}, topology {topology_name}, seed {seed}"
    if fault_errors:
        table += "\nfault injector stopped: " + "; ".join(fault_errors)
    (results / "table.txt").write_text(header + "\n" + table + "\n")
    print(header)
    print(table)
    try:
        plot.timeline(records, results / "timeline.png", header)
        print(f"timeline: {results / 'timeline.png'}")
    except ImportError:
        print("timeline skipped: matplotlib is not installed (pip install matplotlib)")
    return 0 if report.passed and not fault_errors else 1
