"""Demo users. Passwords are kept only as hashes; set ``DEMO_USERS`` in the
config to replace them."""

from __future__ import annotations

import functools
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash


@functools.cache
def _dummy_hash() -> str:
    """A hash to compare against for unknown users, so that a login for a
    name that does not exist costs as much as one with a wrong password.
    Made at the first such login, not at import."""
    return generate_password_hash("not-a-user")


def default_users(password: str) -> dict[str, dict[str, Any]]:
    """alice (a user) and admin (an administrator), both with ``password``
    (``DEMO_PASSWORD``)."""
    return {
        "alice": {"password_hash": generate_password_hash(password), "roles": ["user"]},
        "admin": {"password_hash": generate_password_hash(password), "roles": ["user", "admin"]},
    }


def authenticate(
    users: dict[str, dict[str, Any]], username: str, password: str
) -> dict[str, Any] | None:
    """The user record if the password matches, else None."""
    user = users.get(username)
    stored = user["password_hash"] if user else _dummy_hash()
    if check_password_hash(stored, password) and user is not None:
        return user
    return None
