"""Caching: namespaced entries, and a decorator that caches Flask views.

Keys are ``<prefix>:cache:<n>:<namespace>:<kind>:<key>`` where ``<n>`` is the
namespace's length in bytes. The length makes the namespace part
unambiguous, so no namespace (``a`` vs ``a:b``) can reach into another's
entries, and clearing matches ``<prefix>:cache:<n>:<namespace>:*`` with every
glob character escaped. Values go through the codec (``_codec``): nothing is
ever pickled.

Indexes (``_index``) name the entries of one tag (``<prefix>:cache:tag:...``)
and of one URL (``<prefix>:cache:url:...``); they start with a letter, so no
namespace reaches them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, Union, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
from flask import Request, Response, current_app, make_response, request
from flask.globals import request_ctx
from redis.client import NEVER_DECODE
from redis.crc import key_slot
from werkzeug.datastructures import Headers
from werkzeug.sansio.request import Request as SansioRequest

from ._codec import decode, encode
from ._config import CacheSettings, Settings, argument_seconds, identity_claim
from ._connections import translated
from ._errors import CacheKeyError, FogRedisError, InvalidArgumentError
from ._forking import renew_locks_after_fork
from ._index import Indexes, check_tags
from ._logs import RateLimitedLog
from ._probe import parse_info
from ._telemetry import invalidated, looked_up, mark_near, observe_view, watching_views
from ._telemetry import stored as announce_store
from ._topology import key_clearer, single_connection

if TYPE_CHECKING:
    from ._near import NearCache
    from ._stats import Stats

logger = logging.getLogger("flask_fogredis")

View = TypeVar("View", bound=Callable[..., Any])
T = TypeVar("T")
# Union, not |: type aliases are evaluated at import, and Python 3.9 has no |.
Ttl = Union[float, timedelta, Callable[[Response], Union[float, timedelta]], None]

# Set on requests made by cache_warm: compute and store even on a hit.
# WSGI environ keys from HTTP headers all start with HTTP_, so no client can
# set this one.
WARM_ENVIRON_KEY = "fogredis.cache_warm"
# Headers that belong to one response, not to the cached content.
_NOT_STORED = frozenset({"content-length", "x-cache", "date", "age", "set-cookie"})
_GLOB_SPECIAL = frozenset("*?[]\\")
_INVALIDATION_WAIT = 0.1
# KEYS: value, lock. ARGV: token, blob, ttl in ms.
_STORE_IF_LOCKED = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
end
return 1
"""
# KEYS: lock. ARGV: token.
_RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# The startup look at maxmemory-policy waits no longer than this: it only
# decides whether to log a warning.
_POLICY_CHECK_BUDGET = 0.5
# Namespaces whose key base is kept; callers may make namespaces of user
# input, so the memo is bounded (beyond it, bases are computed each time).
_MAX_REMEMBERED_NAMESPACES = 1024


