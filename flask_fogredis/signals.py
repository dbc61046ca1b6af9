"""Blinker signals, as Flask sends its own: connect a receiver to hook into
the cache, the revocation list and Redis's availability.

Every signal's sender is the Flask app; the arguments are keyword
arguments. A signal with no receiver costs one attribute check: nothing is
built or sent. Receivers run in the request (or the thread) that caused the
event and should be quick; an exception in one propagates to the caller.

    from flask_fogredis import signals

    @signals.cache_miss.connect_via(app)
    def count_miss(app, namespace, key, **extra):
        ...
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

cache_hit = _signals.signal(
    "fogredis.cache-hit",
    doc="""A cache answer: ``namespace``; ``key`` (the key given to
    ``fog.cache_get``, None for a cached view); ``near_cache`` (True when
    process memory answered, without Redis); ``result`` (``"hit"``, or
    ``"stale"`` for a view answered from a stale entry).""",
)
cache_miss = _signals.signal(
    "fogredis.cache-miss",
    doc="""No stored answer: ``namespace``; ``key`` (None for a cached
    view, which is then computed).""",
)
cache_store = _signals.signal(
    "fogredis.cache-store",
    doc="""An entry was written: ``namespace``; ``key`` (None for a cached
    view's response).""",
)
cache_invalidated = _signals.signal(
    "fogredis.cache-invalidated",
    doc="""Entries were deleted: ``namespace``; ``key`` (None when the whole
    namespace was cleared); ``count`` (how many were removed).""",
)
token_revoked = _signals.signal(
    "fogredis.token-revoked",
    doc="""A revocation was written: ``jti`` (None for a log out
    everywhere); ``identity`` (None when not known); ``everywhere`` (True for
    ``revoke_all_tokens``).""",
)
revocation_refused = _signals.signal(
    "fogredis.revocation-refused",
    doc="""A token was refused because the revocation list could not be read
    (fail closed; the request gets a 503): ``error`` (the
    :class:`~flask_fogredis.RedisUnavailableError`, password-free).""",
)
redis_unavailable = _signals.signal(
    "fogredis.redis-unavailable",
    doc="""A health check found Redis failing after it was passing (or on the
    first check): ``config_prefix`` (``"REDIS"``, or the cache's
    ``"REDIS_CACHE"``); ``error`` (a short category: ``"unreachable"``,
    ``"timeout"``, ``"authentication failed"``...). Sent from the health
    check's own thread.""",
)
redis_available = _signals.signal(
    "fogredis.redis-available",
    doc="""A health check found Redis passing again after it failed:
    ``config_prefix``. Sent from the health check's own thread.""",
)

__all__ = [
    "cache_hit",
    "cache_invalidated",
    "cache_miss",
    "cache_store",
    "redis_available",
    "redis_unavailable",
    "revocation_refused",
    "token_revoked",
]
