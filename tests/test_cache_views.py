"""@fog.cached controls: unless, response_filter, callable ttl, tags,
delete_cached_url, ETag and 304, stale-while-revalidate; on the embedded
store."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, request

from flask_fogredis import FogRedis, InvalidArgumentError

from .conftest import make_app


@pytest.fixture
def site() -> Iterator[tuple[Flask, FogRedis, list[str]]]:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    calls: list[str] = []
    state = {"skip": False, "fail": False}
    app.config["STATE"] = state

    @app.get("/unless")
    @fog.cached("v", 60, unless=lambda: state["skip"])
    def unless() -> str:
        calls.append("unless")
        return "u"

    @app.get("/filtered/<word>")
    @fog.cached("v", 60, response_filter=lambda r: b"error" not in r.get_data())
    def filtered(word: str) -> str:
        calls.append(word)
        return word

    @app.get("/timed/<int:seconds>")
    @fog.cached("v", lambda r: int(r.get_data()), stale_ttl=0)
    def timed(seconds: int) -> str:
        calls.append(f"timed {seconds}")
        return str(seconds)

    @app.get("/product/<int:pid>")
    @fog.cached("v", 60, tags=lambda pid: [f"product:{pid}", "products"])
    def product(pid: int) -> str:
        calls.append(f"product {pid}")
        return f"p{pid}"

    @app.get("/page")
    @fog.cached("v", 60, tags=["pages"], vary_on_headers=["Accept-Language"])
    def page() -> str:
        calls.append(f"page {request.full_path}")
        return "page"

    @app.get("/stale")
    @fog.cached("v", 0.2, stale_ttl=60)
    def stale() -> str:
        calls.append("stale")
        if state["fail"]:
            raise RuntimeError("down")
        return f"v{len(calls)}"

    with app.app_context():
        yield app, fog, calls


def test_unless_skips_the_cache(site: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, calls = site
    client = app.test_client()
    assert client.get("/unless").headers["X-Cache"] == "MISS"
    assert client.get("/unless").headers["X-Cache"] == "HIT"
    app.config["STATE"]["skip"] = True
    assert client.get("/unless").headers["X-Cache"] == "BYPASS"
    assert calls == ["unless", "unless"]


def test_response_filter_decides_what_is_stored(site: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, calls = site
    client = app.test_client()
    for _ in range(2):
        client.get("/filtered/error")
        client.get("/filtered/fine")
    assert calls == ["error", "fine", "error"]


def test_a_callable_ttl_is_asked_per_response(site: tuple[Flask, FogRedis, list[str]]) -> None:
    app, fog, _ = site
    client = app.test_client()
    client.get("/timed/100")
    client.get("/timed/1000")
    ttls = sorted(fog.client.pttl(key) for key in fog.client.keys("fog:cache:1:v:v:*"))
    assert 90_000 < ttls[0] <= 100_000 and 990_000 < ttls[1] <= 1_000_000


def test_tags_drop_what_they_name(site: tuple[Flask, FogRedis, list[str]]) -> None:
    app, fog, calls = site
    client = app.test_client()
    for pid in (1, 2):
        client.get(f"/product/{pid}")
    client.get("/page")
    assert fog.invalidate_tags("product:1") == 1
    assert client.get("/product/1").headers["X-Cache"] == "MISS"
    assert client.get("/product/2").headers["X-Cache"] == "HIT"
    assert fog.invalidate_tags("products", "pages") == 3
    assert client.get("/page").headers["X-Cache"] == "MISS"
    assert calls.count("product 1") == 2


@pytest.mark.parametrize("tag", ["*", "a?b", "[x]", "{slot}"])
def test_glob_characters_in_tags_are_literal(fog_site: Any, tag: str) -> None:
    app, fog = fog_site

    @app.get("/g")
    @fog.cached("g", 60, tags=[tag])
    def g() -> str:
        return "g"

    @app.get("/h")
    @fog.cached("g", 60, tags=["other"])
    def h() -> str:
        return "h"

    client = app.test_client()
    client.get("/g")
    client.get("/h")
    assert fog.invalidate_tags(tag) == 1
    assert client.get("/h").headers["X-Cache"] == "HIT"


@pytest.fixture
def fog_site() -> Iterator[tuple[Flask, FogRedis]]:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with app.app_context():
        yield app, fog


@pytest.mark.parametrize("bad", ["", 3, None, ["ok", ""]])
def test_bad_tags_are_refused(fog_site: tuple[Flask, FogRedis], bad: Any) -> None:
    _, fog = fog_site
    with pytest.raises(InvalidArgumentError, match="tag"):
        fog.invalidate_tags(*(bad if isinstance(bad, list) else [bad]))
    with pytest.raises(InvalidArgumentError, match="tag"):
        fog.cached("v", 60, tags=bad if isinstance(bad, list) else [bad])


def test_delete_cached_url_drops_every_variant(site: tuple[Flask, FogRedis, list[str]]) -> None:
    app, fog, _calls = site
    client = app.test_client()
    for language in ("en", "fr"):
        client.get("/page", headers={"Accept-Language": language})
        client.get("/page", base_url="https://other.example", headers={"Accept-Language": language})
    client.get("/page?b=2&a=1")
    client.get("/product/1")
    assert fog.delete_cached_url("/page") == 4
    assert fog.delete_cached_url("/page?a=1&b=2") == 1  # the query in any order
    assert fog.delete_cached_url("http://localhost/page?a=1&b=2") == 0
    assert client.get("/product/1").headers["X-Cache"] == "HIT"
    assert client.get("/page", headers={"Accept-Language": "en"}).headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("bad", ["page", "", "http://host", "*", 5, "/page#frag"])
def test_delete_cached_url_needs_a_path(fog_site: tuple[Flask, FogRedis], bad: Any) -> None:
    _, fog = fog_site
    with pytest.raises(InvalidArgumentError, match="path"):
        fog.delete_cached_url(bad)


def test_etag_and_if_none_match(site: tuple[Flask, FogRedis, list[str]]) -> None:
    app, _, calls = site
    client = app.test_client()
    first = client.get("/product/7")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and len(etag) == 34  # strong: no W/
    hit = client.get("/product/7")
    assert hit.headers["ETag"] == etag and hit.get_data() == b"p7"
    for condition in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        answer = client.get("/product/7", headers={"If-None-Match": condition})
        assert answer.status_code == 304
        assert answer.get_data() == b""
        assert answer.headers["ETag"] == etag
        assert answer.headers["X-Cache"] == "HIT"
        assert "Content-Type" not in answer.headers
    assert client.get("/product/7", headers={"If-None-Match": '"other"'}).status_code == 200
    assert calls == ["product 7"]


def test_a_view_s_own_etag_is_kept(fog_site: tuple[Flask, FogRedis]) -> None:
    app, fog = fog_site

    @app.get("/own")
    @fog.cached("v", 60)
    def own() -> Response:
        response = Response("x")
        response.set_etag("mine")
        return response

    client = app.test_client()
    assert client.get("/own").headers["ETag"] == '"mine"'
    assert client.get("/own", headers={"If-None-Match": '"mine"'}).status_code == 304


def test_stale_while_revalidate(
    site: tuple[Flask, FogRedis, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    app, fog, _calls = site
    client = app.test_client()
    assert client.get("/stale").get_data() == b"v1"
    time.sleep(0.3)
    # Another request holds the lock (it is recomputing): this one gets the
    # old copy at once.
    lock = str(next(iter(fog.client.keys("fog:cache:1:v:v:*")))).replace(":v:{", ":l:{")
    fog.client.set(lock, "someone", px=5000)
    stale = client.get("/stale")
    assert (stale.headers["X-Cache"], stale.get_data()) == ("STALE", b"v1")
    fog.client.delete(lock)
    # The lock holder recomputes; if the view raises it serves stale, logged once.
    app.config["STATE"]["fail"] = True
    with caplog.at_level(logging.WARNING, "flask_fogredis"):
        for _ in range(2):
            failed = client.get("/stale")
            assert (failed.headers["X-Cache"], failed.get_data()) == ("STALE", b"v1")
    assert len([r for r in caplog.records if "stale copy" in r.getMessage()]) == 1
    app.config["STATE"]["fail"] = False
    fresh = client.get("/stale")
    assert (fresh.headers["X-Cache"], fresh.get_data()) == ("MISS", b"v4")
    assert client.get("/stale").headers["X-Cache"] == "HIT"
    ttl = max(fog.client.pttl(key) for key in fog.client.keys("fog:cache:1:v:v:*"))
    assert 59_000 < ttl <= 60_200  # lives ttl + stale_ttl in Redis


def _rich(fog: FogRedis, app: Flask) -> None:
    """A cached view whose response carries the headers werkzeug treats
    specially on the way out."""

    @app.get("/rich")
    @fog.cached("v", 60)
    def rich() -> Response:
        response = Response('{"a": 1}', mimetype="application/json")
        response.headers["Content-Language"] = "fr"
        response.headers["Last-Modified"] = "Wed, 21 Oct 2015 07:28:00 GMT"
        response.headers["Expires"] = "Thu, 01 Dec 2094 16:00:00 GMT"
        response.headers["Cache-Control"] = "public, max-age=60"
        response.headers["X-Custom"] = "kept"
        return response


@pytest.mark.parametrize("conditional", [False, True])
def test_answers_from_the_store_send_what_werkzeug_would(
    fog_site: tuple[Flask, FogRedis], conditional: bool
) -> None:
    """Answers from the store skip werkzeug's second check of each header:
    what goes out is what werkzeug's own get_wsgi_headers gives for them,
    for a 200 and for a 304 (no Content-Type, Content-Length, Last-Modified
    or Content-Language; Expires, ETag, Cache-Control and the rest kept)."""
    app, fog = fog_site
    _rich(fog, app)
    client = app.test_client()
    etag = client.get("/rich").headers["ETag"]
    headers = {"If-None-Match": etag} if conditional else {}
    with app.test_request_context("/rich", headers=headers):
        response = app.full_dispatch_request()
        environ = request.environ
        assert response.headers["X-Cache"] == "HIT"
        ours = list(response.get_wsgi_headers(environ))
        werkzeugs = list(Response.get_wsgi_headers(response, environ))
    assert ours == werkzeugs
    names = {name for name, _ in ours}
    if conditional:
        assert response.status_code == 304
        assert not names & {"Content-Type", "Content-Length", "Last-Modified", "Content-Language"}
        assert {"ETag", "Expires", "Cache-Control", "X-Custom", "Age", "X-Cache"} <= names
    else:
        assert response.status_code == 200
        assert ("Content-Length", "8") in ours and "Content-Language" in names


def test_a_location_added_after_the_view_is_still_made_absolute(
    fog_site: tuple[Flask, FogRedis],
) -> None:
    app, fog = fog_site
    _rich(fog, app)

    @app.after_request
    def point(response: Response) -> Response:
        response.headers["Location"] = "/elsewhere"
        response.headers["Content-Location"] = "/rich/ü"
        return response

    class Absolute(Response):
        autocorrect_location_header = True

    app.response_class = Absolute
    client = app.test_client()
    client.get("/rich")
    for headers in ({}, {"If-None-Match": "*"}):
        answer = client.get("/rich", headers=headers)
        assert answer.headers["X-Cache"] == "HIT"
        assert answer.headers["Location"] == "http://localhost/elsewhere"
        assert answer.headers["Content-Location"] == "/rich/%C3%BC"


def test_a_response_class_that_sends_its_headers_its_own_way_keeps_it(
    fog_site: tuple[Flask, FogRedis],
) -> None:
    app, fog = fog_site

    class Stamped(Response):
        def get_wsgi_headers(self, environ: Any) -> Any:
            headers = super().get_wsgi_headers(environ)
            headers["X-Stamped"] = "yes"
            return headers

    app.response_class = Stamped
    _rich(fog, app)
    client = app.test_client()
    client.get("/rich")
    hit = client.get("/rich")
    assert hit.headers["X-Cache"] == "HIT" and hit.headers["X-Stamped"] == "yes"
    assert client.get("/rich", headers={"If-None-Match": "*"}).headers["X-Stamped"] == "yes"


def test_the_key_memo_tells_every_variant_apart(fog_site: tuple[Flask, FogRedis]) -> None:
    """Keys are remembered per raw URL, host and varying header: a variant
    seen after the memo is warm still gets its own entry."""
    app, fog = fog_site
    seen: list[str] = []

    @app.get("/v")
    @fog.cached("v", 60, vary_on_headers=["Accept-Language"])
    def variant() -> str:
        seen.append(f"{request.url} {request.accept_languages}")
        return seen[-1]

    client = app.test_client()
    asks: list[dict[str, Any]] = [
        {},
        {"query_string": "a=1"},
        {"base_url": "http://other.example"},
        {"base_url": "https://localhost"},
        {"headers": {"Accept-Language": "fr"}},
        {"base_url": "http://localhost/mount"},
    ]
    for _ in range(3):
        answers = [client.get("/v", **ask).get_data(as_text=True) for ask in asks]
        assert len(set(answers)) == len(asks)
    assert len(seen) == len(asks)
    # The same URL spelt another way (default port) is the same entry.
    assert client.get("/v", base_url="http://localhost:80").headers["X-Cache"] == "HIT"


def test_the_key_memo_is_bounded() -> None:
    from flask_fogredis._cache import _MEMO_SIZE, _MEMO_TEXT, make_vary

    app = make_app(REDIS_URL="memory://")
    vary = make_vary((), False, None)
    for n in range(_MEMO_SIZE + 10):
        with app.test_request_context(f"/p?n={n}"):
            vary.digest(request._get_current_object())  # type: ignore[attr-defined]
    with app.test_request_context("/p?" + "x" * _MEMO_TEXT):
        long = vary.digest(request._get_current_object())  # type: ignore[attr-defined]
    memo = vary._digests
    assert memo is not None and 0 < len(memo) <= _MEMO_SIZE
    assert long not in memo.values()
    # With the identity in the key, nothing is remembered.
    assert make_vary((), True, None)._digests is None


def test_hits_through_a_response_class_with_its_own_constructor(
    fog_site: tuple[Flask, FogRedis],
) -> None:
    """A class that builds its body its own way gets it built that way: no
    shortcut around its constructor (a Content-Length of 0 for an 11-byte
    body, or a TypeError, would follow)."""
    app, fog = fog_site

    class Defaulting(Response):
        def __init__(self, response: Any = None, *args: Any, **kwargs: Any) -> None:
            super().__init__(response if response is not None else "", *args, **kwargs)

    class Demanding(Response):
        def __init__(self, response: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(response, *args, **kwargs)

    @app.get("/hello")
    @fog.cached("v", 60)
    def hello() -> str:
        return "hello world"

    for kind in (Defaulting, Demanding):
        app.response_class = kind
        client = app.test_client()
        client.get("/hello")
        hit = client.get("/hello")
        assert hit.headers["X-Cache"] == "HIT"
        assert hit.headers["Content-Length"] == "11" and hit.get_data() == b"hello world"
        fog.cache_clear_namespace("v")


def test_hits_keep_the_app_s_response_class_and_pickle(
    fog_site: tuple[Flask, FogRedis],
) -> None:
    """Something that pickles a view's answer (another cache on top) still
    can, and the answer is of the app's own response class."""
    import pickle

    app, fog = fog_site
    _rich(fog, app)
    client = app.test_client()
    etag = client.get("/rich").headers["ETag"]
    for headers in ({}, {"If-None-Match": etag}):
        with app.test_request_context("/rich", headers=headers):
            response = app.full_dispatch_request()
            assert type(response) is app.response_class
            assert response.headers["X-Cache"] == "HIT"
            copy = pickle.loads(pickle.dumps(response))
            assert copy.status_code == response.status_code
            assert copy.get_data() == response.get_data()


