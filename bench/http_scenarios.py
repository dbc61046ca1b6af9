"""Scenarios 1, 2, 5 and 7 to 10: contender apps under gunicorn, loaded in
turns."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from . import load
from .apps import (
    CACHED_PATH,
    FLOOR_KEY,
    HEALTH_PATH,
    JWT_IDENTITY,
    JWT_SECRET,
    NEAR_FILL_PATH,
    PAGE,
    PAGE_PATH,
    PAYLOAD,
    PROTECTED_PATH,
)
from .results import Contender, Scenario
from .servers import GEVENT_CONNECTIONS, Gunicorn, RedisServer, SilentRedis, free_port


@dataclass(frozen=True)
class Options:
    rounds: int
    seconds: float
    warmup: float
    connections: int
    threads: int
    loader: str
    logs: Path


@dataclass
class Entry:
    """A contender, its server, and what to request from it."""

    contender: Contender
    server: Gunicorn
    path: str
    headers: dict[str, str]


@contextmanager
def serving(
    names: list[str], env: dict[str, str], logs: Path, worker_class: str = "gthread"
) -> Iterator[dict[str, Gunicorn]]:
    """A gunicorn per contender app, all stopped on the way out."""
    with ExitStack() as stack:
        servers: dict[str, Gunicorn] = {}
        for name in names:
            log = logs / f"gunicorn-{name}-{worker_class}.log"
            server = Gunicorn(name, env, log, worker_class)
            stack.callback(server.stop)
            servers[name] = server
        yield servers


def alternate(
    options: Options,
    entries: list[Entry],
    warmed: Callable[[], None] | None = None,
    after: Callable[[Entry, load.Load], None] | None = None,
) -> None:
    """Warm every contender, then load them in turns: each round starts one
    further along the list, so that none always runs first or last."""
    for entry in entries:
        load.run(
            options.loader,
            entry.server.base + entry.path,
            options.warmup,
            options.connections,
            options.threads,
            entry.headers,
        )
    if warmed is not None:
        warmed()
    for round_ in range(options.rounds):
        shift = round_ % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            result = load.run(
                options.loader,
                entry.server.base + entry.path,
                options.seconds,
                options.connections,
                options.threads,
                entry.headers,
            )
            c = entry.contender
            c.add("rps", result.rps)
            c.add("p50_ms", result.p50_ms)
            c.add("p99_ms", result.p99_ms)
            c.add("max_ms", result.max_ms)
            c.add("socket_errors", result.socket_errors)
            c.add("bad_status", result.bad_status)
            c.add("requests", result.requests)
            if after is not None:
                after(entry, result)


def _no_errors(scenario: Scenario) -> None:
    for c in scenario.contenders:
        failed = sum(c.figures.get("socket_errors", [])) + sum(c.figures.get("bad_status", []))
        scenario.checks.append((f"{c.label}: no socket errors or error statuses", failed == 0))


def cached_view(
    options: Options, redis_server: RedisServer, worker_class: str = "gthread"
) -> Scenario:
    """1. A cache hit: ours, Flask-Caching on its RedisCache, no I/O, and
    one bare GET (the best any cache with one round trip per hit can do).
    7. The same under gevent workers, with GEVENT_CONNECTIONS connections."""
    title = f"Cached view hit (GET {CACHED_PATH}, {len(PAYLOAD)} bytes of JSON)"
    number = 1
    if worker_class == "gevent":
        number, title = 7, f"{title}, gevent, {GEVENT_CONNECTIONS} connections"
        options = replace(options, connections=GEVENT_CONNECTIONS)
    scenario = Scenario(number, title, "req/s", "rps")
    scenario.columns = ["rps", "p50_ms", "p99_ms"]
    names = ["fog_cached", "fog_cached_near", "flask_caching", "ceiling", "one_get"]
    redis_server.admin().set(FLOOR_KEY, PAYLOAD)
    env = {"REDIS_URL": redis_server.url}
    with serving(names, env, options.logs, worker_class) as servers:
        bodies = {}
        for name in names:
            servers[name].get(CACHED_PATH)
            status, headers, body = servers[name].get(CACHED_PATH)
            if status != 200 or body != PAYLOAD:
                raise RuntimeError(f"{name} answered {status} with other bytes")
            bodies[name] = headers
        for name in ("fog_cached", "fog_cached_near"):
            if bodies[name].get("X-Cache") != "HIT":
                raise RuntimeError(f"the second request to {name} was not a hit")
        if not any(redis_server.admin().scan_iter(match="flask_cache_*")):
            raise RuntimeError("Flask-Caching stored nothing in Redis")
        ours = scenario.contender("fog_cached", "Flask-FogRedis @fog.cached")
        near = scenario.contender("fog_cached_near", "Flask-FogRedis @fog.cached, near cache")
        peer = scenario.contender("flask_caching", "Flask-Caching @cache.cached, RedisCache")
        ceiling = scenario.contender("ceiling", "the same bytes, no I/O (ceiling)")
        floor = scenario.contender("one_get", "one bare GET, no cache logic")
        alternate(
            options,
            [
                Entry(ours, servers["fog_cached"], CACHED_PATH, {}),
                Entry(near, servers["fog_cached_near"], CACHED_PATH, {}),
                Entry(peer, servers["flask_caching"], CACHED_PATH, {}),
                Entry(ceiling, servers["ceiling"], CACHED_PATH, {}),
                Entry(floor, servers["one_get"], CACHED_PATH, {}),
            ],
        )
    scenario.ratio("FogRedis / Flask-Caching", ours, peer, target=1.25)
    scenario.ratio("FogRedis / no I/O", ours, ceiling)
    scenario.ratio("FogRedis near cache / Flask-Caching", near, peer, target=1.25)
    scenario.ratio("FogRedis near cache / no I/O", near, ceiling, target=0.97)
    scenario.ratio("Flask-Caching / no I/O", peer, ceiling)
    scenario.ratio("one bare GET / no I/O", floor, ceiling)
    scenario.ratio("FogRedis / one bare GET", ours, floor, target=0.95)
    scenario.ratio("Flask-Caching / one bare GET", peer, floor)
    _no_errors(scenario)
    return scenario


def _tokens(redis_url: str) -> tuple[str, str]:
    """A token issued before ``JWT_IDENTITY`` logged out everywhere (so
    refused by us), and one issued after (accepted by everyone): with the
    marker present, our check compares the token's ``iat`` with it."""
    from flask import Flask
    from flask_jwt_extended import JWTManager, create_access_token

    from flask_fogredis import FogRedis

    app = Flask("bench-tokens")
    app.config.update(REDIS_URL=redis_url, JWT_SECRET_KEY=JWT_SECRET, TESTING=True)
    fog = FogRedis(app)
    JWTManager(app)
    hour = timedelta(hours=1)
    with app.app_context():
        old = create_access_token(JWT_IDENTITY, expires_delta=hour)
        fog.revoke_all_tokens(JWT_IDENTITY)
        marked = time.time()
        # iat is in whole seconds and the marker's own second is refused.
        time.sleep(int(marked) + 1.05 - marked)
        new = create_access_token(JWT_IDENTITY, expires_delta=hour)
        fog.disconnect()
    return old, new


