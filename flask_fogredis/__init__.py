"""Redis for Flask apps behind gunicorn: a blocking pool per app, JWT
revocation, view caching and health checks."""

from .errors import (
    CacheKeyError,
    CacheValueError,
    ConfigurationError,
    FogRedisError,
    InvalidArgumentError,
    NotInitializedError,
    RedisCommandError,
    RedisUnavailableError,
    TokenError,
)
from .extension import FogRedis
from .multiproc import mark_process_dead

__all__ = [
    "CacheKeyError",
    "CacheValueError",
    "ConfigurationError",
    "FogRedis",
    "FogRedisError",
    "InvalidArgumentError",
    "NotInitializedError",
    "RedisCommandError",
    "RedisUnavailableError",
    "TokenError",
    "mark_process_dead",
]
__version__ = "0.1.0"
