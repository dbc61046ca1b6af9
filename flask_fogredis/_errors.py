"""The extension's own errors: catch :class:`FogRedisError` to catch them all."""

from __future__ import annotations


class FogRedisError(Exception):
    """Base class of every error raised by Flask-FogRedis."""


class ConfigurationError(FogRedisError, ValueError):
    """A configuration value is missing or wrong; the message names the key."""


class InvalidArgumentError(FogRedisError, ValueError):
    """An argument the extension cannot use (an expiry of zero seconds, ...)."""


class RedisUnavailableError(FogRedisError, ConnectionError):
    """Redis could not be reached in time: refused, timed out, pool exhausted,
    authentication failed, or the server is still loading."""


class RedisCommandError(FogRedisError):
    """Redis answered with an error (out of memory, read-only replica, wrong
    type of key, ...)."""


class CacheKeyError(FogRedisError, ValueError):
    """An empty cache namespace or key."""


class CacheValueError(FogRedisError, TypeError):
    """A cache value that is neither ``str`` nor ``bytes`` (nothing is pickled)."""


class TokenError(FogRedisError, ValueError):
    """A JWT cannot be revoked or checked as given (no ``jti``, undecodable)."""


class NotInitializedError(FogRedisError, RuntimeError):
    """Used outside an application context, or on an app never passed to
    ``init_app``."""


class RevocationUnavailableError(RedisUnavailableError):
    """The blocklist could not be read, so the token was refused (fail closed).
    Answered as 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EvictionPolicyError(ConfigurationError):
    """The Redis holding revocations may evict them (strict mode only)."""
