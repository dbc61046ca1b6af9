"""The ``FogRedis`` extension: one blocking pool per app, the plain
operations, and the health check."""

from __future__ import annotations

import atexit
import functools
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import redis
from flask import Flask, Request, current_app

from ._cache import Cache, cached_view, glob_escape, make_vary
from ._config import EXTENSION_KEY, Settings, argument_seconds, read_settings, to_bool, to_int
from ._connections import translated
from ._errors import (
    ConfigurationError,
    InvalidArgumentError,
    NotInitializedError,
    RedisUnavailableError,
    RevocationUnavailableError,
)
from ._health import read_endpoint_settings, register_endpoints
from ._metrics import SharedStats, shared_metrics
from ._near import NearCache
from ._revocation import (
    Revocations,
    decode,
    install_loader,
    leeway_of,
    token_lifetime,
    unavailable_response,
    watch_jwt_managers,
)
from ._sentinel import SentinelBlockingPool
from ._stats import Stats
from ._topology import build_client, build_probe, key_clearer
from .cli import fogredis_cli

View = TypeVar("View", bound=Callable[..., Any])

logger = logging.getLogger("flask_fogredis")


class AppState:
    """What one app holds for one config prefix: settings, pool, client, and
    the parts built on them."""

    def __init__(self, settings: Settings, config: Mapping[str, Any]) -> None:
        self.settings = settings
        self.endpoints = read_endpoint_settings(config, settings)
        # Shared between gunicorn's workers when PROMETHEUS_MULTIPROC_DIR is set.
        shared = shared_metrics() if self.endpoints.metrics_enabled else None
        prefix = settings.prefix
        self.stats = Stats() if shared is None else SharedStats(shared, prefix)
        # Typed as for one Redis: for Cluster they are a RedisCluster and its
        # pools seen as one (ClusterPools), with the same commands and stats.
        self.pool: redis.BlockingConnectionPool
        self.client: redis.Redis
        self.pool, self.client = build_client(
            settings, shared.pool_observer(prefix, settings.pool_size) if shared else None
        )
        self.probe = build_probe(
            settings,
            self.pool,
            self.client,
            collect_info=self.endpoints.details_token is not None,
            on_result=shared.probe_observer(prefix) if shared else None,
        )
        self.revocations = Revocations(self, config)
        self.cache = Cache(self, config)
        self.near = self._near_caches(config)
        _open_states.add(self)

    def _near_caches(self, config: Mapping[str, Any]) -> NearCache | None:
        """The near cache of the main Redis (revocations, and the cache when
        it shares that Redis); the cache's own Redis gets one of its own."""
        key = self.settings.key
        if not to_bool(key("NEAR_CACHE"), config[key("NEAR_CACHE")]):
            return None
        if "memory" in (self.settings.target.scheme, self.cache.settings.target.scheme):
            raise ConfigurationError(
                f"{key('NEAR_CACHE')} needs a real Redis (6 or newer): memory:// cannot send "
                "invalidations. Turn it off for the embedded store."
            )
        make = functools.partial(
            NearCache,
            max_entries=to_int(
                key("NEAR_CACHE_MAX_ENTRIES"), config[key("NEAR_CACHE_MAX_ENTRIES")], 1
            ),
            max_bytes=to_int(
                key("NEAR_CACHE_MAX_BYTES"), config[key("NEAR_CACHE_MAX_BYTES")], 1024
            ),
            on_event=self.stats.count,
        )
        if self.cache.owns_pool:
            near = make(self.settings, [self.revocations.prefix], master=_master(self.pool))
            self.cache.near = make(
                self.cache.settings, [self.cache.prefix], master=_master(self.cache.pool)
            )
        else:
            near = make(
                self.settings,
                [self.revocations.prefix, self.cache.prefix],
                master=_master(self.pool),
            )
            self.cache.near = near
        self.revocations.near = near
        return near

    def reset(self) -> None:
        """Delete every key this state wrote (under its key prefix, on its
        Redis and on the cache's), zero its counters and forget the last
        health check: a clean start for the next test."""
        pattern = glob_escape(self.settings.key_prefix) + ":*"
        with translated(self.settings):
            key_clearer(self.settings)(self.client, pattern, None)
        if self.cache.owns_pool:
            self.cache.clear_matching(pattern)
        self.stats.reset()
        self.probe.forget()
        for near in {self.near, self.cache.near} - {None}:
            near.flush()  # type: ignore[union-attr]

    def close(self) -> None:
        """Close every connection; the pool reopens them on the next use
        (and the near cache restarts its listener on the next use)."""
        self.probe.close()
        self.pool.disconnect()
        self.cache.close()
        if self.near is not None:
            self.near.close()


