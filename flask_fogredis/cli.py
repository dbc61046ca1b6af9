"""``flask fogredis ...``: check Redis, inspect it and revoke tokens from a shell.

``init_app`` adds the group to ``app.cli``. Other modules add their commands
to :data:`fogredis_cli`, find their state with :func:`command_state` and
report failures with :func:`reported_errors`, so that every command exits
the same way:

- 0: done;
- 1: Redis refused the command, or the configuration is wrong;
- 2: bad usage (click's own);
- 3: Redis cannot be reached: down, unreachable, too slow, credentials
  refused, or no free connection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from ._config import EXTENSION_KEY, Settings, logout_everywhere_lifetime
from ._connections import translated
from ._errors import FogRedisError, RedisUnavailableError
from ._state import AppState

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 3

_PREFIX = "fogredis.config_prefix"


class RedisUnavailableExit(click.ClickException):
    """Redis cannot be reached: the message goes to stderr, the exit code is 3."""

    exit_code = EXIT_UNAVAILABLE


@click.group("fogredis", cls=AppGroup)
@click.option(
    "--prefix",
    "config_prefix",
    metavar="PREFIX",
    help="Config prefix of the FogRedis to use (default: REDIS, or the app's only one).",
)
@click.pass_context
def fogredis_cli(ctx: click.Context, config_prefix: str | None) -> None:
    """This app's Redis: ping it, inspect it, revoke tokens.

    Exit codes: 0 done, 1 Redis refused the command or the configuration is
    wrong, 2 bad usage, 3 Redis cannot be reached.
    """
    ctx.meta[_PREFIX] = config_prefix


def command_state() -> AppState:
    """The state of the FogRedis the running command works on (``--prefix``).
    Raises :class:`click.UsageError` when the app has none by that prefix."""
    states: dict[str, AppState] = current_app.extensions.get(EXTENSION_KEY, {})
    prefix = click.get_current_context().meta.get(_PREFIX)
    if prefix is None:
        prefix = next(iter(states)) if len(states) == 1 else "REDIS"
    if prefix not in states:
        known = ", ".join(sorted(states)) or "none"
        raise click.UsageError(
            f"This app has no FogRedis with config prefix {prefix!r} (it has: {known})."
        )
    return states[prefix]


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the extension's errors into a message on stderr and exit code 3
    (Redis cannot be reached) or 1 (anything else)."""
    try:
        yield
    except RedisUnavailableError as exc:
        raise RedisUnavailableExit(str(exc)) from None
    except FogRedisError as exc:
        raise click.ClickException(str(exc)) from None


@fogredis_cli.command()
def ping() -> None:
    """PING Redis, waiting at most REDIS_HEALTH_TIMEOUT."""
    state = command_state()
    settings = state.settings
    where = settings.target.display
    result = state.probe.result()
    if not result.healthy:
        raise RedisUnavailableExit(f"Redis at {where} {_failure(settings, result.error)}.")
    click.echo(f"PONG from {where} in {result.latency * 1000:.2f} ms")


def _failure(settings: Settings, error: str | None) -> str:
    """What a failed health check's category means, and where to look."""
    url = settings.key("URL")
    if error == "authentication failed":
        return f"refused the credentials: check the user and password in {url}"
    if error == "permission denied":
        return f"refused PING to the user in {url}: its ACL must allow PING"
    if error == "timeout":
        return f"did not answer PING within {settings.health_timeout:g} s"
    if error == "unreachable":
        return f"cannot be reached: check the host and port in {url}"
    if error == "loading":
        return "is still loading its dataset: try again shortly"
    return f"answered PING with an error ({error})"


@fogredis_cli.command()
def info() -> None:
    """Show the server and the pool: version, role, memory, clients, keys."""
    state = command_state()
    settings = state.settings
    rows: dict[str, object] = {"url": settings.target.display}
    if settings.target.scheme == "memory":  # the embedded store has no INFO
        rows["server"] = "the embedded in-process store"
    elif settings.target.is_cluster:
        rows.update(_cluster_rows(state))
    else:
        with reported_errors(), translated(settings):
            rows.update(_server_rows(state.client.info()))
    rows["pool"] = (
        f"{settings.pool_size} connections per process, callers wait up to "
        f"{settings.pool_timeout:g} s for a free one"
    )
    width = max(14, *(len(label) + 2 for label in rows))
    for label, value in rows.items():
        click.echo(f"{label + ':':<{width}}{value}")


