"""JWT revocation for flask-jwt-extended.

Two kinds of entry, both read by one MGET per request:

- ``<prefix>:jwt:jti:<jti>``: one token is revoked. It lives as long as the
  token could still be accepted: ``exp`` minus now, plus ``JWT_DECODE_LEEWAY``
  twice (once for the checking host, once for a revoking host whose clock is
  ahead); forever for a token without ``exp``.
- ``<prefix>:jwt:sub:<identity>``: every session of that identity that began
  up to a time is revoked ("log out everywhere"). The time is Redis's own
  clock, and it only moves forward. A session begins at the token's
  ``auth_time`` claim when it has one (carried through refreshes), else at
  its ``iat``. Both are whole seconds, and the comparison adds
  ``JWT_DECODE_LEEWAY`` on the refusing side: a token issued in the same
  second as the revocation, or within the leeway after it, is refused too.

A token without ``jti`` (flask-jwt-extended allows it) is still checked
against log out everywhere.

On Redis Cluster both keys carry the identity as a hash tag,
``<prefix>:jwt:{<identity>}:jti:<jti>`` and
``<prefix>:jwt:{<identity>}:sub:<identity>``, so that they share a slot and
the MGET stays one command on one node. A revocation by bare ``jti`` must
then name the identity too; without it, it is refused rather than written
where no check would look.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from flask import Flask, Response, current_app, jsonify

from ._config import (
    EXTENSION_KEY,
    RevocationSettings,
    Settings,
    argument_seconds,
    identity_claim,
    leeway_of,
)
from ._connections import translated
from ._errors import (
    EvictionPolicyError,
    FogRedisError,
    RevocationUnavailableError,
    TokenError,
)
from ._forking import renew_locks_after_fork
from ._logs import RateLimitedLog
from ._telemetry import RevocationSpan, refused, revoked_signal
from ._topology import Topology, write_acknowledged

if TYPE_CHECKING:
    from ._near import NearCache
    from ._stats import Stats

logger = logging.getLogger("flask_fogredis")

JWT_EXTENSION_KEY = "flask-jwt-extended"
# Policies that let Redis drop keys with (volatile-*) or without a TTL.
_SAFE_POLICIES = ("noeviction",)

# Seconds before a maxmemory-policy that could not be read is read again.
_POLICY_RETRY = 30

# How long a revocation waits to see its own invalidation go out.
_INVALIDATION_WAIT = 0.1

BlocklistLoader = Callable[[dict[str, Any], dict[str, Any]], bool]

# Log out everywhere, atomically: the marker becomes Redis's own time unless
# it already holds a later one (a server whose clock went back, after a
# failover say), and its lifetime only grows. ARGV[1]: milliseconds, or -1
# for forever. One key, so it runs on Redis Cluster as on one Redis.
_MARK_SCRIPT = """
local now = redis.call('TIME')
local value = tonumber(now[1]) + tonumber(now[2]) / 1000000
local old = redis.call('GET', KEYS[1])
old = old and tonumber(old)
if old and old > value then value = old end
local text = string.format('%.6f', value)
local ttl = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if ttl < 0 or left == -1 then
  redis.call('SET', KEYS[1], text)
else
  redis.call('SET', KEYS[1], text, 'PX', math.max(ttl, left))
