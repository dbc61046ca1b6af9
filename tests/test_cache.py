"""The cache's logic, on the embedded store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, Response, make_response, request, session, url_for
from flask_jwt_extended import JWTManager, create_access_token, jwt_required

from flask_fogredis import CacheKeyError, CacheValueError, FogRedis, InvalidArgumentError

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
        fog.cache_set("ns", "k", {1, 2})
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
    assert client.get("/items?page=2", base_url="http://example.com").headers["X-Cache"] == "HIT"


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


# -- credentials: a shared cache never crosses users ---------------------


def _jwt_cached_app(**config: Any) -> tuple[Flask, FogRedis, list[str]]:
    """The README's pattern: a JWT-protected view with a cached answer."""
    settings: dict[str, Any] = {
        "REDIS_URL": "memory://",
        "SECRET_KEY": "s" * 32,
        "JWT_SECRET_KEY": SECRET_KEY,
        "JWT_TOKEN_LOCATION": ["headers", "cookies"],
        "JWT_COOKIE_CSRF_PROTECT": False,
    }
    app = make_app(**{**settings, **config})
    JWTManager(app)
    fog = FogRedis(app)
    calls: list[str] = []

    @app.get("/account")
    @jwt_required()
    @fog.cached("account", ttl=60)
    def account() -> str:
        from flask_jwt_extended import get_jwt_identity

        calls.append("account")
        return f"account of {get_jwt_identity()}"

    @app.get("/news")
    @fog.cached("news", ttl=60)
    def news() -> str:
        calls.append("news")
        return "the same news for everyone"

    return app, fog, calls


def test_one_users_answer_is_never_served_to_another() -> None:
    app, _, calls = _jwt_cached_app()
    client = app.test_client()
    with app.app_context():
        alice, bob = create_access_token("alice"), create_access_token("bob")
    first = client.get("/account", headers=bearer(alice))
    second = client.get("/account", headers=bearer(bob))
    assert (first.get_data(), second.get_data()) == (b"account of alice", b"account of bob")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("BYPASS", "BYPASS")
    assert calls == ["account", "account"]


def test_a_jwt_cookie_bypasses_the_cache() -> None:
    app, _, calls = _jwt_cached_app()
    client = app.test_client()
    with app.app_context():
        alice, bob = create_access_token("alice"), create_access_token("bob")
    client.set_cookie("access_token_cookie", alice)
    assert client.get("/account").get_data() == b"account of alice"
    client.set_cookie("access_token_cookie", bob)
    second = client.get("/account")
    assert (second.get_data(), second.headers["X-Cache"]) == (b"account of bob", "BYPASS")
    assert calls == ["account", "account"]


@pytest.mark.parametrize(
    ("config", "credential"),
    [
        ({}, {"headers": {"Authorization": "Basic YWxpY2U6cHc="}}),
        ({}, {"cookie": ("access_token_cookie", "x")}),
        ({}, {"cookie": ("refresh_token_cookie", "x")}),
        ({"JWT_ACCESS_COOKIE_NAME": "jwt_in"}, {"cookie": ("jwt_in", "x")}),
        ({}, {"cookie": ("session", "x")}),
        ({"SESSION_COOKIE_NAME": "sid"}, {"cookie": ("sid", "x")}),
        ({"JWT_HEADER_NAME": "X-Token"}, {"headers": {"X-Token": "Bearer x"}}),
    ],
)
def test_requests_with_credentials_are_neither_served_nor_stored(
    config: dict[str, Any], credential: dict[str, Any]
) -> None:
    app, _, calls = _jwt_cached_app(**config)
    anonymous, personal = app.test_client(), app.test_client()
    if "cookie" in credential:
        personal.set_cookie(*credential["cookie"])
    headers = credential.get("headers", {})
    assert anonymous.get("/news").headers["X-Cache"] == "MISS"
    # An entry exists, but a caller with credentials is not given it...
    assert personal.get("/news", headers=headers).headers["X-Cache"] == "BYPASS"
    with app.app_context():
        fog = app.extensions["fogredis"]["REDIS"]
        fog.cache.clear_namespace("news")
    # ...nor does its answer become one.
    assert personal.get("/news", headers=headers).headers["X-Cache"] == "BYPASS"
    assert anonymous.get("/news").headers["X-Cache"] == "MISS"
    assert anonymous.get("/news").headers["X-Cache"] == "HIT"
    assert calls == ["news"] * 4


