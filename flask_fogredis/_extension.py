"""The ``FogRedis`` extension: one blocking pool per app, the plain
operations, and the health check."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import redis
from flask import Flask, Request, Response, current_app

# Imported for its command, which it adds to fogredis_cli as any plug-in would.
from . import _import_revocations  # noqa: F401
from ._cache import Ttl, ViewControls, cached_view, make_vary
from ._config import (
    EXTENSION_KEY,
    argument_seconds,
    leeway_of,
    logout_everywhere_lifetime,
    read_config,
)
from ._connections import translated
from ._errors import (
    ConfigurationError,
    InvalidArgumentError,
    NotInitializedError,
    RedisUnavailableError,
    RevocationUnavailableError,
)
from ._health import register_endpoints
from ._index import check_tags
from ._logs import forward_records
from ._memoize import memoize, memoized_of
from ._revocation import decode, install_loader, unavailable_response, watch_jwt_managers
from ._state import AppState, build_state
from ._telemetry import availability_signals, traced_health
from .cli import fogredis_cli

View = TypeVar("View", bound=Callable[..., Any])

logger = logging.getLogger("flask_fogredis")


# Keys of neighbouring extensions that look like ours (REDIS_* is ours):
# set without ours, they were probably meant for FogRedis. A real use of
# the neighbour is told apart by a key that neighbour needs.
_NEIGHBOURS = (("CACHE_REDIS_URL", "CACHE_TYPE", "Flask-Caching", "CACHE_URL"),)


def _warn_of_neighbours_keys(config: Mapping[str, Any], prefix: str) -> None:
    """Log a warning for a neighbour's key set where ours was probably meant."""
    if prefix != "REDIS":
        return  # another prefix (CACHE_REDIS, say) names its own keys
    for theirs, needed, owner, ours in _NEIGHBOURS:
        if theirs in config and needed not in config and not config.get(f"{prefix}_{ours}"):
            logger.warning(
                "%s is %s's setting, and %s is not set: FogRedis reads %s_%s.",
                theirs,
                owner,
                needed,
                prefix,
                ours,
            )


_UNSET: Any = object()


def _lifetime(ttl: Any, **older: Any) -> Any:
    """``ttl``, or the one older keyword given in its place; raises
    :class:`InvalidArgumentError` when both are."""
    for name, value in older.items():
        if value is not None and value is not _UNSET:
            if ttl is not None and ttl is not _UNSET:
                raise InvalidArgumentError(f"Give ttl or {name} (its older name), not both.")
            return value
    return ttl


