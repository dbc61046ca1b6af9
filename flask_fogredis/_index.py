"""Indexes of cache entries: one per tag, per cached URL and per memoized
function, so that each can be dropped without walking the namespace.

An index is a sorted set of entry keys scored by when each entry expires (ms
since the epoch). Adding an entry also drops the members that have expired
and sets the index's own expiry to its longest-lived member's, in one script:
an index holds at most its live entries plus those expired since the last
add, and vanishes with its last entry. Dropping reads the members and
unlinks them; the cost is the number of entries indexed, never the size of
the namespace.

On Cluster an index and its entries are in different hash slots (the index's
slot comes from its own name): every command here touches one key, or is
sent per key in a pipeline that redis-py splits by node. No command needs two
slots.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ._errors import InvalidArgumentError

# KEYS: index. ARGV: expiry (ms since epoch), member, now (ms since epoch).
_ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
"""


def check_tags(tags: object) -> tuple[str, ...]:
    """``tags`` as a tuple of names; raises :class:`InvalidArgumentError` for
    anything but non-empty strings (one string is one tag)."""
    if isinstance(tags, str):
        tags = (tags,)
    if not isinstance(tags, Iterable):
        raise InvalidArgumentError(f"tags must be a list of non-empty strings, not {tags!r}.")
    found = tuple(tags)
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise InvalidArgumentError(f"Each tag must be a non-empty string, not {tag!r}.")
    return found


class Indexes:
    """Adds entries to indexes and drops what an index names, on one client.
    ``scripts``: whether the Redis runs Lua (the embedded store may not; its
    adds then run as separate commands, in one process anyway)."""

    def __init__(self, client: Any, scripts: bool) -> None:
        self._client = client
        self._scripts = scripts
        if scripts:
            # As bytes: a cluster client would otherwise connect now.
            self._add = client.register_script(_ADD.encode())

    def add(self, indexes: Iterable[str], member: str, ttl_ms: int) -> None:
        """Record ``member`` (an entry key living ``ttl_ms``) in each index."""
        now = int(time.time() * 1000)
        expires = now + ttl_ms
        for index in indexes:
            if self._scripts:
                self._add(keys=[index], args=[expires, member, now])
                continue
            client = self._client
            client.zadd(index, {member: expires})
            client.zremrangebyscore(index, "-inf", now)
            top = client.zrange(index, -1, -1, withscores=True)
            if top:
                client.pexpireat(index, int(top[0][1]))

    def members(self, index: str) -> list[str]:
        """The entry keys ``index`` names (some may have expired)."""
        found = self._client.zrange(index, 0, -1)
        return [m.decode() if isinstance(m, bytes) else m for m in found]

    def forget(self, index: str, members: list[str]) -> None:
        """Remove ``members`` from ``index``; entries added since stay in it."""
        if members:
            self._client.zrem(index, *members)
