"""The soak's clients: users doing a realistic mix over keep-alive HTTP
connections, an administrator revoking other users' tokens, a prober that
asks for health and a protected view every 0.1 s, and the end-of-run
re-check of every revoked token. Every request goes into the history."""

from __future__ import annotations

import base64
import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = dict[str, Any]
# Upper bound on one client's requests, whatever the duration.
MAX_REQUESTS_PER_CLIENT = 200_000


class History:
    """The JSON-lines history file, written by many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("w")
        self._lock = threading.Lock()

    def add(self, record: Record) -> None:
        line = json.dumps(record, sort_keys=True)
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()


def claims(token: str) -> Record:
    """The token's claims the checker needs, read without verification."""
    payload = token.split(".")[1]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {key: data.get(key) for key in ("jti", "sub", "type", "auth_time")}


class Client:
    """One HTTP/1.1 keep-alive connection to the app, which records each
    request and reconnects after a failure."""

    def __init__(self, port: int, name: str, user: str, history: History, phase: str) -> None:
        self.port = port
        self.name = name
        self.user = user
        self.history = history
        self.phase = phase
        self.conn: http.client.HTTPConnection | None = None

    def call(
        self,
        op: str,
        method: str,
        path: str,
        token: str | None = None,
        body: Record | None = None,
        revokes: Record | None = None,
    ) -> tuple[int, Record]:
        """Send one request; its status (0: no answer) and JSON body."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        status, answer, msg = 0, {}, None
        t_start = time.time()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
            status = response.status
            try:
                parsed = json.loads(raw)
                answer = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                answer = {}
            msg = answer.get("msg") or answer.get("error")
        except (OSError, http.client.HTTPException) as exc:
            msg = type(exc).__name__
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        t_end = time.time()
        issued = [claims(answer[k]) for k in ("access_token", "refresh_token") if k in answer]
        self.history.add(
            {
                "type": "request",
                "phase": self.phase,
                "client": self.name,
                "user": self.user,
                "op": op,
                "t_start": t_start,
                "t_end": t_end,
                "status": status,
                "msg": msg if isinstance(msg, str) else None,
                "token": claims(token) if token and token.count(".") == 2 else None,
                "body_user": answer.get("username"),
                "issued": issued,
                "revokes": revokes,
            }
        )
        return status, answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Revoked:
    """Tokens whose revocation the app confirmed, for the final re-check,
    and fresh access tokens the administrator may revoke."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: list[tuple[str, str, str]] = []  # (user, kind, token)
        self.live: dict[str, str] = {}  # user -> an access token of theirs

    def add(self, user: str, kind: str, token: str) -> None:
        with self.lock:
            self.tokens.append((user, kind, token))


def user_loop(
    client: Client, password: str, revoked: Revoked, stop: threading.Event, seed: int
) -> None:
    """A user's session after session: log in, use it, refresh, and end it
    by a log out, a log out everywhere, or an administrator's revocation."""
    rng = random.Random(seed)
    access = refresh = None
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if stop.is_set():
            return
        if access is None or refresh is None:
            status, body = client.call(
                "login", "POST", "/auth/login", body={"username": client.user, "password": password}
            )
            if status == 200:
                access, refresh = body["access_token"], body["refresh_token"]
                with revoked.lock:
                    revoked.live[client.user] = access
            else:
                time.sleep(0.2)
            continue
        roll = rng.random()
        if roll < 0.35:
            status, _ = client.call("me", "GET", "/me", access)
        elif roll < 0.55:
            status, _ = client.call("profile", "GET", "/soak/profile", access)
        elif roll < 0.72:
            status, _ = client.call("summary", "GET", "/reports/summary")
        elif roll < 0.80:
            status, _ = client.call(
                "report", "POST", "/reports", access, {"title": client.name, "value": rng.random()}
            )
        elif roll < 0.88:
            status, body = client.call(
                "refresh",
                "POST",
                "/auth/refresh",
                refresh,
                revokes={"jtis": [claims(refresh)["jti"]]},
            )
            if status == 200:
                revoked.add(client.user, "refresh", refresh)
                client.call("replay_refresh", "POST", "/auth/refresh", refresh)
                access, refresh = body["access_token"], body["refresh_token"]
                with revoked.lock:
                    revoked.live[client.user] = access
        elif roll < 0.91:
            client.call("garbage_token", "GET", "/me", "not-a-token")
            status = 200
        elif roll < 0.96:
            jtis = [claims(access)["jti"], claims(refresh)["jti"]]
            status, _ = client.call(
                "logout", "POST", "/auth/logout", access, {"refresh_token": refresh},
                revokes={"jtis": jtis},
            )  # fmt: skip
            if status == 200:
                revoked.add(client.user, "access", access)
                revoked.add(client.user, "refresh", refresh)
                client.call("replay_access", "GET", "/me", access)
                access = refresh = None
        else:
            status, _ = client.call(
                "logout_everywhere", "POST", "/auth/logout-everywhere", access,
                revokes={"user": client.user},
            )  # fmt: skip
            if status == 200:
                revoked.add(client.user, "access", access)
                revoked.add(client.user, "refresh", refresh)
                client.call("replay_access", "GET", "/me", access)
                access = refresh = None
                # A session begun in the revocation's second is refused too
                # (documented): the next login waits for the next second.
                time.sleep(1.05 - time.time() % 1)
        if status == 401:
            access = refresh = None  # revoked by the administrator, or lost
        elif status in (0, 503):
            time.sleep(0.05)
        else:
            time.sleep(rng.uniform(0, 0.01))


def admin_loop(
    client: Client, password: str, revoked: Revoked, stop: threading.Event, seed: int
) -> None:
    """Every second or so, revoke one user's current access token (by jti)."""
    rng = random.Random(seed)
    token = None
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if stop.wait(rng.uniform(0.5, 1.5)):
            return
        if token is None:
            status, body = client.call(
                "login", "POST", "/auth/login", body={"username": client.user, "password": password}
            )
            token = body.get("access_token") if status == 200 else None
            continue
        with revoked.lock:
            victims = list(revoked.live.items())
        if not victims:
            continue
        user, victim = rng.choice(victims)
        jti = claims(victim)["jti"]
        status, _ = client.call(
            "admin_revoke", "POST", "/admin/revoke", token, {"jti": jti},
            revokes={"jtis": [jti]},
        )  # fmt: skip
        if status == 200:
            revoked.add(user, "access", victim)
        elif status == 401:
            token = None


def probe_loop(client: Client, password: str, stop: threading.Event) -> None:
    """Health and a protected view, every 0.1 s: the measure of recovery."""
    token = None
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if stop.wait(0.1):
            return
        client.call("probe_health", "GET", "/health/redis")
        if token is None:
            status, body = client.call(
                "login", "POST", "/auth/login", body={"username": client.user, "password": password}
            )
            token = body.get("access_token") if status == 200 else None
            continue
        status, _ = client.call("probe_me", "GET", "/me", token)
        if status == 401:
            token = None


def final_recheck(client: Client, revoked: Revoked) -> None:
    """Send every revoked token once more: each must be refused."""
    with revoked.lock:
        tokens = list(revoked.tokens)
    for user, kind, token in tokens:
        client.user = user
        if kind == "access":
            client.call("final_access", "GET", "/me", token)
        else:
            client.call("final_refresh", "POST", "/auth/refresh", token)


def start(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
