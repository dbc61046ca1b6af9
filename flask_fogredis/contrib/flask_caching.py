"""A Flask-Caching backend on the app's FogRedis pool.

Set ``CACHE_TYPE = "flask_fogredis.contrib.flask_caching.FogRedisCache"``
after ``FogRedis.init_app(app)``: ``@cache.cached``, ``@cache.memoize`` and
the plain calls then run on the app's one pool (one Redis, Sentinel or
Cluster), fail open, and count hits, misses and errors in the app's metrics
under the namespace ``flask_caching``.

Nothing is pickled. A value is stored as one of:

- an ``int`` (not ``bool``): its digits, so that ``inc``/``dec`` are INCRBY;
- ``J`` + JSON, for values JSON gives back equal and of the same types
  (None, bools, floats, str, lists, dicts with str keys);
- ``B`` + the bytes, for ``bytes``;
- ``R`` + a JSON line (status, headers) + the body, for a Flask response;
- ``T`` + a JSON list of the items, each encoded as above, for a tuple (a
  view's ``(body, status, headers)``);
- ``E`` + JSON (code, description), for an HTTP error a view raised
  (``abort(404)``), which ``@cache.cached`` stores and raises again.

Anything else raises :class:`CacheValueError` naming its type.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import redis
from flask import Flask, Response
from flask_caching.backends.base import BaseCache
from redis.client import NEVER_DECODE
from werkzeug.exceptions import HTTPException, default_exceptions

from .._cache import glob_escape
from .._errors import CacheValueError
from . import app_state

logger = logging.getLogger("flask_fogredis")

NAMESPACE = "flask_caching"
_LOG_INTERVAL = 30.0
# Errors that mean "Redis did not serve this": the cache then fails open.
_REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


def encode(value: object) -> bytes:
    """``value`` as stored (see the module's text). Raises
    :class:`CacheValueError` for a type that has no safe encoding."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    if isinstance(value, bytes):
        return b"B" + value
    if isinstance(value, Response):
        return _encode_response(value)
    if isinstance(value, HTTPException) and value.response is None and value.code:
        meta = {"c": value.code, "d": value.description}
        return b"E" + json.dumps(meta).encode()
    if isinstance(value, tuple):
        items = [base64.b64encode(encode(item)).decode() for item in value]
        return b"T" + json.dumps(items).encode()
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        text = None
    # Equal after a round trip: no tuple turned list, no int key turned str.
    if text is None or not _same(json.loads(text), value):
        raise CacheValueError(
            f"FogRedisCache stores JSON values, bytes, ints, tuples and Flask responses, "
            f"not {type(value).__name__}: convert it first; nothing is pickled."
        )
    return b"J" + text.encode()


def _same(decoded: object, original: object) -> bool:
    """Whether ``decoded`` is ``original`` again: equal, and of the same JSON
    types all the way down (a nested tuple comes back a list, an int key a
    str: those are refused rather than changed)."""
    if original is None or isinstance(original, bool):
        return decoded is original
    if isinstance(original, (int, float)):
        return type(decoded) is type(original) and decoded == original
    if isinstance(original, str):
        return isinstance(decoded, str) and decoded == original
    if isinstance(original, list):
        return (
            isinstance(decoded, list)
            and len(decoded) == len(original)
            and all(_same(d, o) for d, o in zip(decoded, original))
        )
    if isinstance(original, dict):
        return (
            isinstance(decoded, dict)
            and all(isinstance(name, str) for name in original)
            and decoded.keys() == original.keys()
            and all(_same(decoded[name], value) for name, value in original.items())
        )
    return False


def _encode_response(response: Response) -> bytes:
    if response.is_streamed or response.direct_passthrough:
        raise CacheValueError(
            "FogRedisCache cannot store a streamed response: its body is not known "
            "until it is sent."
        )
    headers = [(name, value) for name, value in response.headers.items()]
    meta = {"s": response.status_code, "h": headers}
    return b"R" + json.dumps(meta, separators=(",", ":")).encode() + b"\n" + response.get_data()


def decode(blob: bytes, response_class: type[Response] = Response) -> Any:
    """The value :func:`encode` stored as ``blob``; responses are made with
    ``response_class``. Raises ``ValueError`` for bytes it did not write."""
    tag = blob[:1]
    if tag == b"J":
        return json.loads(blob[1:])
    if tag == b"B":
        return blob[1:]
    if tag == b"R":
        head, _, body = blob[1:].partition(b"\n")
        meta = json.loads(head)
        return response_class(body, status=meta["s"], headers=meta["h"])
    if tag == b"E":
        meta = json.loads(blob[1:])
        return default_exceptions.get(meta["c"], HTTPException)(description=meta["d"])
    if tag == b"T":
        items = json.loads(blob[1:])
        return tuple(decode(base64.b64decode(item), response_class) for item in items)
    return int(blob)


class FogRedisCache(BaseCache):
    """Flask-Caching's cache on the app's FogRedis client.

    Keys are ``<REDIS_KEY_PREFIX>:flask_caching:<CACHE_KEY_PREFIX><key>``.
    Reads and writes fail open: a Redis error gives None (``get``) or False
    (``set``, ``add``, ``delete``, ``has``, ``clear``), is logged at most every
    30 s, and counted as a cache error. Values that cannot be stored safely
    raise :class:`CacheValueError` (Flask-Caching's decorators log it and
    serve the view, except in debug mode, where it is raised).
    """

    def __init__(
        self,
        app: Flask,
        *,
        config_prefix: str = "REDIS",
        key_prefix: str = "",
        default_timeout: int = 300,
        ignore_delete_many_errors: bool = False,
    ) -> None:
        # Flask-Caching before 2.4 (the last for Python 3.9) takes only the
        # timeout; the flag is an attribute in every version.
        super().__init__(default_timeout=default_timeout)
        self.ignore_delete_many_errors = ignore_delete_many_errors
        state = app_state(app, config_prefix)
        self._client = state.client
        self._stats = state.stats
        # Keys may be on different nodes: one command per key.
        self._key_by_key = state.topology.multi_key_commands_span_nodes
        self._clear = state.topology.clear_matching
        self.key_prefix = f"{state.settings.key_prefix}:{NAMESPACE}:{key_prefix}"
        self._response_class: type[Response] = app.response_class
        self._log_lock = threading.Lock()
        self._logged_at = float("-inf")

    @classmethod
    def factory(
        cls, app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> FogRedisCache:
        """What Flask-Caching calls for ``CACHE_TYPE``: reads
        ``CACHE_KEY_PREFIX``, ``CACHE_DEFAULT_TIMEOUT`` (in ``kwargs``) and
        ``CACHE_FOGREDIS_PREFIX`` (the FogRedis config prefix, default
        ``REDIS``)."""
        return cls(
            app,
            config_prefix=str(config.get("CACHE_FOGREDIS_PREFIX") or "REDIS"),
            key_prefix=str(config.get("CACHE_KEY_PREFIX") or ""),
            default_timeout=kwargs.get("default_timeout", 300),
            ignore_delete_many_errors=bool(kwargs.get("ignore_delete_many_errors", False)),
        )

    # -- plumbing -------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.key_prefix + key

    def _run(self, *args: Any) -> Any:
        return self._client.execute_command(*args, **{NEVER_DECODE: True})

    def _failed(self, exc: BaseException) -> None:
        self._stats.cache_event(NAMESPACE, "errors")
        now = time.monotonic()
        with self._log_lock:
            if now - self._logged_at < _LOG_INTERVAL:
                return
            self._logged_at = now
        # The type only: redis-py's text can name the host.
        logger.warning(
            "Flask-Caching on FogRedis: Redis failed (%s), serving without it", type(exc).__name__
        )

    def _expiry(self, timeout: int | timedelta | None) -> list[Any]:
        seconds = self._normalize_timeout(timeout)
        return ["EX", seconds] if seconds > 0 else []

    def _loaded(self, blob: bytes | None) -> Any:
        self._stats.cache_event(NAMESPACE, "misses" if blob is None else "hits")
        return None if blob is None else decode(blob, self._response_class)

    # -- the cache API --------------------------------------------------

    def get(self, key: str) -> Any:
        """The value, or None when absent or when Redis fails."""
        try:
            blob = self._run("GET", self._key(key))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return None
        return self._loaded(blob)

    def get_many(self, *keys: str) -> list[Any]:
        """The values of ``keys`` in order (None for each when Redis fails)."""
        if not keys:
            return []
        try:
            if self._key_by_key:
                blobs = [self._run("GET", self._key(key)) for key in keys]
            else:
                blobs = self._run("MGET", *(self._key(key) for key in keys))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return [None] * len(keys)
        return [self._loaded(blob) for blob in blobs]

    def set(self, key: str, value: Any, timeout: int | timedelta | None = None) -> bool:
        """Store ``value`` (0: no expiry). Raises :class:`CacheValueError`
        for a value without a safe encoding; False when Redis fails."""
        blob = encode(value)
        try:
            return bool(self._run("SET", self._key(key), blob, *self._expiry(timeout)))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return False

    def add(self, key: str, value: Any, timeout: int | timedelta | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored."""
        blob = encode(value)
        try:
            return bool(self._run("SET", self._key(key), blob, "NX", *self._expiry(timeout)))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return False

    def set_many(
        self, mapping: Mapping[str, Any], timeout: int | timedelta | None = None
    ) -> list[Any]:
        """Store every item; returns the keys stored (none when Redis fails)."""
        blobs = {key: encode(value) for key, value in mapping.items()}
        expiry = self._expiry(timeout)
        try:
            if self._key_by_key:
                for key, blob in blobs.items():
                    self._run("SET", self._key(key), blob, *expiry)
            else:
                pipe = self._client.pipeline(transaction=False)
                for key, blob in blobs.items():
                    pipe.execute_command("SET", self._key(key), blob, *expiry)
                pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return []
        return list(blobs)

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed, False if not or Redis failed."""
        try:
            return bool(self._run("UNLINK", self._key(key)))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return False

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys``; returns them (absent ones count as deleted), or
        none when Redis fails (then raises ``RuntimeError`` if
        ``CACHE_IGNORE_ERRORS`` is False, as Flask-Caching's backends do)."""
        if not keys:
            return []
        try:
            if self._key_by_key:
                for key in keys:
                    self._run("UNLINK", self._key(key))
            else:
                self._run("UNLINK", *(self._key(key) for key in keys))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            if not self.ignore_delete_many_errors:
                raise RuntimeError(f"Failed to delete keys: {list(keys)}") from None
            return []
        return list(keys)

    def has(self, key: str) -> bool:
        """Whether ``key`` is stored (False when Redis fails)."""
        try:
            return bool(self._run("EXISTS", self._key(key)))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return False

    def clear(self) -> bool:
        """Delete this cache's keys (its prefix only) with SCAN and UNLINK in
        batches, never KEYS or FLUSHDB (on every primary of a cluster);
        False when Redis fails."""
        try:
            self._clear(self._client, glob_escape(self.key_prefix) + "*", None)
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return False
        return True

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Add ``delta`` to an int value (a missing one counts as 0); None
        when Redis fails or the value is not an int."""
        try:
            return int(self._run("INCRBY", self._key(key), delta))
        except _REDIS_ERRORS as exc:
            self._failed(exc)
            return None

    def dec(self, key: str, delta: int = 1) -> int | None:
        """Subtract ``delta`` (see :meth:`inc`)."""
        return self.inc(key, -delta)
