"""Login, refresh with rotation, logout, log out everywhere, and an admin's
revoke. Every revocation goes through FogRedis, so it holds on every worker."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt,
    get_jwt_identity,
    jwt_required,
)

from flask_fogredis import TokenError

from .errors import InvalidInput, json_body
from .extensions import fog
from .users import authenticate

auth = Blueprint("auth", __name__)


def _tokens(username: str, roles: list[str], auth_time: int) -> dict[str, str]:
    """A new access and refresh pair. ``auth_time`` (the standard claim: when
    the user logged in) stays that of the login through every rotation, so
    "log out everywhere" can refuse the whole session, however recently its
    tokens were minted."""
    claims = {"roles": roles, "auth_time": auth_time}
    return {
        "access_token": create_access_token(username, additional_claims=claims),
        "refresh_token": create_refresh_token(username, additional_claims=claims),
    }


@auth.post("/auth/login")
def login() -> tuple[dict[str, Any], int]:
    body = json_body(username=str, password=str)
    user = authenticate(current_app.config["DEMO_USERS"], body["username"], body["password"])
    if user is None:
        return {"error": "Wrong username or password."}, 401
    return _tokens(body["username"], user["roles"], int(time.time())), 200


@auth.post("/auth/refresh")
@jwt_required(refresh=True)
def refresh() -> tuple[dict[str, Any], int]:
    """A new pair; the refresh token used is revoked, so it works once, even
    when the same token is sent twice at the same moment. Roles are read
    again from the user store, so a demoted user loses them at the next
    refresh; the login time is carried over."""
    old = get_jwt()
    if not fog.revoke_token(old):
        return {"error": "This refresh token was already used."}, 401
    username = get_jwt_identity()
    user = current_app.config["DEMO_USERS"].get(username)
    if user is None:
        return {"error": "This user no longer exists."}, 401
    return _tokens(username, user["roles"], old.get("auth_time", old["iat"])), 200


@auth.post("/auth/logout")
@jwt_required()
def logout() -> dict[str, Any]:
    """Revoke this access token, and the refresh token if the body has it.
    The body is checked first, so that bad input revokes nothing."""
    body = _optional_body()
    refresh_payload = None
    if "refresh_token" in body:
        refresh_token = body["refresh_token"]
        if not isinstance(refresh_token, str):
            raise InvalidInput("Field refresh_token has the wrong type.")
        refresh_payload = _decode(refresh_token)
        if refresh_payload.get("type") != "refresh" or (
            refresh_payload.get("sub") != get_jwt_identity()
        ):
            raise InvalidInput("refresh_token is not a refresh token of this user.")
    fog.revoke_token(get_jwt())
    if refresh_payload is None:
        return {"revoked": ["access"]}
    fog.revoke_token(refresh_payload)
    return {"revoked": ["access", "refresh"]}


@auth.post("/auth/logout-everywhere")
@jwt_required()
def logout_everywhere() -> dict[str, Any]:
    fog.revoke_all_tokens(get_jwt_identity())
    return {"revoked": "all"}


@auth.post("/admin/revoke")
@jwt_required()
def admin_revoke() -> tuple[dict[str, Any], int]:
    """An administrator revokes one token (``jti``) or every token of a user."""
    if "admin" not in get_jwt().get("roles", []):
        return {"error": "Administrators only."}, 403
    body = _optional_body()
    if isinstance(body.get("username"), str) and body["username"]:
        fog.revoke_all_tokens(body["username"])
        return {"revoked": {"username": body["username"]}}, 200
    if isinstance(body.get("jti"), str) and body["jti"]:
        identity = body.get("identity")
        if identity is not None and not isinstance(identity, str):
            raise InvalidInput("identity must be a string (the token's username).")
        try:
            fog.blacklist_token(
                body["jti"], current_app.config["JWT_REFRESH_TOKEN_EXPIRES"], identity=identity
            )
        except TokenError:
            # On Redis Cluster a jti is stored next to its identity's marker.
            raise InvalidInput(
                "On Redis Cluster give the token's identity too: "
                '{"jti": "...", "identity": "<username>"}.'
            ) from None
        return {"revoked": {"jti": body["jti"]}}, 200
    raise InvalidInput("Give a non-empty jti or username (strings).")


@auth.get("/me")
@jwt_required()
def me() -> dict[str, Any]:
    return {"username": get_jwt_identity(), "roles": get_jwt().get("roles", [])}


def _optional_body() -> dict[str, Any]:
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    return body


def _decode(token: str) -> dict[str, Any]:
    try:
        return decode_token(token, allow_expired=True)
    except Exception:  # any way a token can be malformed
        raise InvalidInput("refresh_token is not a valid token.") from None
