"""Load generators: wrk when it is installed, a Python one otherwise.

Both keep connections open, run for a fixed time and report the same
figures. The Python one needs the same CPU as the servers it measures, so
its absolute figures are lower; ratios between contenders still hold.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LUA = Path(__file__).with_name("summary.lua")


@dataclass(frozen=True)
class Load:
    """What one load run saw."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    bad_status: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def generator() -> str:
    """``wrk`` if it is on the PATH, else ``python``."""
    return "wrk" if shutil.which("wrk") else "python"


def wrk_version() -> str | None:
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).split("\n", 1)[0].strip() or None


def run(
    kind: str,
    url: str,
    seconds: float,
    connections: int,
    threads: int,
    headers: dict[str, str] | None = None,
) -> Load:
    """Load ``url`` (on 127.0.0.1) for ``seconds`` with ``connections``."""
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError("the benchmark loads only 127.0.0.1")
    if kind == "wrk":
        return _wrk(url, seconds, connections, threads, headers or {})
    return _python(url, seconds, connections, headers or {})


def _wrk(url: str, seconds: float, connections: int, threads: int, headers: dict[str, str]) -> Load:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH "))
    data = json.loads(line[len("BENCH ") :])
    return Load(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        bad_status=data["status"],
    )


def _python(url: str, seconds: float, connections: int, headers: dict[str, str]) -> Load:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    bad = [0] * connections
    start = time.perf_counter()
    deadline = start + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        mine = latencies[n]
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
                continue
            mine.append(time.perf_counter() - began)
            if resp.status >= 400:
                bad[n] += 1
        conn.close()

    workers = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    every = sorted(x for mine in latencies for x in mine)
    if not every:
        return Load(0, elapsed, 0.0, 0.0, 0.0, sum(errors), sum(bad))
    cuts = statistics.quantiles(every, n=100) if len(every) > 1 else every * 99
    return Load(
        requests=len(every),
        seconds=elapsed,
        p50_ms=cuts[49] * 1000,
        p99_ms=cuts[98] * 1000,
        max_ms=every[-1] * 1000,
        socket_errors=sum(errors),
        bad_status=sum(bad),
    )