def _master(pool: redis.ConnectionPool) -> SentinelBlockingPool | None:
    """The pool a near cache's channel follows: a Sentinel pool's master."""
    return pool if isinstance(pool, SentinelBlockingPool) else None


_open_states: weakref.WeakSet[AppState] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """Close every app state of this process (at exit, and between tests)."""
    for state in list(_open_states):
        try:
            state.close()
        except Exception:  # exiting: a failure to close must not mask the real exit
            logger.debug("closing a pool at exit failed", exc_info=True)


def _seconds(name: str, value: int | float | timedelta) -> int:
    """Whole seconds > 0 from an int or a timedelta (Redis counts in seconds)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 1 <= value < float("inf")  # NaN too: it compares false
    ):
        raise InvalidArgumentError(
            f"{name} must be a number of seconds >= 1 or a timedelta, not {value!r}"
        )
    return int(value)


class FogRedis:
    """Redis for a Flask app: ``FogRedis(app)`` or ``fog.init_app(app)``.

    One object serves any number of apps; each app gets its own pool from its
    own config, kept in ``app.extensions["fogredis"]``.
    """

    def __init__(self, app: Flask | None = None, *, config_prefix: str = "REDIS") -> None:
        self.config_prefix = config_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read and validate the config and bind a pool to ``app``.

        Raises :class:`ConfigurationError` for a bad value. Calling it again
        for the same app and prefix does nothing.
        """
        states: dict[str, AppState] = app.extensions.setdefault(EXTENSION_KEY, {})
        if self.config_prefix in states:
            return
        # Only the app's first FogRedis checks revocations unless told to: a
        # second one (a cache's Redis, say) must not add a round trip to
        # every request, nor refuse tokens when only it is down.
        app.config.setdefault(f"{self.config_prefix}_JWT_BLOCKLIST", not states)
        settings = read_settings(app.config, self.config_prefix)
        state = AppState(settings, app.config)
        register_endpoints(app, state)
        states[self.config_prefix] = state
        app.cli.add_command(fogredis_cli)
        self._warn_if_unsafe(app, state)
        if state.revocations.auto_register:
            state.cache.warn_if_it_can_fill(settings)
        self._hook_revocation(app, state)

    @staticmethod
    def _hook_revocation(app: Flask, state: AppState) -> None:
        if not state.revocations.auto_register:
            return
        watch_jwt_managers()
        install_loader(app)
        app.register_error_handler(RevocationUnavailableError, unavailable_response)

    @staticmethod
    def _warn_if_unsafe(app: Flask, state: AppState) -> None:
        if app.debug or app.testing:
            return
        settings = state.settings
        tokens = {
            "HEALTH_DETAILS_TOKEN": state.endpoints.details_token,
            "METRICS_TOKEN": state.endpoints.metrics_token,
        }
        for name, token in tokens.items():
            if token is not None and len(token) < 16:
                logger.warning(
                    "%s is shorter than 16 characters: use a random one, such as "
                    "secrets.token_urlsafe().",
                    settings.key(name),
                )
        target = settings.target
        if target.scheme == "memory":
            logger.warning(
                "%s is memory://: the embedded store lives in this process only "
                "and is lost on restart; set a redis:// URL for production.",
                settings.key("URL"),
            )
        elif target.is_tcp and not target.password:
            logger.warning(
                "%s (%s) has no password: production Redis needs one "
                "(requirepass, then redis://:password@host:6379/0).",
                settings.key("URL"),
                target.display,
            )

    def state(self) -> AppState:
        """The current app's state; raises :class:`NotInitializedError` (a
        RuntimeError) outside an app context or before ``init_app``."""
        # Every operation starts here: one context lookup, not two.
        try:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        except RuntimeError:
            raise NotInitializedError(
                "FogRedis needs an application context: call it inside a request, "
                "or wrap the code in `with app.app_context():`."
            ) from None
        state = app.extensions.get(EXTENSION_KEY, {}).get(self.config_prefix)
        if state is None:
            raise NotInitializedError(
                f"FogRedis (config prefix {self.config_prefix!r}) is not set up on app "
                f"{app.name!r}: call fog.init_app(app) in your app factory."
            )
        return state  # type: ignore[no-any-return]

    @property
    def client(self) -> redis.Redis:
        """The current app's ``redis.Redis``, bound to its pool; for a
        ``redis+cluster://`` URL, a ``redis.cluster.RedisCluster``."""
        return self.state().client

    @property
    def pool(self) -> redis.BlockingConnectionPool:
        """The current app's blocking connection pool (for Cluster, its
        per-node pools, seen as one)."""
        return self.state().pool

    def _call(self, command: str, *args: Any, **options: Any) -> Any:
        state = self.state()
        try:
            with translated(state.settings):
                return state.client.execute_command(command, *args, **options)
        except RedisUnavailableError:
            state.stats.count("redis_errors")
            raise

    def get(self, key: str) -> str | bytes | None:
        """The value at ``key``, or None."""
        return self._call("GET", key)  # type: ignore[no-any-return]

    def set(
        self, key: str, value: str | bytes | int | float, expire: int | timedelta | None = None
    ) -> bool:
        """Store ``value`` at ``key``, for ``expire`` seconds if given."""
        if expire is None:
            return bool(self._call("SET", key, value))
        return bool(self._call("SET", key, value, "EX", _seconds("expire", expire)))

    def delete(self, *keys: str) -> int:
        """Delete ``keys``; returns how many existed."""
        if len(keys) > 1 and self.state().settings.target.is_cluster:
            # Keys may be in different slots, which one DEL cannot span.
            return sum(self.delete(key) for key in keys)
        return int(self._call("DEL", *keys)) if keys else 0

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return bool(self._call("EXISTS", key))

    def expire(self, key: str, seconds: int | timedelta) -> bool:
        """Set a time to live on ``key``; False if it does not exist."""
        return bool(self._call("EXPIRE", key, _seconds("seconds", seconds)))

    def ttl(self, key: str) -> int:
        """Seconds ``key`` has left: -2 if missing, -1 if it never expires."""
        return int(self._call("TTL", key))

    def health_check(self) -> dict[str, Any]:
        """PING on a connection of its own, within ``REDIS_HEALTH_TIMEOUT``.

        Returns ``healthy``, ``connected``, ``latency_ms``, ``pool_size``,
        ``pool_in_use``, ``pool_waiting`` and ``error`` (a short category, or
        None). Never raises for an outage.
        """
        return self.state().probe.check()

    def disconnect(self) -> None:
        """Close the current app's connections; harmless to repeat. The pool
        reconnects on the next command."""
        self.state().close()

    # -- JWT revocation ---------------------------------------------------

    def revoke_token(self, token: Mapping[str, Any] | str) -> bool:
        """Revoke a token (its decoded payload, as ``get_jwt()`` returns, or
        the encoded JWT) for exactly as long as it could still be accepted.

        Returns False, writing nothing, if it has already expired or was
        already revoked: of concurrent calls for one token exactly one gets
        True, so a refresh endpoint can make its token work once. Raises
        :class:`TokenError` for a token without ``jti`` and
        :class:`RedisUnavailableError` if the revocation could not be stored.
        """
        state = self.state()
        return state.revocations.revoke(decode(token), leeway_of(current_app.config))

    def revoke_all_tokens(self, identity: object) -> None:
        """Log out everywhere: refuse every token of ``identity`` issued up to
        now (in the same second included); later tokens are accepted."""
        state = self.state()
        lifetime = state.revocations.max_lifetime
        if lifetime is None:
            config = current_app.config
            lifetime = token_lifetime(config, leeway_of(config))
        state.revocations.revoke_all(identity, lifetime)

    def blacklist_token(
        self,
        jti: str,
        expire_seconds: int | float | timedelta | None,
        identity: object = None,
    ) -> None:
        """Revoke ``jti`` for ``expire_seconds`` (None: forever). On Redis
        Cluster pass the token's ``identity`` too (:class:`TokenError`
        otherwise)."""
        self.state().revocations.blacklist(jti, expire_seconds, identity)

    def is_token_blacklisted(self, jti: str, identity: object = None) -> bool:
        """Whether ``jti`` was revoked (by ``blacklist_token`` or
        ``revoke_token``); on Redis Cluster pass the token's ``identity``
        too. Raises :class:`RedisUnavailableError` when Redis cannot answer."""
        return self.state().revocations.is_blacklisted(jti, identity)

    # -- caching ----------------------------------------------------------

    def cache_get(self, namespace: str, cache_key: str) -> str | bytes | None:
        """The cached value, or None on a miss. Fails open: when Redis fails
        it returns None (the error is logged, rate-limited, and counted)."""
        return self.state().cache.get(namespace, cache_key)

    def cache_set(
        self,
        namespace: str,
        cache_key: str,
        value: str | bytes,
        ttl: int | float | timedelta | None = None,
    ) -> bool:
        """Store ``value`` (str or bytes, as given) for ``ttl`` seconds
        (default ``REDIS_CACHE_DEFAULT_TTL``). Fails open: False when Redis
        fails."""
        return self.state().cache.set(namespace, cache_key, value, ttl)

    def cache_delete(self, namespace: str, cache_key: str) -> bool:
        """Delete one entry; True if it existed. Raises
        :class:`RedisUnavailableError` when Redis fails."""
        return self.state().cache.delete(namespace, cache_key)

    def cache_clear_namespace(self, namespace: str) -> int:
        """Delete every entry of ``namespace``, cached views included, without
        blocking Redis; returns how many. Raises when Redis fails."""
        return self.state().cache.clear_namespace(namespace)

    def cache_warm(self, urls: Iterable[str]) -> dict[str, int]:
        """Compute and store the cached views at ``urls`` now; returns each
        URL's status code."""
        return self.state().cache.warm(urls)

    def cached(
        self,
        namespace: str,
        ttl: int | float | timedelta | None = None,
        *,
        vary_on_headers: Iterable[str] = (),
        vary_on_identity: bool = False,
        key_func: Callable[[Request], str] | None = None,
        public: bool = False,
        query_params: Iterable[str] | None = None,
    ) -> Callable[[View], View]:
        """Cache a Flask view's GET (and HEAD) responses with status 200;
        ``async def`` views too.

        The key is the scheme, host, path and the query string in canonical
        order, and the named request headers, the JWT identity, or
        ``key_func(request)`` when asked. A hit costs one round trip and
        skips the view. Concurrent misses compute the view once. Responses
        that set a cookie, say ``Cache-Control: private`` or ``no-store``,
        read the session, or vary on a header not named here are never
        stored. When Redis fails, the view is computed and served.

        Requests with credentials (an Authorization header, a JWT or session
        cookie) are computed and never stored (``X-Cache: BYPASS``) unless
        ``vary_on_identity``, ``key_func`` or ``public=True`` says how answers
        differ per caller. With ``query_params`` (parameter names), requests
        with any other query parameter bypass the cache too. Raises
        :class:`InvalidArgumentError` for a ``query_params`` entry that is
        not a non-empty string.
        """
        if ttl is not None:
            # At decoration, not at the first request: a bad ttl is the
            # caller's mistake, and an error at import names it at once.
            argument_seconds("ttl", ttl)
        vary = make_vary(vary_on_headers, vary_on_identity, key_func, public, query_params)
        return cached_view(lambda: self.state().cache, namespace, ttl, vary)
