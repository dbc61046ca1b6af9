"""``@fog.memoize``: a function's return values cached by its arguments.

The key of a call is the hash of its arguments as the function binds them
(``inspect.Signature.bind`` with defaults applied), written as canonical JSON
(sorted keys): ``f(1, b=2)``, ``f(1, 2)`` and ``f(a=1)`` with ``b=2`` by
default are one call. Arguments must be JSON values (dicts with ``str``
keys, lists, tuples, ``str``, numbers, ``bool``, None); a tuple keys like a
list. Anything else raises :class:`InvalidArgumentError` naming the type,
unless ``key_func`` gives the key. Every key is a fixed-length hash, however
large the arguments.

A function is known by its module and qualified name: two functions that
share both (closures made by one factory) share their entries.

A first parameter named ``self`` or ``cls`` is left out of the key (a method
caches for every instance) unless ``key_self=True``, which keys on
``repr(self)``.

Each entry is recorded in its function's index (``_index``), so that
``delete_memoized(fn)`` drops exactly the function's entries, at a cost
proportional to their number; a hit is one GET (or none, from the near
cache).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._cache import check_name
from ._codec import decode, encode, json_offender
from ._errors import FogRedisError, InvalidArgumentError
from ._index import check_tags

if TYPE_CHECKING:
    from ._cache import Cache

F = TypeVar("F", bound=Callable[..., Any])
MARK = "__fogredis_memoized__"


class Memoized:
    """One memoized function: how its calls become keys."""

    def __init__(
        self,
        fn: Callable[..., Any],
        namespace: str,
        ttl: float | timedelta | None,
        key_func: Callable[..., str] | None,
        tags: Iterable[str] | Callable[..., Iterable[str]],
        key_self: bool,
    ) -> None:
        self.fn = fn
        self.namespace = namespace
        self.ttl = ttl
        self.key_func = key_func
        self.tags = tags if callable(tags) else check_tags(tags)
        self.signature = inspect.signature(fn)
        names = list(self.signature.parameters)
        self.skip_self = bool(names) and names[0] in ("self", "cls")
        self.key_self = key_self
        name = f"{fn.__module__}.{fn.__qualname__}".encode()
        self.fn_id = hashlib.sha256(name).hexdigest()[:16]

    def entry_key(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of one call. Raises :class:`InvalidArgumentError` for an
        argument that is not a JSON value (without ``key_func``), and
        ``TypeError`` for arguments the function does not take."""
        if self.key_func is not None:
            text = self.key_func(*args, **kwargs)
            if not isinstance(text, str):
                raise InvalidArgumentError(
                    f"memoize's key_func must return a str, not {type(text).__name__}."
                )
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            items = list(bound.arguments.items())
            if self.skip_self and items:
                items[0] = (items[0][0], repr(items[0][1]) if self.key_self else None)
            offender = json_offender(items)
            if offender is not None:
                raise InvalidArgumentError(
                    f"Arguments of memoized {self.fn.__qualname__} must be JSON values "
                    f"(str, numbers, bool, None, lists, dicts with str keys), not {offender}: "
                    "give memoize a key_func."
                )
            text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return f"{cache.namespace_prefix(self.namespace)}m:{self.fn_id}:{digest}"

    def index(self, cache: Cache) -> str:
        """The index of every entry of this function."""
        return f"{cache.namespace_prefix(self.namespace)}mi:{self.fn_id}"

    def lookup(self, cache: Cache, key: str) -> tuple[Any] | None:
        """``(value,)`` on a hit, None on a miss or when Redis fails."""
        codec, text = cache.codec, cache.settings.decode_responses

        def parse(blob: bytes, local: bool) -> tuple[Any] | None:
            head, _, stored = blob.partition(b"\n")
            # A near-cache copy past its expiry: Redis's notice may be late.
            if local and time.time() * 1000 >= int(head):
                return None
            return (decode(codec, stored, text),)

        try:
            found = cache._read(key, parse)
        except FogRedisError as exc:
            cache._failed(self.namespace, exc)
            return None
        cache._stats.cache_event(self.namespace, "misses" if found is None else "hits")
        return found

    def store(self, cache: Cache, key: str, value: Any, args: Any, kwargs: Any) -> None:
        """Store a result (fails open; raises :class:`CacheValueError` for a
        value the codec cannot take, before anything is written)."""
        payload = encode(cache.codec, value)
        tags = check_tags(self.tags(*args, **kwargs)) if callable(self.tags) else self.tags
        ttl_ms = cache._ttl_ms(self.ttl)
        expires = int(time.time() * 1000) + ttl_ms
        try:
            cache._run("SET", key, b"%d\n" % expires + payload, "PX", ttl_ms)
        except FogRedisError as exc:
            cache._failed(self.namespace, exc)
            return
        if cache.near is not None:
            # This process reads its own write, notice or not: its copy may
            # say "absent" until Redis's notice arrives.
            cache.near.forget(key)
        indexes = [self.index(cache), *(cache.tag_index(tag) for tag in tags)]
        cache._index(self.namespace, indexes, key, ttl_ms)

    def delete(self, cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        """Drop one call's entry, or with no arguments every entry of the
        function; returns how many. Raises when Redis fails."""
        if not args and not kwargs:
            return cache.drop_indexed(self.index(cache))
        return cache.drop([self.entry_key(cache, args, kwargs)])


def memoize(
    get_cache: Callable[[], Cache],
    namespace: str,
    ttl: float | timedelta | None,
    key_func: Callable[..., str] | None,
    tags: Iterable[str] | Callable[..., Iterable[str]],
    key_self: bool,
) -> Callable[[F], F]:
    """The decorator behind ``FogRedis.memoize``. Raises
    :class:`CacheKeyError` for an empty namespace."""
    check_name("namespace", namespace)
    if not callable(tags):
        tags = check_tags(tags)

    def decorator(fn: F) -> F:
        memo = Memoized(fn, namespace, ttl, key_func, tags, key_self)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                cache = get_cache()
                key = memo.entry_key(cache, args, kwargs)
                found = memo.lookup(cache, key)
                if found is not None:
                    return found[0]
                value = await fn(*args, **kwargs)
                memo.store(cache, key, value, args, kwargs)
                return value

            setattr(run_async, MARK, memo)
            return cast(F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            cache = get_cache()
            key = memo.entry_key(cache, args, kwargs)
            found = memo.lookup(cache, key)
            if found is not None:
                return found[0]
            value = fn(*args, **kwargs)
            memo.store(cache, key, value, args, kwargs)
            return value

        setattr(run, MARK, memo)
        return cast(F, run)

    return decorator


def memoized_of(fn: object) -> tuple[Memoized, tuple[Any, ...]]:
    """The :class:`Memoized` behind ``fn`` and, for a bound method, the
    instance to put first. Raises :class:`InvalidArgumentError` for a
    function that ``@fog.memoize`` did not wrap."""
    memo = getattr(fn, MARK, None)
    if not isinstance(memo, Memoized):
        raise InvalidArgumentError(f"{fn!r} is not a function decorated with @fog.memoize.")
    instance = getattr(fn, "__self__", None)
    return memo, (() if instance is None or not inspect.ismethod(fn) else (instance,))