def _cluster_rows(state: AppState) -> dict[str, object]:
    """One row per node of the cluster: INFO of each primary, the primary of
    each replica, and the nodes marked failing."""
    client: Any = state.client  # a FogRedisCluster
    with reported_errors(), translated(state.settings):
        client.refresh()
        listing: dict[str, dict[str, Any]] = client.cluster_nodes()
    names = {node["node_id"]: address for address, node in listing.items()}
    primaries = sum(1 for node in listing.values() if "master" in node["flags"])
    rows: dict[str, object] = {"nodes": f"{len(listing)}, {primaries} primaries"}
    for address, node in sorted(listing.items()):
        flags = set(node["flags"].split(","))
        known = client.get_node(node_name=address)
        if flags & {"fail", "fail?"}:
            rows[address] = f"failing ({node['flags']})"
        elif "master" not in flags:
            rows[address] = f"replica of {names.get(node['master_id'], node['master_id'])}"
        elif known is None:
            rows[address] = "primary without slots"
        else:
            try:
                found = _server_rows(client.info(target_nodes=known))
            except redis.RedisError as exc:
                rows[address] = f"does not answer ({type(exc).__name__})"
                continue
            rows[address] = "; ".join(
                str(found[name]) for name in ("server", "clients", "memory", "keys")
            )
    return rows


def _server_rows(server: dict[str, Any]) -> dict[str, object]:
    maxmemory = server.get("maxmemory_human") if server.get("maxmemory") else "no limit"
    keyspace = [
        f"{name}={values['keys']}"
        for name, values in server.items()
        if name.startswith("db") and isinstance(values, dict)
    ]
    return {
        "server": (
            f"Redis {server.get('redis_version')} ({server.get('redis_mode', 'standalone')}, "
            f"{server.get('role')}), up {server.get('uptime_in_seconds')} s"
        ),
        "clients": f"{server.get('connected_clients')} connected",
        "memory": (
            f"{server.get('used_memory_human')} used, max {maxmemory}, "
            f"maxmemory-policy {server.get('maxmemory_policy')}"
        ),
        "evicted keys": server.get("evicted_keys"),
        "keys": " ".join(keyspace) or "none",
    }


@fogredis_cli.command()
@click.argument("jti")
@click.option(
    "--ttl",
    "--seconds",
    "ttl",
    type=click.FloatRange(min=1),
    help="Seconds the revocation lasts (default: as long as any token of the app can live). "
    "--seconds is its older name.",
)
@click.option(
    "--identity",
    metavar="IDENTITY",
    help="The token's identity (its sub claim): required on Redis Cluster.",
)
def revoke(jti: str, ttl: float | None, identity: str | None) -> None:
    """Revoke the token whose jti claim is JTI."""
    state = command_state()
    _refuse_embedded_store(state.settings)
    with reported_errors():
        lifetime = ttl if ttl is not None else _longest_token_life(state)
        state.revocations.blocklist(jti, lifetime, identity)
    click.echo(f"Revoked token {jti} {_lasting(lifetime)}.")


@fogredis_cli.command("revoke-user")
@click.argument("identity")
def revoke_user(identity: str) -> None:
    """Log IDENTITY out everywhere: refuse every token of it issued up to now."""
    state = command_state()
    _refuse_embedded_store(state.settings)
    with reported_errors():
        lifetime = _longest_token_life(state)
        state.revocations.revoke_all(identity, lifetime)
    click.echo(f"Revoked every token of {identity} issued up to now {_lasting(lifetime)}.")


def _refuse_embedded_store(settings: Settings) -> None:
    """A command that writes to ``memory://`` would write to this command's
    own process, which ends with it: exit 1 saying so, rather than report
    work that no app will ever see."""
    if settings.target.scheme == "memory":
        raise click.ClickException(
            f"{settings.key('URL')} is memory://: the embedded store lives in the app's "
            "process only, and this command runs in a process of its own, so nothing it "
            "did would reach the app. Call the extension from the app instead (a view or "
            "a shell inside it), or use a redis:// URL."
        )


def _longest_token_life(state: AppState) -> float | None:
    return logout_everywhere_lifetime(state.config.revocation, current_app.config)


def _lasting(seconds: float | None) -> str:
    if seconds is None:
        return "with no expiry (tokens of this app may never expire)"
    return f"for {timedelta(seconds=math.ceil(seconds))}"


@fogredis_cli.command("clear-cache")
@click.argument("namespace")
def clear_cache(namespace: str) -> None:
    """Delete every cache entry of NAMESPACE, cached views included."""
    state = command_state()
    _refuse_embedded_store(state.cache.settings)
    with reported_errors():
        removed = state.cache.clear_namespace(namespace)
    click.echo(f"Removed {removed} entries from cache namespace {namespace!r}.")


@fogredis_cli.command()
@click.argument("urls", nargs=-1, required=True)
def warm(urls: tuple[str, ...]) -> None:
    """Compute and store the cached views at URLS (paths like /reports) now.
    Exits 1 if any answers other than 200."""
    state = command_state()
    _refuse_embedded_store(state.cache.settings)
    with reported_errors():
        results = state.cache.warm(urls)
    for url, status in results.items():
        click.echo(f"{status} {url}")
    failed = [url for url, status in results.items() if status != 200]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} URLs did not answer 200.")
