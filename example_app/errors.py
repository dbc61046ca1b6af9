"""Every error answers JSON: a client never gets an HTML page or a 500 for
bad input."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from flask_fogredis import RedisCommandError, RedisUnavailableError

# Seconds a client waits before it tries a failed write again.
RETRY_AFTER = 2


class InvalidInput(Exception):
    """A request body that is not what the endpoint takes: answered 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def json_body(**fields: type | tuple[type, ...]) -> dict[str, Any]:
    """The request's JSON object, with each named field present and of its
    type; raises :class:`InvalidInput` otherwise."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    for name, kind in fields.items():
        if name not in body:
            raise InvalidInput(f"Missing field: {name}.")
        value = body[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
            raise InvalidInput(f"Field {name} has the wrong type.")
    return body


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InvalidInput)
    def invalid_input(exc: InvalidInput) -> tuple[dict[str, str], int]:
        return {"error": exc.message}, 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[dict[str, str], int]:
        return {"error": exc.description or exc.name}, exc.code or 500

    @app.errorhandler(RedisUnavailableError)
    @app.errorhandler(RedisCommandError)
    def redis_failed(exc: Exception) -> tuple[dict[str, str], int, dict[str, str]]:
        # A logout or revoke that Redis could not store (down, full,
        # read-only), or that no replica acknowledged in time (it may be on
        # the primary): it cannot be counted on, so say so and ask for a
        # retry, which is harmless. The message names no host, port or
        # password; the log line keeps it.
        app.logger.warning("Redis could not serve %s: %s", request.path, exc)
        return (
            {"error": "The store could not confirm the change. Try again shortly."},
            503,
            {"Retry-After": str(RETRY_AFTER)},
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[dict[str, str], int]:
        app.logger.exception("Unhandled error")
        return {"error": "Internal server error."}, 500
