"""The contender apps, one per gunicorn server: ``BENCH_APP`` picks it.

Every app answers the same route with the same bytes, so that only the
thing measured differs between contenders.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, Response, jsonify

# What every cached view returns: a small JSON document, serialised once.
PAYLOAD = json.dumps(
    {"items": [{"id": i, "name": f"item-{i}", "price": i * 1.25} for i in range(24)]},
    separators=(",", ":"),
).encode()
JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256"
JWT_IDENTITY = "bench-user"
CACHED_PATH = "/item"
# A page-sized answer for the conditional GET: what a 304 saves grows with it.
PAGE_PATH = "/page"
PAGE = (
    "<!doctype html><title>Catalogue</title><ul>"
    + "".join(f"<li><a href='/items/{i}'>item {i}</a> at {i * 1.25:.2f}</li>" for i in range(600))
    + "</ul>"
).encode()
PROTECTED_PATH = "/me"
HEALTH_PATH = "/health/redis"
# Where the harness stores PAYLOAD for the one-GET app.
FLOOR_KEY = "bench:floor"


def _payload() -> Response:
    return Response(PAYLOAD, mimetype="application/json")


def _page() -> Response:
    return Response(PAGE, mimetype="text/html")


def ceiling() -> Flask:
    """The same bytes with no I/O at all: what any cache hit can at best reach."""
    app = Flask(__name__)
    app.add_url_rule(CACHED_PATH, "item", _payload)
    return app


def one_get() -> Flask:
    """One redis-py GET of the stored bytes and nothing else: no key to
    compute, no headers to restore, no counters. A cache that costs one
    round trip per hit cannot be faster than this."""
    import redis

    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    def item() -> Response:
        return Response(client.get(FLOOR_KEY), mimetype="application/json")

    app.add_url_rule(CACHED_PATH, "item", item)
    return app


def fog_cached(near: bool = False) -> Flask:
    from flask_fogredis import FogRedis

    app = Flask(__name__)
    app.config.update(REDIS_URL=os.environ["REDIS_URL"], REDIS_NEAR_CACHE=near)
    fog = FogRedis(app)
    app.add_url_rule(CACHED_PATH, "item", fog.cached("bench", ttl=3600)(_payload))
    app.add_url_rule(PAGE_PATH, "page", fog.cached("bench", ttl=3600)(_page))
    return app


def fog_cached_near() -> Flask:
    """@fog.cached with the near cache: repeated hits from process memory."""
    return fog_cached(near=True)


def flask_caching() -> Flask:
    from flask_caching import Cache

    app = Flask(__name__)
    cache = Cache(
        app,
        config={
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": os.environ["REDIS_URL"],
            "CACHE_DEFAULT_TIMEOUT": 3600,
        },
    )
    app.add_url_rule(CACHED_PATH, "item", cache.cached(timeout=3600)(_payload))
    return app


def _jwt_app() -> tuple[Flask, Any]:
    from flask_jwt_extended import JWTManager, get_jwt_identity, jwt_required

    app = Flask(__name__)
    app.config["JWT_SECRET_KEY"] = JWT_SECRET

    @jwt_required()
    def me() -> Response:
        return jsonify(user=get_jwt_identity())

    app.add_url_rule(PROTECTED_PATH, "me", me)
    return app, JWTManager(app)


def jwt_fog(near: bool = False) -> Flask:
    """Our revocation check: the jti and the identity's log-out-everywhere
    marker, in one round trip."""
    from flask_fogredis import FogRedis

    app, _ = _jwt_app()
    app.config.update(REDIS_URL=os.environ["REDIS_URL"], REDIS_NEAR_CACHE=near)
    FogRedis(app)
    return app


def jwt_fog_near() -> Flask:
    """The same check answered from the near cache after the first request."""
    return jwt_fog(near=True)


def jwt_recipe() -> Flask:
    """flask-jwt-extended's documented Redis blocklist: a client built from
    host and port, and a loader that GETs the jti."""
    import redis

    app, manager = _jwt_app()
    blocklist = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)

    @manager.token_in_blocklist_loader
    def revoked(jwt_header: dict[str, Any], jwt_payload: dict[str, Any]) -> bool:
        return blocklist.get(jwt_payload["jti"]) is not None

    return app


def jwt_none() -> Flask:
    """The same protected view with no revocation check at all."""
    app, _ = _jwt_app()
    return app


def health() -> Flask:
    """Our app as a service would run it: ``/health/redis`` comes with
    ``init_app``. Redis is down (``REDIS_URL`` points at a dead port)."""
    from flask_fogredis import FogRedis

    app = Flask(__name__)
    app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    FogRedis(app)
    return app


NEAR_FILL_PATH = "/near-fill"


def _rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def near_memory() -> Flask:
    """The near cache at its default bounds: ``/near-fill?count=&size=``
    fills this worker's near cache with ``count`` memoized values of
    ``size`` bytes and reports its resident size before and after."""
    import gc

    from flask import request

    from flask_fogredis import FogRedis

    app = Flask(__name__)
    app.config.update(REDIS_URL=os.environ["REDIS_URL"], REDIS_NEAR_CACHE=True)
    fog = FogRedis(app)

    def fill() -> Response:
        count = int(request.args["count"])
        size = int(request.args["size"])
        value = b"x" * size
        near = fog.state().cache.near
        assert near is not None

        @fog.memoize(f"near-{size}", ttl=3600)
        def remember(n: int) -> bytes:
            return value

        near.flush()
        gc.collect()
        before = _rss_bytes()
        for _ in range(3):  # stores, then reads into memory, then hits
            for n in range(count):
                remember(n)
        gc.collect()
        after = _rss_bytes()
        stats = near.stats()
        near.flush()
        gc.collect()
        return jsonify(
            before=before,
            after=after,
            flushed=_rss_bytes(),
            entries=stats["entries"],
            bytes=stats["bytes"],
            max_entries=near.max_entries,
            max_bytes=near.max_bytes,
        )

    app.add_url_rule(NEAR_FILL_PATH, "fill", fill)
    return app


APPS = {
    "ceiling": ceiling,
    "one_get": one_get,
    "fog_cached": fog_cached,
    "fog_cached_near": fog_cached_near,
    "flask_caching": flask_caching,
    "jwt_fog": jwt_fog,
    "jwt_fog_near": jwt_fog_near,
    "jwt_recipe": jwt_recipe,
    "jwt_none": jwt_none,
    "health": health,
    "near_memory": near_memory,
}


def create_app() -> Flask:
    """The app named by ``BENCH_APP``: the gunicorn entry point."""
    return APPS[os.environ["BENCH_APP"]]()
