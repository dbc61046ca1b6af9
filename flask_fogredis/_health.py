"""The health and metrics endpoints, registered by ``init_app``.

``GET /health/redis`` answers 200 when a PING round trip succeeds and 503
when it does not, within ``HEALTH_TIMEOUT``, from a check shared by every
request of the last ``HEALTH_CACHE_SECONDS``. Its default body names no host,
port, password, exception or INFO field; the detailed report needs the
credential the app configures.
"""

from __future__ import annotations

import hmac
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from ._config import EXTENSION_KEY, Settings, is_true
from ._connections import pool_stats
from ._errors import ConfigurationError
from ._metrics import CONTENT_TYPE, render
from ._probe import PingResult, info_number
from ._state import AppState
from ._telemetry import traced_health
from ._topology import topology_details

health_blueprint = Blueprint("fogredis_health", __name__)
metrics_blueprint = Blueprint("fogredis_metrics", __name__)

_NO_STORE = {"Cache-Control": "no-store"}


logger = logging.getLogger("flask_fogredis")


def register_endpoints(app: Flask, state: AppState) -> None:
    """Serve ``state``'s health endpoint and the app's metrics endpoint, as
    configured. Raises :class:`ConfigurationError` when a path is already a
    route of the app. Metrics paths are shared: the metrics of every config
    prefix on the same path come from one endpoint."""
    endpoints, prefix = state.endpoints, state.settings.prefix
    name = prefix.lower()
    new_metrics = endpoints.metrics_enabled and not _serves_metrics(app, endpoints.metrics_url)
    # Both paths are checked before either is served: no half-registered state.
    if endpoints.health_enabled:
        _claim(app, endpoints.health_url, state.settings, "HEALTH")
    if new_metrics:
        _claim(app, endpoints.metrics_url, state.settings, "METRICS")
    if endpoints.health_enabled:
        app.register_blueprint(
            health_blueprint,
            name=f"fogredis_health_{name}",
            url_prefix=endpoints.health_url,
            url_defaults={"config_prefix": prefix},
        )
    if new_metrics:
        app.register_blueprint(
            metrics_blueprint,
            name=f"fogredis_metrics_{name}",
            url_prefix=endpoints.metrics_url,
            url_defaults={"config_prefix": prefix},
        )
    claimed = []
    if endpoints.health_enabled:
        claimed.append((endpoints.health_url, state.settings.key("HEALTH_URL")))
    if new_metrics:
        claimed.append((endpoints.metrics_url, state.settings.key("METRICS_URL")))
    _watch_late_routes(app, claimed)


# Per app: our paths that the app's own routes took after init_app, and the
# endpoint each one is handed to.
_stepped_aside: weakref.WeakKeyDictionary[Flask, dict[str, str]] = weakref.WeakKeyDictionary()


def _watch_late_routes(app: Flask, claimed: list[tuple[str, str]]) -> None:
    """A route the app adds after ``init_app`` at one of our paths (its own
    ``/metrics``, say) would be shadowed by ours: at the first request, ours
    steps aside for it, with one warning."""
    pending = [True]

    def check() -> None:
        if not pending:
            return
        pending.clear()
        for path, key in claimed:
            theirs = sorted(
                rule.endpoint
                for rule in app.url_map.iter_rules()
                if rule.rule.rstrip("/") == path.rstrip("/")
                and not rule.endpoint.startswith("fogredis_")
            )
            if theirs:
                _stepped_aside.setdefault(app, {})[path.rstrip("/") or "/"] = theirs[0]
                logger.warning(
                    "%s is both FogRedis's (%s) and the app's (%s, added after init_app); "
                    "the app's answers it. Set %s to another path to serve FogRedis's.",
                    path,
                    key,
                    ", ".join(theirs),
                    key,
                )

    app.before_request_funcs.setdefault(None, []).append(check)