def revocation(
    options: Options, redis_server: RedisServer, worker_class: str = "gthread"
) -> Scenario:
    """2. A JWT-protected view: our check, the upstream recipe, no check.
    8. The same under gevent workers, with GEVENT_CONNECTIONS connections."""
    title = f"Revocation check on a JWT-protected view (GET {PROTECTED_PATH})"
    number = 2
    if worker_class == "gevent":
        number, title = 8, f"{title}, gevent, {GEVENT_CONNECTIONS} connections"
        options = replace(options, connections=GEVENT_CONNECTIONS)
    scenario = Scenario(number, title, "req/s", "rps")
    scenario.columns = ["rps", "p50_ms", "p99_ms"]
    old, new = _tokens(redis_server.url)
    auth = {"Authorization": f"Bearer {new}"}
    names = ["jwt_fog", "jwt_fog_near", "jwt_recipe", "jwt_none"]
    env = {"REDIS_URL": redis_server.url}
    with serving(names, env, options.logs, worker_class) as servers:
        for name in names:
            status, _, _ = servers[name].get(PROTECTED_PATH, auth)
            if status != 200:
                raise RuntimeError(f"{name} refused a valid token ({status})")
        for name in ("jwt_fog", "jwt_fog_near"):
            refused = {"Authorization": f"Bearer {old}"}
            status, _, _ = servers[name].get(PROTECTED_PATH, refused)
            scenario.checks.append(
                (f"{name} refuses the token issued before log out everywhere", status == 401)
            )
        ours = scenario.contender("jwt_fog", "Flask-FogRedis (jti + log out everywhere)")
        near = scenario.contender("jwt_fog_near", "Flask-FogRedis, near cache")
        recipe = scenario.contender("jwt_recipe", "upstream recipe (redis.get(jti))")
        none = scenario.contender("jwt_none", "no revocation check")
        alternate(
            options,
            [
                Entry(ours, servers["jwt_fog"], PROTECTED_PATH, auth),
                Entry(near, servers["jwt_fog_near"], PROTECTED_PATH, auth),
                Entry(recipe, servers["jwt_recipe"], PROTECTED_PATH, auth),
                Entry(none, servers["jwt_none"], PROTECTED_PATH, auth),
            ],
        )
    scenario.ratio("FogRedis / recipe", ours, recipe, target=0.98)
    scenario.ratio("FogRedis / no check", ours, none)
    scenario.ratio("FogRedis near cache / no check", near, none, target=0.97)
    scenario.ratio("FogRedis near cache / recipe", near, recipe)
    scenario.ratio("recipe / no check", recipe, none)
    _no_errors(scenario)
    return scenario