def test_other_cookies_do_not_bypass_the_cache() -> None:
    app, _, calls = _jwt_cached_app()
    client = app.test_client()
    client.set_cookie("theme", "dark")
    client.set_cookie("last_session_theme", "light")  # a credential cookie's name inside
    assert client.get("/news").headers["X-Cache"] == "MISS"
    assert client.get("/news").headers["X-Cache"] == "HIT"
    assert calls == ["news"]


def test_a_token_in_the_query_string_bypasses_the_cache() -> None:
    app, _, calls = _jwt_cached_app(JWT_TOKEN_LOCATION=["headers", "query_string"])
    client = app.test_client()
    assert client.get("/news?jwt=x").headers["X-Cache"] == "BYPASS"
    assert client.get("/news?jwt=x").headers["X-Cache"] == "BYPASS"
    assert calls == ["news", "news"]


@pytest.mark.parametrize(
    "options",
    [
        {"public": True},
        {"vary_on_identity": True},
        {"key_func": lambda req: "everyone"},
    ],
    ids=["public", "vary_on_identity", "key_func"],
)
def test_the_decorator_can_say_how_answers_differ_per_caller(options: dict[str, Any]) -> None:
    app = make_app(REDIS_URL="memory://", JWT_SECRET_KEY=SECRET_KEY)
    JWTManager(app)
    fog = FogRedis(app)
    calls: list[str] = []

    @app.get("/catalogue")
    @fog.cached("catalogue", **options)
    def catalogue() -> str:
        calls.append("catalogue")
        return "catalogue"

    client = app.test_client()
    with app.app_context():
        alice = create_access_token("alice")
    assert client.get("/catalogue", headers=bearer(alice)).headers["X-Cache"] == "MISS"
    assert client.get("/catalogue", headers=bearer(alice)).headers["X-Cache"] == "HIT"
    assert calls == ["catalogue"]


# -- host and scheme ---------------------------------------------------------


def test_absolute_urls_cannot_be_poisoned_through_the_host_header() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)

    @app.get("/links")
    @fog.cached("links", ttl=60)
    def links() -> str:
        return url_for("links", _external=True)

    client = app.test_client()
    evil = client.get("/links", headers={"Host": "evil.example"})
    assert evil.get_data() == b"http://evil.example/links"
    honest = client.get("/links", headers={"Host": "shop.example"})
    assert (honest.headers["X-Cache"], honest.get_data()) == ("MISS", b"http://shop.example/links")
    secure = client.get("/links", headers={"Host": "shop.example"}, base_url="https://x")
    assert secure.get_data() == b"https://shop.example/links"
    again = client.get("/links", headers={"Host": "SHOP.example"})
    assert (again.headers["X-Cache"], again.get_data()) == ("HIT", b"http://shop.example/links")


def test_a_token_in_a_json_body_bypasses_the_cache() -> None:
    app, _, calls = _jwt_cached_app(JWT_TOKEN_LOCATION=["json"])
    client = app.test_client()
    with app.app_context():
        alice = create_access_token("alice")
    first = client.get("/account", json={"access_token": alice})
    assert (first.get_data(), first.headers["X-Cache"]) == (b"account of alice", "BYPASS")
    # Nothing was stored for the callers that come after.
    anonymous = client.get("/news", json={"anything": 1})
    assert anonymous.headers["X-Cache"] == "BYPASS"
    assert client.get("/news").headers["X-Cache"] == "MISS"
    assert calls == ["account", "news", "news"]


def test_a_server_login_bypasses_the_cache() -> None:
    app, _, calls = _jwt_cached_app()
    client = app.test_client()
    logged_in = client.get("/news", environ_base={"REMOTE_USER": "alice"})
    assert logged_in.headers["X-Cache"] == "BYPASS"
    assert client.get("/news").headers["X-Cache"] == "MISS"
    assert calls == ["news", "news"]


