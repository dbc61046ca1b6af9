"""A client that returns replies as bytes, on a pool whose connections decode.

redis-py decodes replies in the connection, with the option its pool gave it
(``decode_responses``); a second pool built without it would open a second
set of connections to the same server. Instead, the clients here read every
reply with ``disable_decoding`` (redis-py's ``NEVER_DECODE`` option) on the
app's own pool: plain commands, pipelines (their queued commands and a
transaction's EXEC reply), and Lua scripts, which run through the same calls.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.client import NEVER_DECODE, Pipeline


class UndecodedPipeline(Pipeline):
    """A pipeline whose replies stay bytes (see :class:`UndecodedRedis`)."""

    def parse_response(self, connection: Any, command_name: Any, **options: Any) -> Any:
        options[NEVER_DECODE] = True
        return super().parse_response(connection, command_name, **options)  # type: ignore[no-untyped-call]


class UndecodedRedis(redis.Redis):
    """A ``redis.Redis`` on a given pool whose replies are never decoded.

    Every reply, including the MULTI/EXEC reply of a transaction and the ones
    read while WATCHing, passes through :meth:`parse_response`, which is where
    the flag is set. It shares the pool, so it is fork-safe as that pool is
    (redis-py resets a pool in a forked child).
    """

    def __init__(self, connection_pool: redis.ConnectionPool) -> None:
        super().__init__(connection_pool=connection_pool)

    def parse_response(self, connection: Any, command_name: Any, **options: Any) -> Any:
        options[NEVER_DECODE] = True
        return super().parse_response(connection, command_name, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> UndecodedPipeline:
        return UndecodedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