def _check(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise CacheKeyError(f"The cache {kind} must be a non-empty string, not {name!r}.")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise CacheKeyError(f"The cache {kind} {name!r} is not valid Unicode.") from None
    return name


def check_name(kind: str, name: object) -> str:
    """``name`` if it is a non-empty string; raises :class:`CacheKeyError`
    naming ``kind`` otherwise."""
    return _check(kind, name)


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def cache_prefix(key_prefix: str) -> str:
    """What every cache key starts with."""
    return f"{key_prefix}:cache:"


class Cache:
    """The cache of one app: its own Redis if ``<prefix>_CACHE_URL`` is set,
    the main pool otherwise."""

    # OpenTelemetry's tracer when tracing is on (set by the state builder).
    tracer: Any = None

    def __init__(
        self,
        client: Any,
        section: CacheSettings,
        *,
        key_prefix: str,
        stats: Stats,
        near: NearCache | None = None,
    ) -> None:
        """``client`` is the cache's Redis (its own, or the main one);
        ``key_prefix`` the app's: two apps sharing one cache Redis must not
        read each other's entries."""
        self.settings = section.connection
        self.owns_pool = section.own
        self.client = client
        self.default_ttl = section.default_ttl
        self.lock_timeout = section.lock_timeout
        self.codec = section.codec
        self._prefix = cache_prefix(key_prefix)
        self._bases: dict[str, str] = {}
        self.near = near
        # Where requests carry credentials, read from the app config at the
        # first cached request (the config may still change after init_app).
        self._credentials: _Credentials | None = None
        self._stats = stats
        # Locks this process took and could not release (Redis failed), by
        # key and token: a lock outlives an outage with AOF, and every request
        # for the view would wait it out. This process releases them at its
        # next miss or wait once Redis answers (other processes cannot).
        self._orphans: dict[tuple[str, str], tuple[str, float]] = {}
        self._orphans_lock = threading.Lock()
        self._orphans_retry_at = 0.0
        renew_locks_after_fork(self, "_orphans_lock")
        self._log = RateLimitedLog(logger, interval=30.0)
        self._clear = key_clearer(self.settings)
        # Scripts need the value and its lock on one server (on Cluster, in
        # one slot: see serve), not on the embedded store (Lua is optional
        # there). Given as bytes, a script is not encoded by the client, which
        # would make a cluster client connect now.
        self._scripts = self.settings.target.scheme != "memory"
        if self._scripts:
            self._store_script = self.client.register_script(_STORE_IF_LOCKED.encode())
            self._release_script = self.client.register_script(_RELEASE_IF_OURS.encode())
        self.indexes = Indexes(client, self._scripts)

    # -- keys -----------------------------------------------------------

    @property
    def prefix(self) -> str:
        """What every cache key starts with."""
        return self._prefix

    def namespace_prefix(self, namespace: str) -> str:
        base = self._bases.get(namespace)
        if base is None:
            # Checked and encoded once per namespace, not on every hit.
            _check("namespace", namespace)
            base = f"{self._prefix}{len(namespace.encode())}:{namespace}:"
            if len(self._bases) < _MAX_REMEMBERED_NAMESPACES:
                self._bases[namespace] = base
        return base

    def entry_key(self, namespace: str, key: str) -> str:
        return self.namespace_prefix(namespace) + "k:" + _check("key", key)

    def tag_index(self, tag: str) -> str:
        """The index of the entries tagged ``tag`` (any namespace)."""
        return f"{self._prefix}tag:{len(tag.encode())}:{tag}"

    def url_index(self, path: str, query: str) -> str:
        """The index of every cached copy of one URL: its path as the app
        routes it and its canonical query string (every host, every vary)."""
        text = f"{path}\n{query}".encode("utf-8", "surrogatepass")
        return f"{self._prefix}url:{hashlib.sha256(text).hexdigest()[:40]}"

    # -- plumbing -------------------------------------------------------

    def _run(self, *args: Any, **options: Any) -> Any:
        with translated(self.settings):
            return self.client.execute_command(*args, **options)

    def _failed(self, namespace: str, exc: FogRedisError) -> None:
        self._stats.cache_event(namespace, "errors")
        self._log.warning(
            f"cache-{namespace}", "Cache %r unavailable, serving without it: %s", namespace, exc
        )

    def _ttl_ms(self, ttl: float | timedelta | None) -> int:
        seconds = self.default_ttl if ttl is None else argument_seconds("ttl", ttl)
        return max(1, round(seconds * 1000))

    def _read(self, key: str, parse: Callable[[Any, bool], T | None]) -> T | None:
        """The entry at ``key`` parsed: from the near cache when it holds a
        copy that ``parse(local, True)`` accepts (not past its own expiry),
        else from Redis in one GET (the near cache keeps it). None on a miss.
        A view's :class:`_Entry` (never changed once made) is kept by the
        near cache in place of its blob, and given to ``parse`` as ``local``
        from then on. Raises :class:`FogRedisError` when Redis fails."""
        near = self.near
        pending = None
        if near is not None:
            found = near.lookup([key])
            if found is not None:
                local = found[0]
                if local is None:
                    return None
                # Redis's own expiry notice may still be on its way.
                parsed = parse(local, True)
                if parsed is not None:
                    if isinstance(parsed, _Entry) and parsed is not local:
                        # Parsed once: later hits skip the JSON.
                        near.replace(key, local, parsed)
                    return parsed
            pending = near.begin([key])
        try:
            blob = self._run("GET", key, **{NEVER_DECODE: True})
        except BaseException:
            if near is not None:
                near.abandon(pending)
            raise
        if near is not None:
            near.fill(pending, [(key, blob)])
        return None if blob is None else parse(blob, False)

    def drop(self, keys: list[str]) -> int:
        """Unlink ``keys`` (one command each, in one pipeline: on Cluster they
        are in many slots), and wait briefly until the near caches have heard
        of it; returns how many existed. Raises when Redis fails."""
        if not keys:
            return 0
        event = self._expect(keys[-1])
        with translated(self.settings):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.unlink(key)
            removed = [int(n) for n in pipe.execute()]
        if event is not None and removed[-1]:
            event.wait(_INVALIDATION_WAIT)
        return sum(removed)

    def drop_indexed(self, index: str) -> int:
        """Unlink every entry ``index`` names; returns how many existed."""
        with translated(self.settings):
            members = self.indexes.members(index)
        removed = self.drop(members)
        with translated(self.settings):
            self.indexes.forget(index, members)
        return removed

    def invalidate_tags(self, tags: tuple[str, ...]) -> int:
        """Drop every entry carrying any of ``tags``; returns how many.
        Raises :class:`InvalidArgumentError` for a tag that is not a
        non-empty string, and when Redis fails."""
        return sum(self.drop_indexed(self.tag_index(tag)) for tag in check_tags(tags))

    def delete_url(self, url: str) -> int:
        """Drop every cached copy of ``url`` (a path with an optional query
        string, or a full URL whose path and query are used); returns how
        many. Raises :class:`InvalidArgumentError` for anything else."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or not parts.path.startswith("/") or parts.fragment:
            raise InvalidArgumentError(
                f"delete_cached_url needs a path such as '/items?page=2', not {url!r}."
            )
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        return self.drop_indexed(self.url_index(unquote(parts.path), _canonical(pairs)))

    def _index(self, namespace: str, indexes: list[str], member: str, ttl_ms: int) -> None:
        """Record a stored entry in ``indexes``; an index that fails to take
        it is logged (the entry still expires with its TTL)."""
        if not indexes:
            return
        try:
            with translated(self.settings):
                self.indexes.add(indexes, member, ttl_ms)
        except FogRedisError as exc:
            self._failed(namespace, exc)

    # -- the helper -------------------------------------------------------

    def get(self, namespace: str, key: str) -> Any:
        """The value, or None on a miss and when Redis fails (logged, counted)."""
        name = self.entry_key(namespace, key)
        try:
            raw = self._run("GET", name, **{NEVER_DECODE: True})
        except FogRedisError as exc:
            self._failed(namespace, exc)
            return None
        self._stats.cache_event(namespace, "misses" if raw is None else "hits")
        looked_up(namespace, key, raw is not None)
        return None if raw is None else decode(self.codec, raw, self.settings.decode_responses)

    def set(
        self, namespace: str, key: str, value: Any, ttl: float | timedelta | None = None
    ) -> bool:
        """Store ``value`` (``str`` and ``bytes`` as given, anything else
        through the codec); False when Redis fails (logged, counted). Raises
        :class:`CacheValueError` naming the type the codec cannot take."""
        name = self.entry_key(namespace, key)
        value = encode(self.codec, value)
        ttl_ms = self._ttl_ms(ttl)
        try:
            self._run("SET", name, value, "PX", ttl_ms)
        except FogRedisError as exc:
            self._failed(namespace, exc)
            return False
        announce_store(namespace, key)
        return True

    def delete(self, namespace: str, key: str) -> bool:
        """Delete one entry. Raises when Redis fails: a failed invalidation
        must not pass unnoticed."""
        removed = int(self._run("UNLINK", self.entry_key(namespace, key)))
        invalidated(namespace, key, removed)
        return bool(removed)

    def clear_namespace(self, namespace: str) -> int:
        """Delete every entry of ``namespace`` (views' included) with SCAN and
        UNLINK in batches, never KEYS; returns how many were removed."""
        removed = self.clear_matching(glob_escape(self.namespace_prefix(namespace)) + "*")
        invalidated(namespace, None, removed)
        return removed

    def clear_matching(self, pattern: str) -> int:
        """Delete every key matching ``pattern`` on the cache's Redis, and
        wait (briefly) until the near caches have heard of it."""
        sent: list[threading.Event] = []

        def before_unlink(last: Any) -> None:
            event = self._expect(last)
            if event is not None:
                sent[:] = [event]

        with translated(self.settings):
            removed = self._clear(self.client, pattern, before_unlink)
        if sent:
            # Invalidations arrive in order: once the last one is back, every
            # process has been told of every entry removed.
            sent[0].wait(_INVALIDATION_WAIT)
        return removed

    def _expect(self, name: Any) -> threading.Event | None:
        if self.near is None:
            return None
        return self.near.expect(name.decode() if isinstance(name, bytes) else name)

    # -- views ----------------------------------------------------------

    def serve(
        self,
        namespace: str,
        ttl: Ttl,
        vary: _Vary,
        view: Callable[[], Any],
        req: Request,
        controls: ViewControls | None = None,
    ) -> Response:
        """Answer a GET or HEAD (``req``) from the cache, or compute it once.

        A request the cache must not answer (one with credentials when the
        decorator does not say how answers differ per caller, or with a query
        parameter outside its allowlist, or one ``unless()`` skips) is
        computed, not stored, and tagged ``X-Cache: BYPASS``. A stored copy
        past its ``ttl`` but within its ``stale_ttl`` is served as
        ``X-Cache: STALE`` while one request (the lock holder) recomputes.
        """
        controls = controls or _PLAIN
        if controls.unless is not None and controls.unless():
            return _tagged(make_response(view()), "BYPASS")
        if not vary.allows_query(req) or (not vary.per_caller and self._has_credentials(req)):
            return _tagged(make_response(view()), "BYPASS")
        base = self.namespace_prefix(namespace)
        digest = vary.digest(req)
        # The digest as a hash tag: on Cluster the value and its lock share a
        # slot, and the entries of a namespace still spread over the nodes.
        value_key, lock_key = f"{base}v:{{{digest}}}", f"{base}l:{{{digest}}}"
        warm = req.environ.get(WARM_ENVIRON_KEY)
        stale: _Entry | None = None
        if not warm:
            try:
                hit = self._read(value_key, _parse_entry)
            except FogRedisError as exc:
                self._failed(namespace, exc)
                return _tagged(make_response(view()), "MISS")
            if hit is not None:
                self._stats.cache_event(namespace, "hits")
                if hit.fresh():
                    answer = _answer(hit, req, "HIT")
                    return mark_near(answer) if hit.near else answer
                stale = hit
        if self._orphans:
            self._release_orphans()
        token = secrets.token_hex(8)
        try:
            locked = self._run("SET", lock_key, token, "NX", "PX", round(self.lock_timeout * 1000))
        except FogRedisError as exc:
            self._failed(namespace, exc)
            return _answer(stale, req, "STALE") if stale else _tagged(make_response(view()), "MISS")
        if not locked:
            if stale is not None:
                return _answer(stale, req, "STALE")  # another request recomputes it
            blob = self._wait(namespace, value_key, lock_key)
        elif not warm:
            # The first read may have missed a holder that stored and let go
            # just before this request took the lock.
            blob = self._stored_blob(namespace, value_key)
            if blob is not None and _entry(blob).fresh():
                self._release(namespace, lock_key, token)
            else:
                blob = None
        else:
            blob = None
        if blob is not None:
            self._stats.cache_event(namespace, "hits")
            return _answer(_entry(blob), req, "HIT")
        if stale is None:
            self._stats.cache_event(namespace, "misses")
        lock = (lock_key, token) if locked else None
        try:
            try:
                response = make_response(view())
            except Exception:
                if stale is None:
                    raise
                self._log.warning(
                    f"stale-{namespace}",
                    "A view cached in %r raised while recomputing; serving its stale copy",
                    namespace,
                )
                return _answer(stale, req, "STALE")
            if self._store(namespace, value_key, response, ttl, vary, lock, controls, req):
                lock = None  # the store released it
        finally:
            if lock is not None:
                self._release(namespace, *lock)
        return _tagged(response, "MISS")

    def _has_credentials(self, req: Request) -> bool:
        """Whether ``req`` carries an authorization header, a session or JWT
        cookie, or a JWT in its query string (RFC 9111 section 3.5: a shared
        cache does not answer those)."""
        found = self._credentials or self._read_credentials()
        environ = req.environ
        # A body may carry a token (flask-jwt-extended's "json" location),
        # and the key never covers it; REMOTE_USER is the server's own login.
        if "REMOTE_USER" in environ or _has_body(environ):
            return True
        # Plain loops: this runs on every hit, and generators cost more.
        for name in found.headers:
            if name in environ:
                return True
        raw = environ.get("HTTP_COOKIE")
        if raw:
            for name in found.cookies:
                # Parsing every cookie costs more than the rest of a hit:
                # parse only when a credential cookie's name appears at all.
                if name in raw:
                    cookies = req.cookies
                    if any(other in cookies for other in found.cookies):
                        return True
                    break
        if found.query and req.query_string:
            return any(name in req.args for name in found.query)
        return False

    def _read_credentials(self) -> _Credentials:
        """Where this app's requests carry credentials, with flask-jwt-extended's
        defaults (whether it is installed or not)."""
        config = current_app.config
        header = str(config.get("JWT_HEADER_NAME") or "Authorization")
        headers = {"HTTP_AUTHORIZATION", "HTTP_" + header.upper().replace("-", "_")}
        cookies = {
            str(config.get("SESSION_COOKIE_NAME") or "session"),
            str(config.get("JWT_ACCESS_COOKIE_NAME") or "access_token_cookie"),
            str(config.get("JWT_REFRESH_COOKIE_NAME") or "refresh_token_cookie"),
        }
        locations = config.get("JWT_TOKEN_LOCATION") or ()
        if isinstance(locations, str):
            locations = (locations,)
        query: tuple[str, ...] = ()
        if "query_string" in locations:
            query = (str(config.get("JWT_QUERY_STRING_NAME") or "jwt"),)
        self._credentials = _Credentials(tuple(headers), tuple(cookies), query)
        return self._credentials

    def _wait(self, namespace: str, value_key: str, lock_key: str) -> bytes | None:
        """Wait for the request holding the lock: its stored result, or None
        when it finished without one, failed, or outlived the lock."""
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.005
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            if self._orphans:
                # The lock may be ours: this process could not release it.
                self._release_orphans(only=lock_key)
            try:
                blob, holder = self._read_pair(value_key, lock_key)
            except FogRedisError as exc:
                self._failed(namespace, exc)
                return None
            if blob is not None:
                return cast(bytes, blob)
            if holder is None:
                return None
        return None

    def _stored_blob(self, namespace: str, value_key: str) -> bytes | None:
        try:
            return cast("bytes | None", self._run("GET", value_key, **{NEVER_DECODE: True}))
        except FogRedisError as exc:
            self._failed(namespace, exc)
            return None

    def _read_pair(self, value_key: str, lock_key: str) -> tuple[Any, Any]:
        """The stored result and the lock's holder, read together (one MGET;
        the keys share a hash slot). A namespace with braces of its own can
        split them on a cluster: the lock is then read first, so a holder
        that stores and releases in between is seen either way."""
        if not self.settings.target.is_cluster or self._one_slot(value_key, lock_key):
            blob, holder = self._run("MGET", value_key, lock_key, **{NEVER_DECODE: True})
            return blob, holder
        holder = self._run("EXISTS", lock_key) or None
        return self._run("GET", value_key, **{NEVER_DECODE: True}), holder

    def _store(
        self,
        namespace: str,
        value_key: str,
        response: Response,
        ttl: Ttl,
        vary: _Vary,
        lock: tuple[str, str] | None = None,
        controls: ViewControls | None = None,
        req: Request | None = None,
    ) -> bool:
        """Store a cacheable response, with a strong ETag (the body's hash,
        unless the view set one), and index it by its URL and tags. Under our
        ``lock`` (key, token) the write happens only if the lock is still
        ours, in one script that also releases it: a namespace cleared while
        the view ran (which deletes the lock) does not get the stale result
        back. Whether the script ran (the lock is then released)."""
        controls = controls or _PLAIN
        if not _cacheable(response, vary):
            return False
        if controls.response_filter is not None and not controls.response_filter(response):
            return False
        body = response.get_data()
        if "ETag" not in response.headers:
            response.headers["ETag"] = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        fresh = self._ttl_ms(ttl(response) if callable(ttl) else ttl)
        ttl_ms = fresh + round(controls.stale_ttl * 1000)
        now = time.time()
        meta = {
            "s": response.status_code,
            "h": [(k, v) for k, v in response.headers.items() if k.lower() not in _NOT_STORED],
            "t": now,
            "e": response.headers["ETag"],
            # Fresh until then; served as stale after it, until it expires.
            "f": now + fresh / 1000,
            # When it expires: a near-cache copy must not outlive it while
            # Redis's expiry notice is on its way.
            "x": now + ttl_ms / 1000,
        }
        blob = json.dumps(meta, separators=(",", ":")).encode() + b"\n" + body
        stored = False
        try:
            if lock is not None and self._scripts and self._one_slot(value_key, lock[0]):
                with translated(self.settings):
                    self._store_script(keys=[value_key, lock[0]], args=[lock[1], blob, ttl_ms])
                stored = True
            else:
                self._run("SET", value_key, blob, "PX", ttl_ms)
        except FogRedisError as exc:
            self._failed(namespace, exc)
            return False
        announce_store(namespace, None)
        indexes = [self.tag_index(tag) for tag in controls.tags_for(req)]
        if req is not None:
            indexes.append(self.url_index(req.path, _query_of(req)))
        self._index(namespace, indexes, value_key, ttl_ms)
        return stored

    def _one_slot(self, first: str, second: str) -> bool:
        """Whether a script may touch both keys: on Cluster, whether they
        hash to one slot (not when braces in the prefix or namespace hide
        the digest's hash tag)."""
        if not self.settings.target.is_cluster:
            return True
        return bool(key_slot(first.encode()) == key_slot(second.encode()))

    def _release(
        self, namespace: str, lock_key: str, token: str, until: float | None = None
    ) -> bool:
        """Delete the lock if it is still ours (it may have expired and been
        taken by another request). When Redis fails, the lock is kept to be
        released later (see :meth:`_release_orphans`), until ``until`` (a
        monotonic time; by default when the lock expires at the latest), and
        the result is False."""
        try:
            if self._scripts:
                with translated(self.settings):
                    self._release_script(keys=[lock_key], args=[token])
            elif self._run("GET", lock_key, **{NEVER_DECODE: True}) == token.encode():
                self._run("DEL", lock_key)
        except FogRedisError as exc:
            self._failed(namespace, exc)
            if until is None:
                until = time.monotonic() + self.lock_timeout
            self._keep_orphans({(lock_key, token): (namespace, until)}, failed=True)
            return False
        return True

    def _keep_orphans(
        self, orphans: dict[tuple[str, str], tuple[str, float]], failed: bool = False
    ) -> None:
        """Keep ``orphans`` for a later try; after a ``failed`` release, none
        is tried for ``_ORPHAN_RETRY`` seconds. Past ``_MAX_ORPHANS`` the
        oldest go: they expire first."""
        with self._orphans_lock:
            if failed:
                self._orphans_retry_at = time.monotonic() + _ORPHAN_RETRY
            for held, orphan in orphans.items():
                if len(self._orphans) >= _MAX_ORPHANS:
                    del self._orphans[next(iter(self._orphans))]
                self._orphans[held] = orphan

    def _release_orphans(self, only: str | None = None) -> None:
        """Try again to release the locks whose release failed (or the one
        at key ``only``), those not yet expired. The first that fails again
        (Redis is still away) ends the try, and the next is
        ``_ORPHAN_RETRY`` seconds later: a request pays one command at most."""
        now = time.monotonic()
        with self._orphans_lock:
            if now < self._orphans_retry_at:
                return
            if only is None:
                orphans, self._orphans = self._orphans, {}
            else:
                orphans = {held: self._orphans[held] for held in self._orphans if held[0] == only}
                for held in orphans:
                    del self._orphans[held]
        try:
            while orphans:
                (lock_key, token), (namespace, until) = orphans.popitem()
                if now < until and not self._release(namespace, lock_key, token, until):
                    return
        finally:
            if orphans:  # not tried yet (a failure, or an exception)
                self._keep_orphans(orphans)

    def warm(self, urls: Iterable[str]) -> dict[str, int]:
        """Request each URL (a path, or a full URL whose path is used) through
        the app, storing fresh results even where entries exist; returns the
        status of each. Raises :class:`RedisUnavailableError` up front when
        Redis cannot be reached (the views would be computed for nothing)."""
        self._run("PING")
        client = current_app.test_client()
        results: dict[str, int] = {}
        for url in urls:
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            # Host and scheme are in the key: a full URL warms its own host's
            # entry; a path, the one of SERVER_NAME (or localhost).
            where = {"base_url": f"{parts.scheme}://{parts.netloc}"} if parts.netloc else {}
            response = client.get(path, environ_base={WARM_ENVIRON_KEY: True}, **where)
            results[url] = response.status_code
        return results

    def warn_if_it_can_fill(self, main: Settings) -> None:
        """Log a warning when cache entries share a ``noeviction`` Redis with
        the revocation list (``main``): anonymous requests with new query
        strings can then fill it, and revocations fail with OOM errors.

        Best effort, at startup: one INFO on a connection of its own that
        waits at most half a second; an unreachable Redis, an ACL that forbids
        INFO, a Sentinel or Cluster URL and the embedded store are skipped.
        Never raises.
        """
        target = main.target
        if self.owns_pool and self.settings.target.display != target.display:
            return
        if target.scheme == "memory" or target.is_sentinel or target.is_cluster:
            return
        if _read_policy(main) != "noeviction":
            return
        # The setting's name, not the address: log lines name no host.
        logger.warning(
            "The view cache shares the Redis of %s with the revocation list, and that "
            "Redis never evicts (noeviction): cached entries can fill it, and revocations "
            "then fail with OOM errors. Give the cache a Redis of its own with an evicting "
            "policy (allkeys-lru): set %s.",
            main.key("URL"),
            main.key("CACHE_URL"),
        )


def _read_policy(settings: Settings) -> str | None:
    """maxmemory-policy of the Redis in ``settings``, or None when it cannot
    be read within the budget."""
    budget = min(_POLICY_CHECK_BUDGET, settings.connect_timeout, settings.socket_timeout)
    socket_path = settings.target.connection.get("path")
    if socket_path is not None and not os.path.exists(socket_path):
        # Nothing listens there (and redis-py before 5.1 leaks the socket of
        # a failed Unix connect).
        return None
    connection = single_connection(settings, socket_connect_timeout=budget, socket_timeout=budget)
    try:
        # INFO, not CONFIG GET: managed Redis services often disable CONFIG.
        connection.send_command("INFO", "memory")
        reply = connection.read_response()
    except (redis.TimeoutError, TimeoutError):
        logger.debug("maxmemory-policy not read at startup: no answer in %g s", budget)
        return None
    except (redis.ConnectionError, OSError):
        logger.debug("maxmemory-policy not read at startup: Redis unreachable or refused the login")
        return None
    except redis.RedisError:
        logger.debug("maxmemory-policy not read at startup: INFO refused")
        return None
    finally:
        connection.disconnect()
    return parse_info(reply).get("maxmemory_policy")


class _Credentials(NamedTuple):
    """Where a request carries credentials: WSGI environ keys of headers,
    cookie names, query parameter names."""

    headers: tuple[str, ...]
    cookies: tuple[str, ...]
    query: tuple[str, ...]


class _Vary:
    """What, besides the host, the path and the query string, tells entries
    apart; and which requests the cache may answer at all."""

    def __init__(
        self,
        headers: Iterable[str],
        identity: bool,
        key_func: Callable[[Request], str] | None,
        public: bool = False,
        query_params: frozenset[str] | None = None,
    ) -> None:
        self.headers = tuple(h.lower() for h in headers)
        self.identity = identity
        self.key_func = key_func
        # The decorator said how answers differ per caller (or that they do
        # not): requests with credentials may use the cache.
        self.per_caller = public or identity or key_func is not None
        self.query_params = query_params
        # Where the varying headers are in the WSGI environ.
        self._environ_names = tuple(_environ_name(h) for h in self.headers)
        # Digests by the environ values they are computed from: the same URL
        # is asked for again and again. Not when the key depends on more.
        self._digests: dict[tuple[Any, ...], str] | None = (
            None if identity or key_func is not None else {}
        )

    def allows_query(self, req: Request) -> bool:
        """Whether every query parameter of ``req`` is in the allowlist."""
        if self.query_params is None or not req.query_string:
            return True
        return all(name in self.query_params for name in req.args)

    def digest(self, req: Request) -> str:
        """The entry's key for ``req``: a hash of what tells entries apart.

        Remembered per scheme, host, mount point, path, raw query string and
        varying headers, while ``req.args`` is still what werkzeug parses
        from the query string: not once something read or replaced it (a
        ``before_request`` may add parameters), nor for a request class with
        an ``args`` of its own.
        """
        memo = self._digests
        if memo is None or "args" in req.__dict__ or type(req).args is not _PARSED_ARGS:
            return self._digest(req)
        environ = req.environ
        raw = (
            environ["wsgi.url_scheme"],
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"),
            environ.get("SCRIPT_NAME", ""),
            req.path,
            environ.get("QUERY_STRING", ""),
            *[environ.get(name) for name in self._environ_names],
        )
        digest = memo.get(raw)
        if digest is None:
            digest = self._digest(req)
            # Bounded: clients choose the URLs. Long ones are not kept.
            if sum(len(part) for part in raw if isinstance(part, str)) <= _MEMO_TEXT:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[raw] = digest
        return digest

    def _digest(self, req: Request) -> str:
        query = _query_of(req)
        # Host and scheme: a view that builds absolute URLs answers each
        # differently, and a forged Host header must not reach other callers.
        # The header as sent (after any ProxyFix), not ``req.host``, whose
        # checks cost as much as the rest of the key.
        environ = req.environ
        scheme = environ["wsgi.url_scheme"]
        sent = environ.get("HTTP_HOST")
        host = _normal_host(
            sent or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}", scheme
        )
        # The mount point too: behind ProxyFix(x_prefix=...) it comes from a
        # header, and the view builds its URLs under it.
        parts = [scheme, host, environ.get("SCRIPT_NAME", ""), req.path, query]
        parts += [f"{name}={req.headers.get(name, '')}" for name in self.headers]
        if self.identity:
            parts.append(f"sub={_identity()}")
        if self.key_func is not None:
            parts.append(f"fn={self.key_func(req)}")
        text = "\n".join(parts)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
# The digest memo of one decorated view: how many, and how long their URLs.
_MEMO_SIZE = 1024
_MEMO_TEXT = 256
# Locks whose release failed, kept per process to release later; how long
# after a failed try the next one is made.
_MAX_ORPHANS = 1024
_ORPHAN_RETRY = 0.5
# werkzeug's parse of the query string, as request classes inherit it.
_PARSED_ARGS = SansioRequest.__dict__["args"]


def _environ_name(header: str) -> str:
    """Where werkzeug reads request header ``header`` in the WSGI environ."""
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"


def _normal_host(host: str, scheme: str) -> str:
    """``host`` as one spelling: lower case, no trailing dot, no default
    port, so that ``Example.com.:80`` makes no entry of its own."""
    host = host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return host.rstrip(".")


def _has_body(environ: dict[str, Any]) -> bool:
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ


def _identity() -> str:
    """The JWT identity of this request ("" when anonymous), verifying the
    token if no decorator did yet."""
    from flask_jwt_extended import get_jwt, verify_jwt_in_request

    try:
        payload = get_jwt()
    except RuntimeError:
        verify_jwt_in_request(optional=True)
        payload = get_jwt()
    identity = payload.get(identity_claim(current_app.config))
    return "" if identity is None else json.dumps(identity)


def _cacheable(response: Response, vary: _Vary) -> bool:
    """200, whole, public, the same for every cookie, and not per session."""
    if response.status_code != 200 or response.is_streamed or response.direct_passthrough:
        return False
    if "Set-Cookie" in response.headers:
        return False
    control = response.cache_control
    if control.private or control.no_store:
        return False
    varies = {v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()}
    if varies - set(vary.headers):
        return False
    return not _session_was_read()


def _session_was_read() -> bool:
    """Whether the view read the session: its answer is then per visitor
    (Flask adds "Vary: Cookie" only after this decorator has returned). Read
    without the ``session`` proxy, which would itself mark it as read."""
    context = request_ctx._get_current_object()  # type: ignore[attr-defined]
    attributes = vars(context)
    for name in ("_session", "session"):  # Flask 3.1+, then before
        if name in attributes:
            return bool(getattr(attributes[name], "accessed", True))
    return True  # cannot tell (a Flask that keeps it elsewhere): do not store


class _Entry(NamedTuple):
    """A stored response: its metadata (status, headers, ETag, when stored,
    fresh until, expires), body, and whether the near cache answered it.
    Never changed once made: the near cache hands the same one to every
    hit."""

    meta: dict[str, Any]
    body: bytes
    near: bool = False

    def fresh(self) -> bool:
        # Entries stored before stale_ttl existed have no "f": fresh until
        # they expire.
        until = self.meta.get("f")
        return until is None or time.time() < until


# Blobs read from Redis and what they parsed to: a hot entry is read again
# and again with the same bytes, and its JSON need not be parsed each time.
# Pure (the bytes decide the entry), so shared by every app; small blobs
# only, and emptied when full, so it stays under _RECENT_SIZE * _RECENT_BLOB.
_recent: dict[bytes, _Entry] = {}
_RECENT_SIZE = 64
_RECENT_BLOB = 16 * 1024


def _parse_entry(found: bytes | _Entry, local: bool) -> _Entry | None:
    """The response stored in ``found`` (a blob, or a near-cache copy parsed
    before). A ``local`` (near-cache) copy past its expiry gives None:
    Redis's own expiry notice may still be on its way."""
    if isinstance(found, _Entry):
        entry = found
    elif local:
        entry = _entry(found, near=True)
    else:
        known = _recent.get(found) if len(found) <= _RECENT_BLOB else None
        if known is not None:
            return known
        entry = _entry(found)
        if len(found) <= _RECENT_BLOB:
            if len(_recent) >= _RECENT_SIZE:
                _recent.clear()
            _recent[found] = entry
    if local and time.time() >= entry.meta.get("x", 0):
        return None
    return entry


def _entry(blob: bytes, near: bool = False) -> _Entry:
    head, _, body = blob.partition(b"\n")
    meta = json.loads(head.decode())
    # JSON gives each header as a list: tuples once, not at every answer.
    meta["h"] = [(name, value) for name, value in meta["h"]]
    return _Entry(meta, body, near)


def _answer(entry: _Entry, req: Request, state: str) -> Response:
    """The response for ``req`` from a stored entry: ``304 Not Modified``
    without a body when its ``If-None-Match`` names the entry's ETag."""
    meta = entry.meta
    kind = current_app.response_class
    plain = _plain_classes.get(kind)
    if plain is None:
        plain = _plain_classes[kind] = _is_plain(kind)
    # Age and X-Cache are never stored (_NOT_STORED), so they can go in with
    # the rest: one pass over the headers instead of a search per header set.
    # A new list: the entry may be the near cache's, shared by every hit.
    headers = [*meta["h"], ("Age", str(max(0, int(time.time() - meta["t"])))), ("X-Cache", state)]
    condition = req.environ.get("HTTP_IF_NONE_MATCH")
    if condition and "e" in meta and _etag_matches(condition, meta["e"]):
        # The stored headers, Content-Type included, go in as they are: the
        # ones describing a body are left out when it is sent.
        response = kind(status=304, headers=_checked(headers))
    elif plain and kind.automatically_set_content_length:
        # What the constructor does with a body, without its header search.
        headers.append(("Content-Length", str(len(entry.body))))
        response = kind(status=meta["s"], headers=_checked(headers))
        response.response = [entry.body]
    else:
        return kind(entry.body, status=meta["s"], headers=_checked(headers))
    if plain:
        # On the instance: its class, its pickling and its type stay the app's.
        response.get_wsgi_headers = functools.partial(  # type: ignore[method-assign]
            _stored_wsgi_headers, response
        )
    return response


# Whether a response class builds and sends itself as werkzeug's does.
_plain_classes: dict[type[Response], bool] = {}
# What a 304 leaves out: it has no body to describe (RFC 9110 15.4.5). The
# headers werkzeug leaves out of a 304 too.
_NOT_IN_304 = frozenset(
    {
        "allow",
        "content-encoding",
        "content-language",
        "content-length",
        "content-md5",
        "content-range",
        "content-type",
        "last-modified",
    }
)


def _is_plain(kind: type[Response]) -> bool:
    """Whether ``kind`` builds its body and sends its headers as werkzeug's
    own response does: answers from the store may then take shortcuts.

    Werkzeug sends a response's headers through ``get_wsgi_headers``, which
    checks every header again (each passed the same checks when it was
    stored) and, for a ``304``, filters them in several passes: on a hit
    that cost about as much as the rest of the cache's work. An app whose
    response class builds or sends itself its own way keeps that way.
    """
    return (
        kind.__init__ is Response.__init__
        and kind.set_data is Response.set_data
        and kind.get_wsgi_headers is Response.get_wsgi_headers
    )


def _stored_wsgi_headers(response: Response, environ: dict[str, Any]) -> Headers:
    """What werkzeug's ``get_wsgi_headers`` gives for an answer from the store
    (and whatever ``after_request`` added to it), in one pass."""
    items: list[tuple[str, str]] = response.headers._list
    sized = False
    for name, _ in items:
        lowered = name.lower()
        if lowered in _REWRITTEN:
            return Response.get_wsgi_headers(response, environ)
        sized = sized or lowered == "content-length"
    status = response.status_code
    if status == 304:
        return _checked([(k, v) for k, v in items if k.lower() not in _NOT_IN_304])
    if status == 200 and sized:
        return _checked(list(items))
    return Response.get_wsgi_headers(response, environ)


# Headers werkzeug rewrites on the way out (made absolute, IRIs quoted):
# answers with them go the long way.
_REWRITTEN = frozenset({"location", "content-location"})


def _etag_matches(condition: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2:
    weak comparison, ``*`` matches any)."""
    if condition == etag:
        return True  # what a browser sends back: the ETag as it was given
    if condition.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in condition.split(","))


def _checked(items: list[tuple[str, str]]) -> Headers:
    """``items`` as response headers, without werkzeug checking each one
    again: they passed its checks on the response they were stored from."""
    headers = Headers()
    headers._list = items
    return headers


def _canonical(pairs: Iterable[tuple[str, str]]) -> str:
    """A query string in one spelling: parameters sorted by name; repeated
    names keep their order, since ?a=1&a=2 and ?a=2&a=1 may mean different
    lists."""
    return urlencode(sorted(pairs, key=lambda item: item[0]))


def _query_of(req: Request) -> str:
    # Without a query string there is nothing to parse (the common case, and
    # a cost on every hit).
    return _canonical(req.args.items(multi=True)) if req.query_string else ""


class ViewControls(NamedTuple):
    """What ``@cached`` does beyond its key: ``unless()`` skips the cache,
    ``response_filter(response)`` decides whether to store, ``tags`` (names,
    or a callable of the view's arguments) index the entry, ``stale_ttl``
    seconds it is served stale after its ``ttl``."""

    unless: Callable[[], bool] | None = None
    response_filter: Callable[[Response], bool] | None = None
    tags: tuple[str, ...] | Callable[..., Iterable[str]] = ()
    stale_ttl: float = 0.0

    def tags_for(self, req: Request | None) -> tuple[str, ...]:
        """The tags of the entry stored for ``req``. Raises
        :class:`InvalidArgumentError` for a callable's bad tags."""
        if not callable(self.tags):
            return self.tags
        return check_tags(self.tags(**((req.view_args if req else None) or {})))


_PLAIN = ViewControls()


def _tagged(response: Response, state: str) -> Response:
    response.headers["X-Cache"] = state
    return response


def cached_view(
    get_cache: Callable[[], Cache],
    namespace: str,
    ttl: Ttl,
    vary: _Vary,
    controls: ViewControls | None = None,
) -> Callable[[View], View]:
    """The decorator behind ``FogRedis.cached``."""
    _check("namespace", namespace)

    def decorator(view: View) -> View:
        def run(*args: Any, **kwargs: Any) -> Any:
            # As Flask calls views: an ``async def`` view runs to completion.
            return current_app.ensure_sync(view)(*args, **kwargs)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The request itself, not the proxy: a hit reads it several times.
            req = request._get_current_object()  # type: ignore[attr-defined]
            if req.method not in ("GET", "HEAD"):
                return run(*args, **kwargs)
            cache = get_cache()
            compute = functools.partial(run, *args, **kwargs)
            if watching_views(cache.tracer):
                return observe_view(
                    cache.tracer,
                    namespace,
                    functools.partial(cache.serve, namespace, ttl, vary, compute, req, controls),
                )
            return cache.serve(namespace, ttl, vary, compute, req, controls)

        return cast(View, wrapper)

    return decorator


def make_vary(
    headers: Iterable[str],
    identity: bool,
    key_func: Callable[[Request], str] | None,
    public: bool = False,
    query_params: Iterable[str] | None = None,
) -> _Vary:
    """The decorator's options, checked: raises :class:`InvalidArgumentError`
    for a query parameter name that is not a non-empty string."""
    if isinstance(headers, str):
        headers = (headers,)
    allowed = None
    if query_params is not None:
        names = (query_params,) if isinstance(query_params, str) else tuple(query_params)
        for name in names:
            if not isinstance(name, str) or not name:
                raise InvalidArgumentError(
                    f"query_params must be parameter names (non-empty strings), not {name!r}."
                )
        allowed = frozenset(names)
    return _Vary(headers, identity, key_func, public, allowed)