def conditional_get(options: Options, redis_server: RedisServer) -> Scenario:
    """9. A cached view's ``If-None-Match`` hit (304, no body) against a
    full hit, over HTTP, on one server: with and without the near cache,
    for the 955-byte item and for a page of some 30 KiB."""
    scenario = Scenario(
        9, f"Conditional GET of a cached view over HTTP (GET {CACHED_PATH})", "req/s", "rps"
    )
    scenario.columns = ["rps", "p50_ms", "p99_ms"]
    names = ["fog_cached", "fog_cached_near"]
    pages = ((CACHED_PATH, ""), (PAGE_PATH, f", {len(PAGE) // 1024} KiB page"))
    with serving(names, {"REDIS_URL": redis_server.url}, options.logs) as servers:
        entries = []
        for path, size in pages:
            for name, near in (("fog_cached", ""), ("fog_cached_near", ", near cache")):
                label = f"{size}{near}"
                entries += _conditional_pair(scenario, servers[name], name, path, label)
        alternate(options, entries)
    for index, (path, size) in enumerate(pages):
        for offset, near in ((0, ""), (2, ", near cache")):
            first = index * 4 + offset
            scenario.ratio(
                f"If-None-Match / full hit{size}{near}",
                entries[first + 1].contender,
                entries[first].contender,
                # The target is the item's; the page shows how it grows.
                target=1.1 if path == CACHED_PATH else None,
            )
    _no_errors(scenario)
    return scenario


def _conditional_pair(
    scenario: Scenario, server: Gunicorn, name: str, path: str, label: str
) -> list[Entry]:
    """A full hit and an ``If-None-Match`` hit of ``path``, checked once."""
    server.get(path)
    status, headers, _ = server.get(path)
    etag = headers.get("ETag")
    if status != 200 or headers.get("X-Cache") != "HIT" or not etag:
        raise RuntimeError(f"{name} {path}: the second request was not a hit with an ETag")
    condition = {"If-None-Match": etag}
    status, _, body = server.get(path, condition)
    if status != 304 or body:
        raise RuntimeError(f"{name} {path}: If-None-Match answered {status}, not 304")
    key = f"{name}{path.replace('/', '_')}"
    full = scenario.contender(f"{key}_full", f"full hit (200){label}")
    not_modified = scenario.contender(f"{key}_304", f"If-None-Match hit (304){label}")
    return [Entry(full, server, path, {}), Entry(not_modified, server, path, condition)]


# Offered to the near cache at its default bounds (10,000 entries, 64 MiB):
# small values stop at the entry bound, 8 KiB ones at the byte bound.
NEAR_FILLS = ((10_000, 200), (10_000, 1024), (10_000, 8192))


