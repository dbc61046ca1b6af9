"""The example's settings from the environment, and the check that keeps a
deployed copy from starting with credentials that anyone could know."""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import Flask

MIN_SECRET_LENGTH = 32
MIN_PASSWORD_LENGTH = 12
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
# What the demo logs in with in debug mode (``make run``), and only there.
DEMO_MODE_PASSWORD = "demo-password"
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe())'"
# Fragments of the values people paste from examples and templates, such as
# .env.example's "change-me-to-another-long-random-string".
_PLACEHOLDER_PARTS = (
    "change-me",
    "changeme",
    "change_me",
    "change-this",
    "changethis",
    "replace-me",
    "placeholder",
    "your-secret",
    "example",
)
_KNOWN_PASSWORDS = {DEMO_MODE_PASSWORD, "password", "admin", "secret", "letmein"}


class UnsafeSettings(RuntimeError):
    """The app would start outside debug mode with a missing, short or
    well-known secret. The message names the variables, never their values."""


def from_environment(app: Flask) -> None:
    """Put the environment's settings into ``app.config`` (before the
    ``config`` given to ``create_app`` overrides them). Raises
    :class:`UnsafeSettings` for a ``MAX_CONTENT_LENGTH`` that is not a whole
    number of bytes."""
    app.config.update(
        REDIS_URL=os.environ.get("REDIS_URL") or "memory://",
        REDIS_CACHE_URL=os.environ.get("REDIS_CACHE_URL") or None,
        REDIS_METRICS_TOKEN=os.environ.get("REDIS_METRICS_TOKEN") or None,
        JWT_SECRET_KEY=os.environ.get("JWT_SECRET_KEY") or None,
        DEMO_PASSWORD=os.environ.get("DEMO_PASSWORD") or None,
        MAX_CONTENT_LENGTH=_bytes("MAX_CONTENT_LENGTH", os.environ.get("MAX_CONTENT_LENGTH")),
    )


def _bytes(name: str, value: str | None) -> int:
    if not value:
        return DEFAULT_MAX_CONTENT_LENGTH
    try:
        size = int(value)
    except ValueError:
        raise UnsafeSettings(f"{name} must be a whole number of bytes, such as 1048576.") from None
    if size <= 0:
        raise UnsafeSettings(f"{name} must be a positive number of bytes, such as 1048576.")
    return size


def is_placeholder(value: str) -> bool:
    """Whether ``value`` looks copied from an example rather than generated."""
    lowered = value.lower()
    return lowered in _KNOWN_PASSWORDS or any(part in lowered for part in _PLACEHOLDER_PARTS)


def _secret_problem(name: str, value: Any, min_length: int) -> str | None:
    if not value:
        return f"{name} is not set"
    if not isinstance(value, str):
        return f"{name} must be a string"
    if is_placeholder(value):
        return f"{name} is a placeholder (such as the one in .env.example)"
    if len(value) < min_length:
        return f"{name} is shorter than {min_length} characters"
    return None


def check(app: Flask) -> None:
    """Refuse to run outside debug and testing with settings that would let
    anyone in: a missing, short or placeholder ``JWT_SECRET_KEY`` (anyone
    could sign an admin token), no ``DEMO_PASSWORD`` when the demo users are
    in use, or a public ``/metrics`` without ``REDIS_METRICS_TOKEN``.

    In debug and testing it fills in what is missing instead: a random JWT
    key for this run and the demo password. Raises :class:`UnsafeSettings`.
    """
    config = app.config
    if app.debug or app.testing:
        if not config["JWT_SECRET_KEY"]:
            # Shared by every worker under gunicorn's preload; tokens do not
            # survive a restart.
            config["JWT_SECRET_KEY"] = secrets.token_urlsafe(MIN_SECRET_LENGTH)
        if not config["DEMO_PASSWORD"]:
            config["DEMO_PASSWORD"] = DEMO_MODE_PASSWORD
        return
    problems = [_secret_problem("JWT_SECRET_KEY", config["JWT_SECRET_KEY"], MIN_SECRET_LENGTH)]
    if "DEMO_USERS" not in config:
        problems.append(
            _secret_problem("DEMO_PASSWORD", config["DEMO_PASSWORD"], MIN_PASSWORD_LENGTH)
        )
    if config.get("REDIS_METRICS_ENABLED", True):
        problems.append(
            _secret_problem("REDIS_METRICS_TOKEN", config["REDIS_METRICS_TOKEN"], MIN_SECRET_LENGTH)
        )
    found = [problem for problem in problems if problem]
    if found:
        raise UnsafeSettings(
            "Refusing to start outside debug mode: "
            + "; ".join(found)
            + f". Generate each secret with {_GENERATE}. For a local demo with "
            "known credentials, run `make run`."
        )
