"""Redis for Flask apps behind gunicorn: a blocking pool per app, JWT
revocation, view caching and health checks."""

from ._errors import (
    CacheKeyError,
    CacheValueError,
    ConfigurationError,
    EvictionPolicyError,
    FogRedisError,
    InvalidArgumentError,
    NotInitializedError,
    RedisCommandError,
    RedisUnavailableError,
    RevocationUnavailableError,
    TokenError,
)
from ._extension import FogRedis
from ._multiproc import mark_process_dead
from ._version import __version__ as __version__

__all__ = [
    "CacheKeyError",
    "CacheValueError",
    "ConfigurationError",
    "EvictionPolicyError",
    "FogRedis",
    "FogRedisError",
    "InvalidArgumentError",
    "NotInitializedError",
    "RedisCommandError",
    "RedisUnavailableError",
    "RevocationUnavailableError",
    "TokenError",
    "mark_process_dead",
]