def near_cache_memory(options: Options, redis_server: RedisServer) -> Scenario:
    """10. A gunicorn worker's resident size before and after its near
    cache is filled to the default bounds (one worker does the whole fill)."""
    scenario = Scenario(
        10, "Near cache resident size per worker, default bounds", "MiB", "growth_mib"
    )
    scenario.columns = ["entries", "kept_mib", "growth_mib", "bytes_per_entry", "freed_mib"]
    mib = 1024 * 1024
    with serving(["near_memory"], {"REDIS_URL": redis_server.url}, options.logs) as servers:
        server = servers["near_memory"]
        for count, size in NEAR_FILLS:
            c = scenario.contender(f"near_{size}", f"{count} values of {size} B offered")
            for _ in range(max(1, options.rounds // 3)):
                # Tens of thousands of round trips in one request: seconds, not ms.
                fill = f"{NEAR_FILL_PATH}?count={count}&size={size}"
                status, _, body = server.get(fill, timeout=300)
                if status != 200:
                    raise RuntimeError(f"the near-cache fill answered {status}")
                found = json.loads(body)
                growth = found["after"] - found["before"]
                c.add("entries", found["entries"])
                c.add("kept_mib", found["bytes"] / mib)
                c.add("growth_mib", growth / mib)
                c.add("bytes_per_entry", growth / max(1, found["entries"]))
                c.add("freed_mib", (found["after"] - found["flushed"]) / mib)
            scenario.notes.append(
                f"bounds: {found['max_entries']} entries, {found['max_bytes'] // mib} MiB"
            )
            redis_server.admin().flushdb()
    scenario.notes = sorted(set(scenario.notes))
    scenario.notes.append(
        "growth: RSS after the fill minus before (gc.collect() both times); freed: what "
        "flushing gave back to the system (CPython keeps some of it)"
    )
    return scenario


# The probe's bound (REDIS_HEALTH_TIMEOUT's default): the worst latency is
# reported against it.
HEALTH_TIMEOUT = 1.0


def health_storm(options: Options) -> Scenario:
    """5. ``/health/redis`` hammered while Redis is down: refusing
    connections (killed), or accepting them and never answering (hung)."""
    scenario = Scenario(5, f"Health probe storm, Redis down (GET {HEALTH_PATH})", "req/s", "rps")
    scenario.columns = [
        "rps",
        "p99_ms",
        "max_over_timeout",
        "connections",
        "pings",
        "connections_per_1k_requests",
    ]
    silent = SilentRedis()
    try:
        modes = {"refused": f"redis://127.0.0.1:{free_port()}/0", "hung": silent.url}
        with ExitStack() as stack:
            servers: dict[str, Gunicorn] = {}
            for mode, url in modes.items():
                server = Gunicorn(
                    "health", {"REDIS_URL": url}, options.logs / f"gunicorn-health-{mode}.log"
                )
                stack.callback(server.stop)
                servers[mode] = server
            ceiling_server = Gunicorn("ceiling", {}, options.logs / "gunicorn-ceiling-5.log")
            stack.callback(ceiling_server.stop)
            status, _, body = servers["refused"].get(HEALTH_PATH)
            if status == 404:
                scenario.skipped = f"no {HEALTH_PATH}"
                return scenario
            scenario.notes.append(
                f"first answer with Redis refusing: {status} {body[:120].decode(errors='replace')}"
            )
            refused = scenario.contender("health_refused", f"{HEALTH_PATH}, Redis refusing")
            hung = scenario.contender("health_hung", f"{HEALTH_PATH}, Redis hung")
            ceiling = scenario.contender("ceiling", "no-I/O view (same server setup)")
            last = [silent.counts()]

            def reset() -> None:
                last[0] = silent.counts()

            def count(entry: Entry, result: load.Load) -> None:
                # Only the hung run's server sees connections, so the counts
                # since the last run are that run's.
                if entry.contender is hung:
                    seen = silent.counts()
                    hung.add("connections", seen[0] - last[0][0])
                    hung.add("pings", seen[1] - last[0][1])
                    last[0] = seen

            alternate(
                options,
                [
                    Entry(refused, servers["refused"], HEALTH_PATH, {}),
                    Entry(hung, servers["hung"], HEALTH_PATH, {}),
                    Entry(ceiling, ceiling_server, CACHED_PATH, {}),
                ],
                warmed=reset,
                after=count,
            )
    finally:
        silent.stop()
    for c in (refused, hung):
        c.figures["max_over_timeout"] = [m / 1000 / HEALTH_TIMEOUT for m in c.figures["max_ms"]]
        c.figures["status_not_2xx_share"] = [
            bad / total if total else 0.0
            for bad, total in zip(c.figures["bad_status"], c.figures["requests"])
        ]
    hung.figures["connections_per_1k_requests"] = [
        1000 * n / r for n, r in zip(hung.figures["connections"], hung.figures["requests"])
    ]
    scenario.notes.append(
        "the hung Redis counts connections opened to it and PINGs received; redis-py "
        "sends its handshake (HELLO) first and, never answered, gives up before any "
        "PING, so each probe that reached the network shows as one connection"
    )
    scenario.ratio("refusing: probe / no-I/O view", refused, ceiling)
    scenario.ratio("hung: probe / no-I/O view", hung, ceiling)
    for c in (refused, hung):
        scenario.checks.append(
            (f"{c.label}: no socket errors", sum(c.figures["socket_errors"]) == 0)
        )
        scenario.checks.append(
            (
                f"{c.label}: worst latency within the {HEALTH_TIMEOUT:g} s bound",
                max(c.figures["max_over_timeout"]) <= 1.0,
            )
        )
    return scenario