def _required_lifetime(ttl: Any, expire_seconds: Any) -> Any:
    """A revocation's lifetime, which must be given (None: forever)."""
    if ttl is not _UNSET and expire_seconds is not _UNSET:
        raise InvalidArgumentError("Give ttl or expire_seconds (its older name), not both.")
    lifetime = expire_seconds if ttl is _UNSET else ttl
    if lifetime is _UNSET:
        raise InvalidArgumentError("blocklist_token() needs ttl: seconds, or None for forever.")
    return lifetime


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
        config = read_config(app.config, self.config_prefix, first=not states)
        settings = config.connection
        state = build_state(config)
        register_endpoints(app, state)
        states[self.config_prefix] = state
        state.probe.on_change = availability_signals(app, settings.prefix)
        if state.cache_redis is not None:
            own = state.cache_redis
            own.probe.on_change = availability_signals(app, own.settings.prefix)
        app.cli.add_command(fogredis_cli)
        forward_records(app)
        self._warn_if_unsafe(app, state)
        _warn_of_neighbours_keys(app.config, self.config_prefix)
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
        elif target.is_tcp and not target.password and settings.credential_provider is None:
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

    def client_for(self, app: Flask, *, decode: bool = True) -> redis.Redis:
        """``app``'s client, outside any app context: for libraries set up
        next to the app (``SESSION_REDIS``, a limiter's storage).

        With ``decode=False`` the client returns bytes (Flask-Session's
        msgpack payloads need them) on the same pool: no second pool, no
        extra connections. Raises :class:`NotInitializedError` before
        ``init_app(app)``, and :class:`ConfigurationError` where the pool
        cannot give what is asked: decoded replies from a pool that does not
        decode, or bytes from a Cluster client that decodes (set
        ``<prefix>_DECODE_RESPONSES`` to False for it).
        """
        state = app.extensions.get(EXTENSION_KEY, {}).get(self.config_prefix)
        if state is None:
            raise NotInitializedError(
                f"FogRedis (config prefix {self.config_prefix!r}) is not set up on app "
                f"{app.name!r}: call fog.init_app(app) before client_for(app)."
            )
        settings = state.settings
        if decode == settings.decode_responses:
            return state.client  # type: ignore[no-any-return]
        name = settings.key("DECODE_RESPONSES")
        if decode:
            raise ConfigurationError(
                f"{name} is False, so this pool's connections return bytes: use "
                "client_for(app, decode=False), or set it to True."
            )
        undecoded: Callable[[Any], redis.Redis] | None = state.topology.undecoded
        if undecoded is None:
            # A cluster client parses replies in a client per node, built by
            # redis-py: there is no one place to ask for bytes.
            raise ConfigurationError(
                f"On Redis Cluster, client_for(app, decode=False) needs {name} = False "
                "(then every client of this prefix returns bytes)."
            )
        return undecoded(state.pool)

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
        self,
        key: str,
        value: str | bytes | int | float,
        ttl: int | timedelta | None = None,
        *,
        expire: int | timedelta | None = None,
    ) -> bool:
        """Store ``value`` at ``key``, for ``ttl`` seconds if given
        (``expire=`` is the older name of ``ttl``)."""
        ttl = _lifetime(ttl, expire=expire)
        if ttl is None:
            return bool(self._call("SET", key, value))
        return bool(self._call("SET", key, value, "EX", _whole_seconds(ttl)))

    def delete(self, *keys: str) -> int:
        """Delete ``keys``; returns how many existed."""
        if len(keys) > 1 and self.state().topology.multi_key_commands_span_nodes:
            # Keys may be in different slots, which one DEL cannot span.
            return sum(self.delete(key) for key in keys)
        return int(self._call("DEL", *keys)) if keys else 0

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return bool(self._call("EXISTS", key))

    def expire(
        self,
        key: str,
        ttl: int | timedelta | None = None,
        *,
        seconds: int | timedelta | None = None,
    ) -> bool:
        """Set a time to live of ``ttl`` seconds on ``key``; False if it does
        not exist (``seconds=`` is the older name of ``ttl``)."""
        ttl = _lifetime(ttl, seconds=seconds)
        if ttl is None:
            raise InvalidArgumentError("expire() needs ttl, a number of seconds >= 1.")
        return bool(self._call("EXPIRE", key, _whole_seconds(ttl)))

    def ttl(self, key: str) -> int:
        """Seconds ``key`` has left: -2 if missing, -1 if it never expires."""
        return int(self._call("TTL", key))

    def health_check(self) -> dict[str, Any]:
        """PING on a connection of its own, within ``REDIS_HEALTH_TIMEOUT``.

        Returns ``healthy``, ``connected``, ``latency_ms``, ``pool_size``,
        ``pool_in_use``, ``pool_waiting`` and ``error`` (a short category, or
        None). Never raises for an outage.
        """
        state = self.state()
        return traced_health(state.tracer, state.probe.check)

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
        lifetime = logout_everywhere_lifetime(state.config.revocation, current_app.config)
        state.revocations.revoke_all(identity, lifetime)

    def blocklist_token(
        self,
        jti: str,
        ttl: int | float | timedelta | None = _UNSET,
        identity: object = None,
        *,
        expire_seconds: int | float | timedelta | None = _UNSET,
    ) -> None:
        """Revoke ``jti`` for ``ttl`` seconds (None: forever). On Redis
        Cluster pass the token's ``identity`` too (:class:`TokenError`
        otherwise). ``expire_seconds=`` is the older name of ``ttl``."""
        lifetime = _required_lifetime(ttl, expire_seconds)
        self.state().revocations.blocklist(jti, lifetime, identity)

    def is_token_blocklisted(self, jti: str, identity: object = None) -> bool:
        """Whether ``jti`` was revoked (by ``blocklist_token`` or
        ``revoke_token``); on Redis Cluster pass the token's ``identity``
        too. Raises :class:`RedisUnavailableError` when Redis cannot answer."""
        return self.state().revocations.is_blocklisted(jti, identity)

    # The original names, kept working: code ported from the service that
    # FogRedis replaces calls them.
    blacklist_token = blocklist_token
    is_token_blacklisted = is_token_blocklisted

    # -- caching ----------------------------------------------------------

    def cache_get(self, namespace: str, cache_key: str) -> Any:
        """The cached value as it was stored (a ``str`` as ``str``, ``bytes``
        as ``bytes``, other values as the codec gives them back: with JSON, a
        tuple as a list), or None on a miss. Fails open: when Redis fails it
        returns None (the error is logged, rate-limited, and counted)."""
        return self.state().cache.get(namespace, cache_key)

    def cache_set(
        self,
        namespace: str,
        cache_key: str,
        value: Any,
        ttl: int | float | timedelta | None = None,
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds (default
        ``REDIS_CACHE_DEFAULT_TTL``): ``str`` and ``bytes`` as given, anything
        else through ``REDIS_CACHE_SERIALIZER`` (JSON by default). Raises
        :class:`CacheValueError` naming a type the codec cannot take, with
        nothing stored. Fails open: False when Redis fails."""
        return self.state().cache.set(namespace, cache_key, value, ttl)

    def memoize(
        self,
        namespace: str,
        ttl: int | float | timedelta | None = None,
        key_func: Callable[..., str] | None = None,
        *,
        tags: Iterable[str] | Callable[..., Iterable[str]] = (),
        key_self: bool = False,
    ) -> Callable[[View], View]:
        """Cache a function's return values (``async def`` too) by its
        arguments, for ``ttl`` seconds (default ``REDIS_CACHE_DEFAULT_TTL``).

        Calls that bind the same way share an entry (``f(1, b=2)`` and
        ``f(1, 2)``). Arguments must be JSON values, keyed by a hash of their
        canonical JSON (a tuple keys like a list); anything else raises
        :class:`InvalidArgumentError` naming the type, unless
        ``key_func(*args, **kwargs)`` returns the key. A first parameter
        named ``self`` or ``cls`` is not part of the key unless
        ``key_self=True`` (then ``repr(self)`` is). ``tags`` (names, or a
        callable of the arguments returning them) let
        :meth:`invalidate_tags` drop the entry. Return values go through the
        codec (:class:`CacheValueError` if it cannot take one). A hit is one
        round trip; when Redis fails, the function is called.
        """
        if ttl is not None:
            argument_seconds("ttl", ttl)
        return memoize(lambda: self.state().cache, namespace, ttl, key_func, tags, key_self)

    def delete_memoized(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """Drop the entry of ``fn(*args, **kwargs)`` or, with no arguments,
        every entry of ``fn`` (of every instance, for a method); returns how
        many. Costs one command per entry dropped. Raises
        :class:`InvalidArgumentError` when ``fn`` is not memoized, and
        :class:`RedisUnavailableError` when Redis fails."""
        memo, instance = memoized_of(fn)
        cache = self.state().cache
        if not args and not kwargs:
            return memo.delete(cache, (), {})
        return memo.delete(cache, (*instance, *args), kwargs)

    def invalidate_tags(self, *tags: str) -> int:
        """Drop every entry (cached views and memoized calls) carrying any of
        ``tags``; returns how many. Costs one command per entry dropped.
        Raises :class:`InvalidArgumentError` for a tag that is not a
        non-empty string, and :class:`RedisUnavailableError` when Redis
        fails."""
        return self.state().cache.invalidate_tags(check_tags(tags))

    def delete_cached_url(self, url: str) -> int:
        """Drop every cached copy of ``url`` (a path as the app routes it,
        with its query string if any: ``/items?page=2``; a full URL's path
        and query are used) on every host and every variant; returns how
        many. Raises :class:`InvalidArgumentError` when ``url`` is not a
        path, and :class:`RedisUnavailableError` when Redis fails."""
        return self.state().cache.delete_url(url)

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
        ttl: int | float | timedelta | Callable[[Response], float | timedelta] | None = None,
        *,
        vary_on_headers: Iterable[str] = (),
        vary_on_identity: bool = False,
        key_func: Callable[[Request], str] | None = None,
        public: bool = False,
        query_params: Iterable[str] | None = None,
        unless: Callable[[], bool] | None = None,
        response_filter: Callable[[Response], bool] | None = None,
        tags: Iterable[str] | Callable[..., Iterable[str]] = (),
        stale_ttl: int | float | timedelta = 0,
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
        with any other query parameter bypass the cache too.

        ``unless()`` returning true skips the cache for that request
        (``X-Cache: BYPASS``); ``response_filter(response)`` returning false
        keeps a response from being stored; ``ttl`` may be a callable of the
        response returning its seconds. ``tags`` (names, or a callable of the
        view's arguments returning them) let :meth:`invalidate_tags` drop the
        entry; :meth:`delete_cached_url` drops every copy of one URL. Stored
        responses carry a strong ``ETag`` (unless the view set one), and a
        request whose ``If-None-Match`` names it gets ``304 Not Modified``.
        With ``stale_ttl``, an entry past its ``ttl`` is served for that many
        seconds more (``X-Cache: STALE``) while one request recomputes it,
        and served instead of an error if the view raises while doing so.

        Raises :class:`InvalidArgumentError` for a ``query_params`` entry or
        tag that is not a non-empty string, or a bad ``ttl`` or ``stale_ttl``.
        """
        if ttl is not None and not callable(ttl):
            # At decoration, not at the first request: a bad ttl is the
            # caller's mistake, and an error at import names it at once.
            argument_seconds("ttl", ttl)
        stale = argument_seconds("stale_ttl", stale_ttl, allow_zero=True)
        vary = make_vary(vary_on_headers, vary_on_identity, key_func, public, query_params)
        controls = ViewControls(
            unless, response_filter, tags if callable(tags) else check_tags(tags), stale
        )
        ttl_given: Ttl = ttl
        return cached_view(lambda: self.state().cache, namespace, ttl_given, vary, controls)


def _whole_seconds(ttl: int | float | timedelta) -> int:
    return int(argument_seconds("ttl", ttl, whole=True))