end
return text
"""


def revocation_prefix(key_prefix: str) -> str:
    """What every revocation key starts with."""
    return f"{key_prefix}:jwt:"


class Revocations:
    """The blocklist of one app."""

    # OpenTelemetry's tracer when tracing is on (set by the state builder).
    tracer: Any = None

    def __init__(
        self,
        client: Any,
        settings: Settings,
        section: RevocationSettings,
        topology: Topology,
        stats: Stats,
        near: NearCache | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self.auto_register = section.auto_register
        self.fail_open = section.fail_open
        self.strict_eviction = section.strict_eviction
        self.retry_after = section.retry_after
        self.max_lifetime = section.max_lifetime
        self.wait_replicas = section.wait_replicas
        self.wait_timeout = section.wait_timeout
        self.near = near
        # Where keys of one identity must share a slot (Cluster), its keys
        # carry it as a hash tag, and a jti is found only with its identity.
        self._tagger = topology.key_tagger
        self._config_replies = topology.config_replies
        self.prefix = revocation_prefix(settings.key_prefix)
        self._jti_prefix = f"{self.prefix}jti:"
        self._sub_prefix = f"{self.prefix}sub:"
        self._policy_checked = False
        self._policy_retry_at = 0.0
        self._policy_lock = threading.Lock()
        renew_locks_after_fork(self, "_policy_lock")
        self._outage_log = RateLimitedLog(logger, interval=30.0)
        self._stats = stats
        # The leeway setting last read, as given and in seconds.
        self._leeway_memo: tuple[object, float] | None = None

    # -- keys -----------------------------------------------------------

    @property
    def needs_identity(self) -> bool:
        """Whether a revocation by jti needs the token's identity too (on
        Redis Cluster, where it is stored next to the identity's marker)."""
        return self._tagger is not None

    def _jti_key(self, jti: str, identity: object = None) -> str:
        if self._tagger is not None and identity is not None:
            return f"{self.prefix}{_tag(self._tagger, _identity(identity))}:jti:{jti}"
        return self._jti_prefix + jti

    def _sub_key(self, identity: object) -> str:
        name = _identity(identity)
        if self._tagger is not None:
            return f"{self.prefix}{_tag(self._tagger, name)}:sub:{name}"
        return self._sub_prefix + name

    def _bare_jti_key(self, jti: str, identity: object) -> str:
        if self._tagger is not None and identity is None:
            raise TokenError(
                "On Redis Cluster a revocation by jti needs the token's identity too "
                "(identity=...): the check reads the jti where the identity's marker is."
            )
        return self._jti_key(jti, identity)

    # -- writing --------------------------------------------------------

    def revoke(self, payload: Mapping[str, Any], leeway: float) -> bool:
        """Revoke one decoded token; False (nothing written) if it has
        already expired beyond the leeway, or was already revoked: of
        concurrent calls for one token, exactly one gets True."""
        jti = _jti(payload)
        identity = payload.get(identity_claim(current_app.config)) if self.needs_identity else None
        exp = payload.get("exp")
        ttl_ms: int | None = None
        if exp is not None:
            # A checking host accepts it until exp + leeway by its clock; this
            # host's clock may be ahead of it by as much again.
            ttl_ms = math.ceil((float(exp) + 2 * leeway - time.time()) * 1000)
            if ttl_ms <= 0:
                return False
        written = self._write(self._jti_key(jti, identity), ttl_ms, only_new=True)
        if written:
            revoked_signal(jti, payload.get(identity_claim(current_app.config)), everywhere=False)
        return written

    def blocklist(
        self, jti: str, ttl: int | float | timedelta | None, identity: object = None
    ) -> None:
        """Revoke ``jti`` for ``ttl`` seconds (None: forever). On Redis
        Cluster ``identity`` (the token's) is required."""
        if not isinstance(jti, str) or not jti:
            raise TokenError("jti must be a non-empty string.")
        key = self._bare_jti_key(jti, identity)
        ttl_ms = None
        if ttl is not None:
            seconds = argument_seconds("ttl", ttl)
            ttl_ms = math.ceil(seconds * 1000)
        self._write(key, ttl_ms)
        revoked_signal(jti, identity, everywhere=False)

    def revoke_all(self, identity: object, lifetime: float | None) -> None:
        """Refuse every token of ``identity`` whose session began up to now
        (Redis's clock). The marker lives at least ``lifetime`` seconds
        (None: forever), and neither its time nor its lifetime ever goes
        back. Raises :class:`RedisUnavailableError` (or
        :class:`RedisCommandError`) if it could not be stored."""
        ttl_ms = -1 if lifetime is None else math.ceil(lifetime * 1000)
        key = self._sub_key(identity)
        self._write(key, None, command=["EVAL", _MARK_SCRIPT, 1, key, ttl_ms])
        revoked_signal(None, identity, everywhere=True)

    def _write(
        self,
        key: str,
        ttl_ms: int | None,
        only_new: bool = False,
        command: list[Any] | None = None,
    ) -> bool:
        """SET ``key``; with ``only_new``, only if it is absent (NX); or run
        ``command``, a write to ``key``. Whether it was written."""
        self.check_eviction_policy()
        args: list[Any] = command or ["SET", key, str(int(time.time()))]
        if command is None and ttl_ms is not None:
            args += ["PX", ttl_ms]
        if command is None and only_new:
            args.append("NX")
        sent = self.near.expect(key) if self.near is not None else None
        if self.wait_replicas:
            reply = write_acknowledged(
                self._client,
                self._settings,
                key,
                args,
                self.wait_replicas,
                self.wait_timeout,
            )
        else:
            with translated(self._settings):
                reply = self._client.execute_command(*args)
        if not reply:
            return False
        self._stats.count("revocations")
        if sent is not None:
            # Return once Redis has sent the invalidation to every process:
            # the caller's next request, on any worker, then finds it there.
            sent.wait(_INVALIDATION_WAIT)
        return True

    # -- reading --------------------------------------------------------

    def is_blocklisted(self, jti: str, identity: object = None) -> bool:
        """Whether ``jti`` itself is revoked (log-out-everywhere aside). On
        Redis Cluster ``identity`` (the token's) is required."""
        key = self._bare_jti_key(jti, identity)
        self.check_eviction_policy()
        with translated(self._settings):
            return bool(self._client.execute_command("EXISTS", key))

    def is_revoked(
        self,
        payload: Mapping[str, Any],
        identity_claim: str,
        config: Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether the token is revoked, by its ``jti`` or by a log out
        everywhere of its identity: one round trip (none for a token with
        neither). ``config``: the app's (default: the current app's)."""
        self._stats.count("revocation_checks")
        jti = payload.get("jti")
        identity = payload.get(identity_claim)
        keys = []
        if jti is not None:
            keys.append(self._jti_key(str(jti), identity))
        if identity is not None:
            keys.append(self._sub_key(identity))
        if not keys:
            return False
        self.check_eviction_policy()
        values = self._read(keys)
        if jti is not None and values[0] is not None:
            return True
        marker = values[-1] if identity is not None else None
        if marker is None:
            return False
        try:
            revoked_at = float(marker)
        except (TypeError, ValueError):
            # Not a time FogRedis wrote: it cannot vouch for any token.
            self._outage_log.warning(
                "revocation-marker",
                "A log-out-everywhere marker is not a time; that identity's tokens are refused",
            )
            return True
        began = _session_start(payload)
        # No start time: it cannot be shown to postdate the revocation.
        leeway = self._leeway(current_app.config if config is None else config)
        return began is None or began <= revoked_at + leeway

    def _leeway(self, config: Mapping[str, Any]) -> float:
        """``JWT_DECODE_LEEWAY`` in seconds, parsed again only when the
        app's setting changes (it may after ``init_app``)."""
        raw = config.get("JWT_DECODE_LEEWAY", 0)
        memo = self._leeway_memo
        if memo is not None and memo[0] is raw:
            return memo[1]
        seconds = leeway_of(config)
        self._leeway_memo = (raw, seconds)
        return seconds

    def _read(self, keys: list[str]) -> list[Any]:
        """MGET ``keys``, from the near cache when it has them all."""
        near = self.near
        if near is not None:
            values = near.lookup(keys)
            if values is not None:
                return values
            pending = near.begin(keys)
        try:
            with translated(self._settings):
                values = self._client.execute_command("MGET", *keys)
        except BaseException:
            if near is not None:
                near.abandon(pending)
            raise
        if near is not None:
            near.fill(pending, zip(keys, values))
        return list(values)

    def check_eviction_policy(self) -> None:
        """Once per process: warn (or, strict, raise) if Redis may evict.

        A policy that cannot be read (a shard down) blocks nothing unless
        strict mode asks for it (then it raises :class:`RedisUnavailableError`):
        it is logged, and read again after ``_POLICY_RETRY`` seconds."""
        if self._policy_checked or time.monotonic() < self._policy_retry_at:
            return
        # Outside strict mode the check only warns: a request does not wait
        # for another thread's check.
        if not self._policy_lock.acquire(blocking=self.strict_eviction):
            return
        try:
            if self._policy_checked:
                return
            try:
                with translated(self._settings):
                    policy = self._read_policy()
            except FogRedisError as exc:
                if self.strict_eviction:
                    raise
                self._policy_retry_at = time.monotonic() + _POLICY_RETRY
                self._outage_log.warning(
                    "eviction-policy",
                    "Cannot read maxmemory-policy now (%s); reading it again in %d s",
                    exc,
                    _POLICY_RETRY,
                )
                return
            self._policy_checked = True
        finally:
            self._policy_lock.release()
        if policy is None or policy in _SAFE_POLICIES:
            return
        message = (
            f"Redis at {self._settings.target.display} has maxmemory-policy {policy}: "
            "when memory fills it may evict revoked tokens, which would then be accepted "
            "again. Use maxmemory-policy noeviction for the Redis that holds revocations "
            "(and give the cache its own, evicting Redis)."
        )
        if self.strict_eviction:
            self._policy_checked = False
            raise EvictionPolicyError(message)
        logger.warning(message)

    def _read_policy(self) -> str | None:
        if self._settings.target.scheme == "memory":
            return None
        try:
            replies = self._config_replies(self._client, "maxmemory-policy")
        except redis.ResponseError as exc:
            # Only a refusal means "not allowed here"; BUSY and the like are
            # outages, answered as such, and the policy is read again later.
            if not isinstance(exc, redis.exceptions.NoPermissionError) and not str(
                exc
            ).lower().startswith("unknown command"):
                raise
            logger.info(
                "Cannot read maxmemory-policy (CONFIG is disabled); make sure it is "
                "noeviction on the Redis that holds revocations."
            )
            return None
        # Every server that holds revocations counts: the first that may evict.
        found = sorted({p for p in map(_policy, replies) if p})
        unsafe = [p for p in found if p not in _SAFE_POLICIES]
        return (unsafe or found)[0] if found else None

    # -- flask-jwt-extended ---------------------------------------------

    def check_request(self, jwt_payload: Mapping[str, Any]) -> bool:
        """The per-request check: fail closed (or open, if configured)
        whenever Redis cannot answer it, whatever the error: unreachable,
        busy, loading, refused by an ACL, out of memory, a read-only
        replica. Raises :class:`RevocationUnavailableError` when closed."""
        if self.tracer is not None:
            with RevocationSpan(self.tracer) as span:
                return span.revoked(self._check(jwt_payload))
        return self._check(jwt_payload)

    def _check(self, jwt_payload: Mapping[str, Any]) -> bool:
        try:
            config = current_app.config
            return self.is_revoked(jwt_payload, identity_claim(config), config)
        except FogRedisError as exc:
            self._stats.count("redis_errors")
            if isinstance(exc, EvictionPolicyError) or not self.fail_open:
                self._outage_log.warning(
                    "revocation-closed", "Token refused: the blocklist cannot be read (%s)", exc
                )
                error = RevocationUnavailableError(str(exc), self.retry_after)
                refused(error)
                raise error from None
            self._outage_log.warning(
                "revocation-open",
                "Token accepted unchecked (REDIS_JWT_FAIL_OPEN): the blocklist cannot be read (%s)",
                exc,
            )
            return False


