"""The example app under real gunicorn (2 workers, preload) on a real Redis:
every feature, then Redis killed and restarted under it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ServerFactory
from .processes import Gunicorn

JWT_KEY = "end-to-end-jwt-key-that-is-long-enough-for-hs256"
DEMO_PASSWORD = "end-to-end-demo-password-41c"


class Client:
    def __init__(self, server: Gunicorn) -> None:
        self.server = server

    def call(
        self, path: str, method: str = "GET", body: Any = None, token: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, response_headers, raw = self.server.request(path, method, body, headers)
        return status, response_headers, json.loads(raw) if raw else None

    def login(self) -> dict[str, str]:
        status, _, body = self.call(
            "/auth/login", "POST", {"username": "alice", "password": DEMO_PASSWORD}
        )
        assert status == 200, body
        return dict(body)


def _workers_refusing(client: Client, token: str, access: Path) -> int:
    """How many workers (by pid, from the access log) refused ``token``:
    concurrent batches, until both have answered (a quick batch can all land
    on one idle worker); every answer must be 401."""
    from concurrent.futures import ThreadPoolExecutor

    pids: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            statuses = set(pool.map(lambda _: client.call("/me", token=token)[0], range(30)))
            assert statuses == {401}
            lines = access.read_text().splitlines()
            pids = {line.split()[0] for line in lines if "/me 401" in line}
            if len(pids) >= 2:
                break
    return len(pids)


@pytest.mark.slow
def test_everything_under_gunicorn_with_redis_failing(
    redis_factory: ServerFactory, tmp_path: Path
) -> None:
    redis_server = redis_factory("--appendonly", "yes")
    access = tmp_path / "access.log"
    env = {
        "REDIS_URL": redis_server.url,
        "WEB_CONCURRENCY": "2",
        "THREADS": "4",
        "JWT_SECRET_KEY": JWT_KEY,
        "DEMO_PASSWORD": DEMO_PASSWORD,
        "REDIS_METRICS_TOKEN": "end-to-end-metrics-token-long-enough-for-it",
        "FLASK_DEBUG": "",
        "REPORTS_DATABASE": str(tmp_path / "reports.sqlite3"),
    }
    server = Gunicorn(
        "wsgi:app",
        env,
        "-c",
        "gunicorn.conf.py",
        "--log-level",
        "info",
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(p)s %(m)s %(U)s %(s)s",
        log=tmp_path / "gunicorn.log",
    )
    client = Client(server)
    try:
        # Cache: MISS, then HIT (from whichever worker); a write invalidates.
        assert client.call("/reports/summary")[1]["X-Cache"] == "MISS"
        assert client.call("/reports/summary")[1]["X-Cache"] == "HIT"
        writer = client.login()["access_token"]
        status, _, body = client.call("/reports", "POST", {"title": "q1", "value": 3}, token=writer)
        assert (status, body["invalidated"]) == (201, True)
        status, headers, body = client.call("/reports/summary")
        assert (headers["X-Cache"], body["count"]) == ("MISS", 1)

        # Logout: the old token is refused by every worker.
        tokens = client.login()
        assert client.call("/me", token=tokens["access_token"])[0] == 200
        status, _, body = client.call(
            "/auth/logout",
            "POST",
            {"refresh_token": tokens["refresh_token"]},
            token=tokens["access_token"],
        )
        assert body == {"revoked": ["access", "refresh"]}
        access.write_text("")
        assert _workers_refusing(client, tokens["access_token"], access) == 2

        # Log out everywhere.
        first, second = client.login(), client.login()
        assert client.call("/auth/logout-everywhere", "POST", token=first["access_token"])[0] == 200
        for _ in range(10):
            assert client.call("/me", token=second["access_token"])[0] == 401
            assert client.call("/auth/refresh", "POST", token=second["refresh_token"])[0] == 401
        time.sleep(1.05)  # tokens issued in the revocation's second are refused too
        fresh = client.login()
        assert client.call("/me", token=fresh["access_token"])[0] == 200

        # Redis dies.
        redis_server.kill()
        start = time.monotonic()
        status, headers, body = client.call("/health/redis")
        assert time.monotonic() - start < 1.0
        assert (status, body["healthy"]) == (503, False)
        for _ in range(6):
            status, headers, body = client.call("/me", token=fresh["access_token"])
            assert status == 503 and "Retry-After" in headers
            status, headers, body = client.call("/reports/summary")
            assert (status, headers["X-Cache"], body["count"]) == (200, "MISS", 1)

        # Redis comes back on the same port: all green, no gunicorn restart.
        redis_server.start()
        time.sleep(1.1)  # the health result is reused for up to a second
        assert client.call("/health/redis")[0] == 200
        assert client.call("/me", token=fresh["access_token"])[0] == 200
        assert client.call("/me", token=tokens["access_token"])[0] == 401  # AOF kept it
        assert client.call("/reports/summary")[0] == 200
        assert client.call("/reports/summary")[1]["X-Cache"] == "HIT"
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert log.count("Booting worker") == 2, log  # no worker died and was replaced
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log