def test_parameters_a_before_request_adds_are_in_the_key(
    fog_site: tuple[Flask, FogRedis],
) -> None:
    """The key memo follows request.args, not only the raw query string: a
    hook that adds a parameter (from a cookie here) gets an entry per value."""
    from werkzeug.datastructures import ImmutableMultiDict

    app, fog = fog_site

    @app.before_request
    def language() -> None:
        merged = request.args.to_dict(flat=False)
        merged["lang"] = [request.cookies.get("lang", "en")]
        request.args = ImmutableMultiDict(merged)

    @app.get("/p")
    @fog.cached("v", 60)
    def page() -> str:
        return f"text in {request.args['lang']}"

    client = app.test_client()
    answers = []
    for lang in ("en", "fr", "de", "fr"):
        client.set_cookie("lang", lang)
        answers.append(client.get("/p?page=1").get_data(as_text=True))
    assert answers == ["text in en", "text in fr", "text in de", "text in fr"]


def test_a_server_port_that_is_a_number_is_served(fog_site: tuple[Flask, FogRedis]) -> None:
    """Some servers put an int in SERVER_PORT (PEP 3333 says a string)."""
    app, fog = fog_site

    @app.get("/n")
    @fog.cached("v", 60)
    def numbered() -> str:
        return "n"

    client = app.test_client()
    for state in ("MISS", "HIT"):
        answer = client.get("/n", environ_overrides={"SERVER_PORT": 80})
        assert answer.status_code == 200 and answer.headers["X-Cache"] == state
