"""Gunicorn serving a test app, and a small HTTP client for it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .servers import free_port

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """``gunicorn APP`` on a free loopback port with the given environment."""

    def __init__(
        self, app: str, env: dict[str, str], *args: str, log: Path, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.log = log
        environment = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--log-level",
                    "warning",
                    *args,
                    app,
                ],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.base + "/__absent__", timeout=1)
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"gunicorn did not start:\n{self.log.read_text()[-3000:]}")

    def request(
        self,
        path: str,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        return http(self.base + path, method, body, headers, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def http(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request; returns status, headers and body, errors included."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def workers_answering(
    server: Gunicorn,
    path: str,
    headers: dict[str, str],
    expected: int,
    requests: int = 40,
    want: int = 2,
) -> int:
    """How many workers (by their ``X-Worker`` header) answered, each answer
    being ``expected``. Sends ``requests`` concurrent requests, and more
    batches (up to ten) until ``want`` workers have answered: an idle
    worker may otherwise take a whole quick batch."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> str:
        status, answer, body = server.request(path, headers=headers)
        assert status == expected, body
        return answer["X-Worker"]

    workers: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            workers.update(pool.map(one, range(requests)))
            if len(workers) >= want:
                break
    return len(workers)
