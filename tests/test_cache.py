"""The cache's logic, on the embedded store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, Response, make_response, request, session
from flask_jwt_extended import JWTManager, create_access_token, jwt_required

from flask_fogredis import CacheKeyError, CacheValueError, FogRedis

from .conftest import make_app
from .jwt_helpers import SECRET_KEY, bearer


@pytest.fixture
def cached_app() -> Iterator[tuple[Flask, FogRedis, list[str]]]:
    """An app with cached views that record each computation."""
    app = make_app(REDIS_URL="memory://", SECRET_KEY="s" * 32, JWT_SECRET_KEY=SECRET_KEY)
    JWTManager(app)
    fog = FogRedis(app)
    calls: list[str] = []

    @app.route("/items", methods=["GET", "POST"])
    @fog.cached("items", ttl=60)
    def items() -> dict[str, Any]:
        calls.append(request.full_path)
        return {"n": len(calls), "args": request.args.to_dict(flat=False)}

    @app.get("/status/<int:code>")
    @fog.cached("items")
    def status(code: int) -> tuple[str, int]:
        calls.append(f"status {code}")
        return "body", code

    @app.get("/headers/<kind>")
    @fog.cached("items")
    def headers(kind: str) -> Response:
        calls.append(kind)
        response = make_response("body")
        if kind == "cookie":
            response.set_cookie("a", "b")
        elif kind == "private":
            response.cache_control.private = True
        elif kind == "no-store":
            response.cache_control.no_store = True
        elif kind == "vary-cookie":
            response.vary.add("Cookie")
        elif kind == "custom":
            response.headers["X-Custom"] = "kept"
        return response

    @app.get("/session")
    @fog.cached("items")
    def per_session() -> dict[str, Any]:
        calls.append("session")
        return {"user": session.get("user")}

    @app.get("/lang")
    @fog.cached("lang", vary_on_headers=("Accept-Language",))
    def lang() -> str:
        calls.append("lang")
        return request.headers.get("Accept-Language", "none")

    @app.get("/me")
    @jwt_required()
    @fog.cached("me", vary_on_identity=True)
    def me() -> str:
        calls.append("me")
        from flask_jwt_extended import get_jwt_identity

        return str(get_jwt_identity())

    @app.get("/tenant")
    @fog.cached("tenant", key_func=lambda req: req.headers.get("X-Tenant", ""))
    def tenant() -> str:
        calls.append("tenant")
        return request.headers.get("X-Tenant", "")

    with app.app_context():
        yield app, fog, calls


def test_helper_round_trips_str_and_bytes(memory_app: tuple[Flask, FogRedis]) -> None:
    _, fog = memory_app
    assert fog.cache_get("ns", "k") is None
    assert fog.cache_set("ns", "k", "héllo") is True
    assert fog.cache_get("ns", "k") == "héllo"
    assert fog.cache_set("ns", "b", b"\xff\x00binary") is True
    assert fog.cache_get("ns", "b") == b"\xff\x00binary"
    assert fog.client.get("fog:cache:2:ns:k:k") == "héllo"  # stored as given
    assert fog.cache_delete("ns", "k") is True
    assert fog.cache_delete("ns", "k") is False
    assert fog.cache_get("ns", "k") is None


def test_bytes_come_back_as_bytes_without_decoding() -> None:
    app = make_app(REDIS_URL="memory://", REDIS_DECODE_RESPONSES=False)
    fog = FogRedis(app)
    with app.app_context():
        fog.cache_set("ns", "k", "text")
        assert fog.cache_get("ns", "k") == b"text"


def test_ttl_default_and_given(memory_app: tuple[Flask, FogRedis]) -> None:
    _, fog = memory_app
    fog.cache_set("ns", "default", "v")
    fog.cache_set("ns", "given", "v", ttl=30)
    fog.cache_set("ns", "delta", "v", ttl=timedelta(minutes=2))
    assert 299 <= fog.ttl("fog:cache:2:ns:k:default") <= 300
    assert 29 <= fog.ttl("fog:cache:2:ns:k:given") <= 30
    assert 119 <= fog.ttl("fog:cache:2:ns:k:delta") <= 120
    with pytest.raises(ValueError):
        fog.cache_set("ns", "k", "v", ttl=-1)


@pytest.mark.parametrize(("namespace", "key"), [("", "k"), ("ns", ""), (None, "k"), ("ns", 5)])
def test_empty_namespace_or_key_is_a_clear_error(
    memory_app: tuple[Flask, FogRedis], namespace: Any, key: Any
) -> None:
    _, fog = memory_app
    for call in (fog.cache_get, fog.cache_delete):
        with pytest.raises(CacheKeyError, match="non-empty string"):
            call(namespace, key)
    with pytest.raises(CacheKeyError):
        fog.cache_set(namespace, key, "v")
    if namespace in ("", None):
        with pytest.raises(CacheKeyError):
            fog.cache_clear_namespace(namespace)
        with pytest.raises(CacheKeyError):
            fog.cached(namespace)


def test_values_are_never_pickled(memory_app: tuple[Flask, FogRedis]) -> None:
    _, fog = memory_app
    with pytest.raises(CacheValueError, match="nothing is pickled"):
        fog.cache_set("ns", "k", {"a": 1})  # type: ignore[arg-type]
    assert isinstance(CacheValueError("x"), TypeError)


def test_clear_namespace_counts_and_spares_the_neighbours(
    memory_app: tuple[Flask, FogRedis],
) -> None:
    _, fog = memory_app
    for namespace in ("a", "a:b", "ab", "a*", "b"):
        for n in range(3):
            fog.cache_set(namespace, f"{n}", namespace)
    fog.cache_set("a", "b:0", "a's own")  # looks like namespace "a:b", key "0"
    assert fog.cache_clear_namespace("a") == 4
    assert fog.cache_get("a", "0") is None
    for namespace in ("a:b", "ab", "a*", "b"):
        assert [fog.cache_get(namespace, f"{n}") for n in range(3)] == [namespace] * 3
    assert fog.cache_clear_namespace("a*") == 3
    assert fog.cache_get("ab", "0") == "ab"
    assert fog.cache_clear_namespace("nothing-here") == 0


def test_miss_then_hit_without_calling_the_view(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    first = client.get("/items")
    second = client.get("/items")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.get_data() == second.get_data()
    assert second.content_type == "application/json"
    assert second.headers["Age"] == "0"
    assert calls == ["/items?"]


def test_query_string_in_canonical_order(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    assert client.get("/items?a=1&b=2").headers["X-Cache"] == "MISS"
    assert client.get("/items?b=2&a=1").headers["X-Cache"] == "HIT"
    assert client.get("/items?a=2&b=2").headers["X-Cache"] == "MISS"
    # Repeated names keep their order: a list in another order is another list.
    assert client.get("/items?x=1&x=2").headers["X-Cache"] == "MISS"
    assert client.get("/items?x=2&x=1").headers["X-Cache"] == "MISS"
    assert len(calls) == 4


def test_head_is_answered_from_the_cache(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    body = client.get("/items").get_data()
    head = client.head("/items")
    assert head.headers["X-Cache"] == "HIT"
    assert head.get_data() == b""
    assert head.headers["Content-Length"] == str(len(body))
    assert len(calls) == 1


def test_head_first_fills_the_cache_for_get(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    assert client.head("/items").headers["X-Cache"] == "MISS"
    get = client.get("/items")
    assert get.headers["X-Cache"] == "HIT"
    assert get.json is not None and get.json["n"] == 1
    assert len(calls) == 1


def test_other_methods_are_not_cached(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, _calls = cached_app
    client = app.test_client()
    client.get("/items")
    post = client.post("/items")
    assert "X-Cache" not in post.headers
    assert post.json is not None and post.json["n"] == 2


@pytest.mark.parametrize("code", [201, 204, 301, 404, 500])
def test_only_200_is_cached(cached_app: tuple[Flask, FogRedis, list[str]], code: int) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    assert client.get(f"/status/{code}").status_code == code
    assert client.get(f"/status/{code}").headers["X-Cache"] == "MISS"
    assert len(calls) == 2


@pytest.mark.parametrize("kind", ["cookie", "private", "no-store", "vary-cookie"])
def test_personal_responses_are_never_stored(
    cached_app: tuple[Flask, FogRedis, list[str]], kind: str
) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    client.get(f"/headers/{kind}")
    assert client.get(f"/headers/{kind}").headers["X-Cache"] == "MISS"
    assert calls == [kind, kind]


def test_a_view_that_reads_the_session_is_not_stored(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    client.get("/session")
    assert client.get("/session").headers["X-Cache"] == "MISS"
    assert calls == ["session", "session"]


def test_headers_are_stored_with_the_body(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, _ = cached_app
    client = app.test_client()
    client.get("/headers/custom")
    hit = client.get("/headers/custom")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["X-Custom"] == "kept"
    assert hit.get_data() == b"body"


def test_vary_on_a_header(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    fr = client.get("/lang", headers={"Accept-Language": "fr"})
    de = client.get("/lang", headers={"Accept-Language": "de"})
    fr_again = client.get("/lang", headers={"Accept-Language": "fr"})
    assert (fr.get_data(), de.get_data(), fr_again.get_data()) == (b"fr", b"de", b"fr")
    assert fr_again.headers["X-Cache"] == "HIT"
    assert calls == ["lang", "lang"]


def test_vary_on_identity_keeps_users_apart(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    alice, bob = create_access_token("alice"), create_access_token("bob")
    assert client.get("/me", headers=bearer(alice)).get_data() == b"alice"
    assert client.get("/me", headers=bearer(bob)).get_data() == b"bob"
    again = client.get("/me", headers=bearer(alice))
    assert (again.get_data(), again.headers["X-Cache"]) == (b"alice", "HIT")
    assert calls == ["me", "me"]


def test_vary_on_identity_verifies_the_token_itself() -> None:
    app = make_app(REDIS_URL="memory://", JWT_SECRET_KEY=SECRET_KEY)
    JWTManager(app)
    fog = FogRedis(app)

    @app.get("/greeting")
    @fog.cached("greeting", vary_on_identity=True)
    def greeting() -> str:
        from flask_jwt_extended import get_jwt_identity

        return f"hello {get_jwt_identity()}"

    client = app.test_client()
    with app.app_context():
        alice = create_access_token("alice")
    assert client.get("/greeting").get_data() == b"hello None"
    assert client.get("/greeting", headers=bearer(alice)).get_data() == b"hello alice"
    assert client.get("/greeting").get_data() == b"hello None"


def test_vary_on_a_function_of_the_request(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, _, calls = cached_app
    client = app.test_client()
    assert client.get("/tenant", headers={"X-Tenant": "a"}).get_data() == b"a"
    assert client.get("/tenant", headers={"X-Tenant": "b"}).get_data() == b"b"
    assert client.get("/tenant", headers={"X-Tenant": "a"}).headers["X-Cache"] == "HIT"
    assert calls == ["tenant", "tenant"]


def test_clear_namespace_invalidates_cached_views(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, fog, _calls = cached_app
    client = app.test_client()
    client.get("/items")
    client.get("/items?page=2")
    fog.cache_set("items", "helper", "v")
    client.get("/lang")
    assert fog.cache_clear_namespace("items") == 3
    assert client.get("/items").headers["X-Cache"] == "MISS"
    assert client.get("/lang").headers["X-Cache"] == "HIT"


def test_ttl_is_honoured() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    calls: list[int] = []

    @app.get("/short")
    @fog.cached("short", ttl=1)
    def short() -> str:
        calls.append(1)
        return str(len(calls))

    client = app.test_client()
    assert client.get("/short").get_data() == b"1"
    assert client.get("/short").headers["X-Cache"] == "HIT"
    time.sleep(1.2)
    assert client.get("/short").get_data() == b"2"


def test_warm_stores_fresh_results(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, fog, calls = cached_app
    client = app.test_client()
    client.get("/items")
    results = fog.cache_warm(["/items", "http://example.com/items?page=2", "/status/404"])
    assert results == {"/items": 200, "http://example.com/items?page=2": 200, "/status/404": 404}
    assert len(calls) == 4
    hit = client.get("/items")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.json is not None and hit.json["n"] == 2
    assert client.get("/items?page=2").headers["X-Cache"] == "HIT"


def test_counters_per_namespace(cached_app: tuple[Flask, FogRedis, list[str]]) -> None:
    app, fog, _ = cached_app
    client = app.test_client()
    client.get("/items")
    client.get("/items")
    client.get("/items")
    client.get("/lang")
    fog.cache_get("other", "absent")
    stats = fog.state().stats.cache()
    assert stats["items"] == {"hits": 2, "misses": 1, "errors": 0}
    assert stats["lang"] == {"hits": 0, "misses": 1, "errors": 0}
    assert stats["other"] == {"hits": 0, "misses": 1, "errors": 0}