# A JWTManager keeps one blocklist callback for every app it serves, so the
# callback registered is this one function, which finds the current app's
# blocklist when called. Loaders the user registered are kept per manager.
_user_loaders: weakref.WeakKeyDictionary[Any, BlocklistLoader] = weakref.WeakKeyDictionary()
_managers_seen: weakref.WeakSet[Any] = weakref.WeakSet()


def blocklist_loader(jwt_header: dict[str, Any], jwt_payload: dict[str, Any]) -> bool:
    """The token-in-blocklist callback FogRedis registers: revoked if the
    current app's blocklist or the user's own loader says so."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for state in app.extensions.get(EXTENSION_KEY, {}).values():
        revocations: Revocations = state.revocations
        if revocations.auto_register and revocations.check_request(jwt_payload):
            return True
    user_loader = _user_loaders.get(app.extensions.get(JWT_EXTENSION_KEY))
    return bool(user_loader(jwt_header, jwt_payload)) if user_loader else False


def install_loader(app: Flask) -> None:
    """Put :func:`blocklist_loader` on the app's JWTManager, if there is one,
    keeping a loader registered before it (one registered after it is kept
    by :func:`watch_jwt_managers`)."""
    manager = app.extensions.get(JWT_EXTENSION_KEY)
    if manager is None or not _checks_revocations(app):
        return
    current = manager._token_in_blocklist_callback
    if current is blocklist_loader:
        return
    if current.__module__ != "flask_jwt_extended.default_callbacks":
        if manager in _managers_seen:
            logger.warning(
                "A token_in_blocklist_loader registered after FogRedis replaced its "
                "loader; FogRedis put its own back and now consults both."
            )
        _user_loaders[manager] = current
    manager.token_in_blocklist_loader(blocklist_loader)
    _managers_seen.add(manager)


def _checks_revocations(app: Flask) -> bool:
    states = app.extensions.get(EXTENSION_KEY, {}).values()
    return any(state.revocations.auto_register for state in states)


_watch_lock = threading.Lock()
_watching = False


def watch_jwt_managers() -> None:
    """Keep the blocklist check on every app that has FogRedis, whatever
    the order of set-up, from its first check on, in any context (a
    ``test_request_context``, a Socket.IO handler): a JWTManager attached
    after FogRedis gets :func:`blocklist_loader` at once, and a
    ``token_in_blocklist_loader`` registered after it is consulted next to
    it instead of replacing it. Managers of apps without FogRedis behave as
    before. Does nothing without flask-jwt-extended; harmless to repeat."""
    global _watching
    with _watch_lock:
        if _watching:
            return
        try:
            from flask_jwt_extended import JWTManager
        except ImportError:
            return
        original_init_app = JWTManager.init_app
        original_register = JWTManager.token_in_blocklist_loader

        @functools.wraps(original_init_app)
        def init_app(self: Any, app: Flask, *args: Any, **kwargs: Any) -> None:
            original_init_app(self, app, *args, **kwargs)
            install_loader(app)

        @functools.wraps(original_register)
        def token_in_blocklist_loader(self: Any, callback: BlocklistLoader) -> BlocklistLoader:
            if self in _managers_seen and callback is not blocklist_loader:
                _user_loaders[self] = callback
                return callback
            return original_register(self, callback)

        JWTManager.init_app = init_app  # type: ignore[method-assign]
        JWTManager.token_in_blocklist_loader = token_in_blocklist_loader  # type: ignore[method-assign]
        _watching = True


def decode(token: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """A decoded payload from either form; an encoded token must verify (it
    may have expired)."""
    if not isinstance(token, str):
        return token
    try:
        from flask_jwt_extended import decode_token
    except ImportError:
        raise TokenError(
            "Revoking an encoded JWT needs flask-jwt-extended: "
            "pip install 'flask-fogredis[jwt]', or pass the decoded payload."
        ) from None
    try:
        return decode_token(token, allow_expired=True)
    except Exception as exc:  # PyJWT and flask-jwt-extended raise many kinds
        raise TokenError(f"The token cannot be decoded: {type(exc).__name__}") from None


def _jti(payload: Mapping[str, Any]) -> str:
    if not isinstance(payload, Mapping):
        raise TokenError("A token must be a decoded JWT payload (a dict) or an encoded JWT.")
    jti = payload.get("jti")
    if not jti or not isinstance(jti, str):
        raise TokenError("Missing claim: jti (the token cannot be revoked or checked without it)")
    return jti


def _policy(reply: Any) -> str | None:
    """maxmemory-policy from a CONFIG GET reply (a list, or a dict in RESP3)."""
    if isinstance(reply, dict):
        value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
    else:
        value = reply[1] if len(reply) > 1 else None
    return value.decode() if isinstance(value, bytes) else value


def _identity(identity: object) -> str:
    if identity is None:
        raise TokenError("identity must not be None.")
    return str(identity)


def _tag(tagger: Callable[[str], str], name: str) -> str:
    """The hash tag of an identity's keys. An empty tag (``{}``) would hash
    each whole key apart, so the empty identity gets the tag that braces get."""
    return tagger(name or "{}")


def _session_start(payload: Mapping[str, Any]) -> float | None:
    """When the token's session began: ``auth_time`` (OpenID Connect's
    claim, which rotations carry over), else ``iat``; None if neither is a
    number."""
    value = payload.get("auth_time", payload.get("iat"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def unavailable_response(exc: RevocationUnavailableError) -> tuple[Response, int, dict[str, str]]:
    """503 with Retry-After, naming no host, port or password."""
    key = current_app.config.get("JWT_ERROR_MESSAGE_KEY", "msg")
    body = jsonify({key: "Token revocation cannot be checked right now; try again shortly."})
    return body, 503, {"Retry-After": str(exc.retry_after)}