def test_the_mount_point_is_in_the_key() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)

    @app.get("/links")
    @fog.cached("links", ttl=60)
    def links() -> str:
        return url_for("links", _external=True)

    client = app.test_client()
    planted = client.get("/links", base_url="http://localhost/evil")
    assert planted.get_data() == b"http://localhost/evil/links"
    honest = client.get("/links")
    assert (honest.headers["X-Cache"], honest.get_data()) == ("MISS", b"http://localhost/links")


@pytest.mark.parametrize(
    ("spelling", "base_url"),
    [
        ("Shop.Example.", "http://x"),
        ("shop.example:80", "http://x"),
        ("shop.example:443", "https://x"),
    ],
)
def test_one_host_spelled_differently_is_one_entry(spelling: str, base_url: str) -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    calls: list[str] = []

    @app.get("/page")
    @fog.cached("page", ttl=60)
    def page() -> str:
        calls.append("page")
        return "page"

    client = app.test_client()
    client.get("/page", headers={"Host": "shop.example"}, base_url=base_url)
    again = client.get("/page", headers={"Host": spelling}, base_url=base_url)
    assert again.headers["X-Cache"] == "HIT"
    assert calls == ["page"]


def test_warming_a_full_url_fills_that_hosts_entry(
    cached_app: tuple[Flask, FogRedis, list[str]],
) -> None:
    app, fog, calls = cached_app
    fog.cache_warm(["https://shop.example/items?page=3", "/items"])
    client = app.test_client()
    assert client.get("/items?page=3", base_url="https://shop.example").headers["X-Cache"] == "HIT"
    assert client.get("/items?page=3").headers["X-Cache"] == "MISS"
    assert client.get("/items").headers["X-Cache"] == "HIT"
    assert len(calls) == 3


# -- query parameters --------------------------------------------------------


def test_only_the_allowed_query_parameters_are_cached() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    calls: list[str] = []

    @app.get("/list")
    @fog.cached("list", ttl=60, query_params=["page", "size"])
    def listing() -> str:
        calls.append(request.query_string.decode())
        return request.query_string.decode()

    client = app.test_client()
    assert client.get("/list").headers["X-Cache"] == "MISS"
    assert client.get("/list").headers["X-Cache"] == "HIT"
    assert client.get("/list?page=2&size=5").headers["X-Cache"] == "MISS"
    assert client.get("/list?size=5&page=2").headers["X-Cache"] == "HIT"
    for busting in ("/list?page=2&x=1", "/list?utm_source=mail", "/list?nocache"):
        response = client.get(busting)
        assert (response.status_code, response.headers["X-Cache"]) == (200, "BYPASS")
        assert client.get(busting).headers["X-Cache"] == "BYPASS"
    assert len(calls) == 2 + 6
    with app.app_context():
        assert len(fog.client.keys("fog:cache:4:list:v:*")) == 2


def test_query_params_must_be_names() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with pytest.raises(InvalidArgumentError, match="query_params"):
        fog.cached("list", query_params=["page", 3])  # type: ignore[list-item]


# -- async views ------------------------------------------------------------


def test_async_views_are_cached_like_any_other() -> None:
    app, fog, calls = _jwt_cached_app()

    @app.get("/async")
    @fog.cached("async", ttl=60)
    async def slow() -> str:
        calls.append("async")
        await asyncio.sleep(0)
        return "computed asynchronously"

    client = app.test_client()
    first, second = client.get("/async"), client.get("/async")
    assert (first.status_code, first.headers["X-Cache"]) == (200, "MISS")
    assert (second.get_data(), second.headers["X-Cache"]) == (b"computed asynchronously", "HIT")
    with app.app_context():
        alice = create_access_token("alice")
    personal = client.get("/async", headers=bearer(alice))
    assert (personal.status_code, personal.headers["X-Cache"]) == (200, "BYPASS")
    assert client.post("/async").status_code == 405
    assert calls == ["async", "async"]