def _theirs(path: str) -> Response | None:
    """The app's own answer at ``path``, when ours stepped aside for it."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    endpoint = _stepped_aside.get(app, {}).get(path.rstrip("/") or "/")
    if endpoint is None:
        return None
    arguments = {k: v for k, v in (request.view_args or {}).items() if k != "config_prefix"}
    answer: Response = app.make_response(app.ensure_sync(app.view_functions[endpoint])(**arguments))
    return answer


def _claim(app: Flask, path: str, settings: Settings, what: str) -> None:
    for rule in app.url_map.iter_rules():
        if rule.rule == path:
            url, enabled = settings.key(f"{what}_URL"), settings.key(f"{what}_ENABLED")
            raise ConfigurationError(
                f"{url} is {path!r}, which the app already serves ({rule.endpoint}): "
                f"set {url} to another path, or {enabled} = False."
            )


def _serves_metrics(app: Flask, path: str) -> bool:
    return any(
        rule.rule == path and rule.endpoint.startswith("fogredis_metrics_")
        for rule in app.url_map.iter_rules()
    )


def _states() -> dict[str, AppState]:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


@health_blueprint.get("")
def health(config_prefix: str) -> Response:
    """200 when Redis answered PONG in time, 503 otherwise; the detailed
    report with the right credential."""
    state = _states()[config_prefix]
    theirs = _theirs(state.endpoints.health_url)
    if theirs is not None:
        return theirs
    token = state.endpoints.details_token
    detailed = False
    if token is not None:
        credential = _bearer()
        if credential is not None and _matches(credential, token):
            detailed = True
        elif is_true(request.args.get("details", "")):
            return _refused(credential is None)
    results: list[PingResult] = []

    def check() -> dict[str, Any]:
        results.append(state.probe.result(state.endpoints.cache_seconds))
        return state.probe.report(results[0])

    body = traced_health(state.tracer, check)
    result = results[0]
    if detailed:
        body["details"] = _details(state, result)
    return _json(body, 200 if result.healthy else 503)


@metrics_blueprint.get("")
def metrics(config_prefix: str) -> Response:
    """The metrics of every config prefix served on this path, in the text
    format. When any of them sets a ``METRICS_TOKEN``, the path needs a
    credential: one that matches a prefix's token shows that prefix's series,
    and those of the prefixes here without a token."""
    states = _states()
    path = states[config_prefix].endpoints.metrics_url
    theirs = _theirs(path)
    if theirs is not None:
        return theirs
    here = {
        prefix: s
        for prefix, s in states.items()
        if s.endpoints.metrics_enabled and s.endpoints.metrics_url == path
    }
    tokens = {prefix: s.endpoints.metrics_token for prefix, s in here.items()}
    if any(token is not None for token in tokens.values()):
        credential = _bearer()
        if credential is None:
            return _refused(missing=True)
        # Every token is compared, so the time taken tells nothing of which.
        matched = {
            prefix
            for prefix, token in tokens.items()
            if token is not None and _matches(credential, token)
        }
        if not matched:
            return _refused(missing=False)
        here = {prefix: s for prefix, s in here.items() if prefix in matched or not tokens[prefix]}
    sources = [source for state in here.values() for source in state.sources()]
    return Response(render(sources), 200, {"Content-Type": CONTENT_TYPE, **_NO_STORE})


def _details(state: AppState, result: PingResult) -> dict[str, Any]:
    info = result.info or {}
    pool = pool_stats(state.pool)
    cache = {}
    for namespace, counts in state.stats.cache().items():
        looked_up = counts["hits"] + counts["misses"]
        rate = round(counts["hits"] / looked_up, 4) if looked_up else None
        cache[namespace] = {**counts, "hit_rate": rate}
    return {
        "redis_version": info.get("redis_version"),
        "role": info.get("role"),
        "used_memory": info_number(info.get("used_memory")),
        "maxmemory": info_number(info.get("maxmemory")),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "evicted_keys": info_number(info.get("evicted_keys")),
        "connected_clients": info_number(info.get("connected_clients")),
        "pool_in_use": pool["in_use"],
        "pool_idle": pool["idle"],
        "cache": cache,
        **topology_details(state.probe),
        **_cache_redis(state),
    }


def _cache_redis(state: AppState) -> dict[str, Any]:
    """The cache's own Redis (``CACHE_URL``), checked as the main one is:
    its health does not decide the answer's status (the cache serves
    without it), but the report shows it."""
    own = state.cache_redis
    if own is None:
        return {}
    result = own.probe.result(state.endpoints.cache_seconds)
    return {"cache_redis": {**own.probe.report(result), "pool_idle": pool_stats(own.pool)["idle"]}}


def _bearer() -> str | None:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def _matches(credential: str, token: str) -> bool:
    return hmac.compare_digest(credential.encode(), token.encode())


def _refused(missing: bool) -> Response:
    if missing:
        return _json(
            {"error": "this report needs a credential"},
            401,
            {"WWW-Authenticate": 'Bearer realm="fogredis"'},
        )
    return _json({"error": "the credential is not accepted"}, 403)


def _json(body: dict[str, Any], status: int, headers: Mapping[str, str] = _NO_STORE) -> Response:
    text = current_app.json.dumps(body)
    return Response(text, status, {**_NO_STORE, **headers}, mimetype="application/json")
