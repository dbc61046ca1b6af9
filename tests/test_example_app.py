"""The example app, in process on the embedded store: every flow and every
kind of bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import UnsafeSettings, create_app

from .processes import ROOT
from .servers import RedisServer, free_port

PASSWORD = "demo-password"
JWT_KEY = "a-test-key-that-is-long-enough-for-hs256-5b1d"
METRICS_TOKEN = "a-metrics-token-long-enough-for-the-check-0123456789"
REAL_PASSWORD = "a-real-demo-password-7f3k"
PRODUCTION = {
    "JWT_SECRET_KEY": JWT_KEY,
    "DEMO_PASSWORD": REAL_PASSWORD,
    "REDIS_METRICS_TOKEN": METRICS_TOKEN,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting of the example leaks in from the environment running the tests."""
    for name in (*PRODUCTION, "FLASK_DEBUG", "MAX_CONTENT_LENGTH", "REDIS_URL", "REDIS_CACHE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": "memory://",
            "REPORT_COMPUTE_SECONDS": 0,
            "JWT_SECRET_KEY": JWT_KEY,
            "REPORTS_DATABASE": str(tmp_path / "reports.sqlite3"),
        }
    )
    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def login(client: FlaskClient, username: str = "alice") -> dict[str, str]:
    response = client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.json
    assert response.json is not None
    return dict(response.json)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_and_me(client: FlaskClient) -> None:
    tokens = login(client)
    response = client.get("/me", headers=auth(tokens["access_token"]))
    assert response.json == {"username": "alice", "roles": ["user"]}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "alice", "password": "wrong"}, 401),
        ({"username": "nobody", "password": PASSWORD}, 401),
        ({"username": "alice"}, 400),
        ({"username": 5, "password": PASSWORD}, 400),
        ({"username": "alice", "password": True}, 400),
        (["alice", PASSWORD], 400),
    ],
)
def test_login_refuses_bad_input(client: FlaskClient, body: Any, status: int) -> None:
    response = client.post("/auth/login", json=body)
    assert response.status_code == status
    assert response.is_json and "error" in (response.json or {})


def test_login_refuses_a_body_that_is_not_json(client: FlaskClient) -> None:
    response = client.post("/auth/login", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json == {"error": "The body must be a JSON object."}


def test_refresh_rotates_and_the_old_refresh_token_dies(client: FlaskClient) -> None:
    tokens = login(client)
    first = client.post("/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert first.status_code == 200
    again = client.post("/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert again.status_code == 401
    assert first.json is not None
    assert client.get("/me", headers=auth(first.json["access_token"])).status_code == 200


def test_logout_revokes_access_and_refresh(client: FlaskClient) -> None:
    tokens = login(client)
    response = client.post(
        "/auth/logout",
        headers=auth(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )
    assert response.json == {"revoked": ["access", "refresh"]}
    assert client.get("/me", headers=auth(tokens["access_token"])).status_code == 401
    assert client.post("/auth/refresh", headers=auth(tokens["refresh_token"])).status_code == 401


def test_logout_refuses_someone_elses_or_a_bad_refresh_token(client: FlaskClient) -> None:
    alice, admin = login(client), login(client, "admin")
    for refresh, status in ((admin["refresh_token"], 400), ("garbage", 400), (7, 400)):
        response = client.post(
            "/auth/logout", headers=auth(alice["access_token"]), json={"refresh_token": refresh}
        )
        assert response.status_code == status
    assert client.post("/auth/refresh", headers=auth(admin["refresh_token"])).status_code == 200


def test_log_out_everywhere(client: FlaskClient) -> None:
    first, second = login(client), login(client)
    client.post("/auth/logout-everywhere", headers=auth(first["access_token"]))
    for token in (first["access_token"], second["access_token"]):
        assert client.get("/me", headers=auth(token)).status_code == 401
    assert client.post("/auth/refresh", headers=auth(second["refresh_token"])).status_code == 401


def test_admin_revokes_a_user_or_a_token(client: FlaskClient) -> None:
    alice, admin = login(client), login(client, "admin")
    refused = client.post(
        "/admin/revoke", headers=auth(alice["access_token"]), json={"username": "admin"}
    )
    assert refused.status_code == 403
    me = client.get("/me", headers=auth(alice["access_token"]))
    assert me.status_code == 200
    from flask_jwt_extended import decode_token

    with client.application.app_context():
        jti = decode_token(alice["access_token"])["jti"]
    assert (
        client.post(
            "/admin/revoke", headers=auth(admin["access_token"]), json={"jti": jti}
        ).status_code
        == 200
    )
    assert client.get("/me", headers=auth(alice["access_token"])).status_code == 401
    other = login(client)
    assert (
        client.post(
            "/admin/revoke", headers=auth(admin["access_token"]), json={"username": "alice"}
        ).status_code
        == 200
    )
    assert client.get("/me", headers=auth(other["access_token"])).status_code == 401
    bad = client.post("/admin/revoke", headers=auth(admin["access_token"]), json={"jti": 3})
    assert bad.status_code == 400


def test_cached_summary_and_invalidation(client: FlaskClient) -> None:
    first = client.get("/reports/summary")
    assert (first.headers["X-Cache"], first.json) == (
        "MISS",
        {"count": 0, "total": 0, "mean": None, "latest": None},
    )
    assert client.get("/reports/summary").headers["X-Cache"] == "HIT"
    token = login(client)["access_token"]
    created = client.post("/reports", json={"title": "q3", "value": 12.5}, headers=auth(token))
    assert created.status_code == 201
    assert created.json == {"stored": "q3", "invalidated": True}
    after = client.get("/reports/summary")
    assert after.headers["X-Cache"] == "MISS"
    assert after.json == {"count": 1, "total": 12.5, "mean": 12.5, "latest": "q3"}


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x"},
        {"value": 1},
        {"title": "", "value": 1},
        {"title": "x" * 201, "value": 1},
        {"title": "x", "value": "1"},
        {"title": "x", "value": True},
        {"title": 1, "value": 1},
        "a string",
        None,
    ],
)
def test_reports_refuse_bad_input(client: FlaskClient, body: Any) -> None:
    response = client.post("/reports", json=body, headers=auth(login(client)["access_token"]))
    assert response.status_code == 400
    assert response.is_json


def test_not_a_number_is_refused(client: FlaskClient) -> None:
    response = client.post(
        "/reports",
        data='{"title": "x", "value": NaN}',
        content_type="application/json",
        headers=auth(login(client)["access_token"]),
    )
    assert response.status_code == 400


def test_unknown_routes_and_methods_answer_json(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").is_json
    assert client.delete("/reports").status_code == 405
    assert client.delete("/reports").is_json


def test_protected_endpoints_need_a_token(client: FlaskClient) -> None:
    assert client.get("/me").status_code == 401
    assert client.post("/auth/logout").status_code == 401
    anonymous = client.post("/reports", json={"title": "q3", "value": 1})
    assert anonymous.status_code == 401
    assert client.get("/reports/summary").json == {
        "count": 0,
        "total": 0,
        "mean": None,
        "latest": None,
    }


def test_a_refresh_token_works_once_even_when_sent_twice_at_once(client: FlaskClient) -> None:
    import threading

    tokens = login(client)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def refresh() -> None:
        own = client.application.test_client()
        barrier.wait()
        statuses.append(
            own.post("/auth/refresh", headers=auth(tokens["refresh_token"])).status_code
        )

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [401] * 7


# -- settings: nothing anyone could know lets a deployed copy start ----------


def _production(env: pytest.MonkeyPatch, tmp_path: Path, **settings: str | None) -> Flask:
    """``create_app()`` outside debug and testing, with ``settings`` in the
    environment (None: unset) on top of good production values."""
    for name, value in {**PRODUCTION, **settings}.items():
        if value is None:
            env.delenv(name, raising=False)
        else:
            env.setenv(name, value)
    env.setenv("REPORTS_DATABASE", str(tmp_path / "reports.sqlite3"))
    return create_app()


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JWT_SECRET_KEY", None),
        ("JWT_SECRET_KEY", ""),
        ("JWT_SECRET_KEY", "short-but-random-Xq93"),
        ("JWT_SECRET_KEY", "change-me-please-this-is-long-enough-0123456789"),
        ("JWT_SECRET_KEY", _env_example()["JWT_SECRET_KEY"] + "-and-longer-than-32"),
        ("DEMO_PASSWORD", None),
        ("DEMO_PASSWORD", "demo-password"),
        ("DEMO_PASSWORD", "Xq93kd"),
        ("DEMO_PASSWORD", _env_example()["DEMO_PASSWORD"]),
        ("REDIS_METRICS_TOKEN", None),
        ("REDIS_METRICS_TOKEN", "ChangeMe-to-a-token-that-is-long-enough-01234"),
    ],
)
def test_refuses_to_start_outside_debug_with_a_weak_setting(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str | None
) -> None:
    with pytest.raises(UnsafeSettings, match=name) as refused:
        _production(clean_env, tmp_path, **{name: value})
    message = str(refused.value)
    assert "make run" in message
    if value:
        assert value not in message


def test_the_env_example_values_are_all_refused(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    example = _env_example()
    with pytest.raises(UnsafeSettings) as refused:
        _production(clean_env, tmp_path, **{name: example[name] for name in PRODUCTION})
    for name in PRODUCTION:
        assert name in str(refused.value)
        assert example[name] not in str(refused.value)


def test_starts_with_real_secrets_and_only_the_given_password_logs_in(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = _production(clean_env, tmp_path).test_client()
    default = client.post("/auth/login", json={"username": "admin", "password": PASSWORD})
    assert default.status_code == 401
    real = client.post("/auth/login", json={"username": "admin", "password": REAL_PASSWORD})
    assert real.status_code == 200
    assert "DEMO_PASSWORD" not in client.application.config


def test_metrics_need_the_token_from_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = _production(clean_env, tmp_path).test_client()
    assert client.get("/metrics").status_code == 401
    scraped = client.get("/metrics", headers=auth(METRICS_TOKEN))
    assert scraped.status_code == 200
    assert b"fogredis_up" in scraped.data


def test_debug_mode_fills_in_demo_credentials(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("FLASK_DEBUG", "1")
    clean_env.setenv("REPORTS_DATABASE", str(tmp_path / "reports.sqlite3"))
    client = create_app().test_client()
    assert len(client.application.config["JWT_SECRET_KEY"]) >= 32
    login(client, "admin")


# -- tokens: roles from the store, the login time through rotations ---------


def _claims(app: Flask, token: str) -> dict[str, Any]:
    from flask_jwt_extended import decode_token

    with app.app_context():
        return dict(decode_token(token))


def test_a_demoted_user_loses_admin_at_the_next_refresh(app: Flask, client: FlaskClient) -> None:
    tokens = login(client, "admin")
    assert "admin" in _claims(app, tokens["access_token"])["roles"]
    app.config["DEMO_USERS"]["admin"]["roles"] = ["user"]
    refreshed = client.post("/auth/refresh", headers=auth(tokens["refresh_token"]))
    assert refreshed.status_code == 200 and refreshed.json is not None
    assert _claims(app, refreshed.json["access_token"])["roles"] == ["user"]
    assert _claims(app, refreshed.json["refresh_token"])["roles"] == ["user"]
    refused = client.post(
        "/admin/revoke", headers=auth(refreshed.json["access_token"]), json={"username": "alice"}
    )
    assert refused.status_code == 403


def test_a_deleted_user_cannot_refresh(app: Flask, client: FlaskClient) -> None:
    tokens = login(client)
    del app.config["DEMO_USERS"]["alice"]
    assert client.post("/auth/refresh", headers=auth(tokens["refresh_token"])).status_code == 401


def test_the_login_time_survives_rotations_as_auth_time(app: Flask, client: FlaskClient) -> None:
    tokens = login(client)
    started = _claims(app, tokens["access_token"])
    assert abs(started["auth_time"] - started["iat"]) <= 1
    for _ in range(2):
        response = client.post("/auth/refresh", headers=auth(tokens["refresh_token"]))
        assert response.status_code == 200 and response.json is not None
        tokens = dict(response.json)
        for kind in ("access_token", "refresh_token"):
            assert _claims(app, tokens[kind])["auth_time"] == started["auth_time"]


# -- reports: authenticated writes, invalidation without a keyspace walk ----


def test_invalidation_does_not_walk_the_keyspace(redis_server: RedisServer, tmp_path: Path) -> None:
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": redis_server.url,
            "REPORT_COMPUTE_SECONDS": 0,
            "JWT_SECRET_KEY": JWT_KEY,
            "REPORTS_DATABASE": str(tmp_path / "reports.sqlite3"),
        }
    )
    client = app.test_client()
    admin = redis_server.admin()
    admin.mset({f"other:{n}": n for n in range(200)})
    token = login(client)["access_token"]
    admin.config_resetstat()
    assert client.get("/reports/summary").headers["X-Cache"] == "MISS"
    assert client.get("/reports/summary").headers["X-Cache"] == "HIT"
    for value in (1, 2, 3):
        created = client.post(
            "/reports", json={"title": f"r{value}", "value": value}, headers=auth(token)
        )
        assert created.json is not None and created.json["invalidated"] is True
        fresh = client.get("/reports/summary")
        assert fresh.json is not None
        assert (fresh.headers["X-Cache"], fresh.json["count"]) == ("MISS", value)
        assert client.get("/reports/summary").headers["X-Cache"] == "HIT"
    commands = admin.info("commandstats")
    assert not {"cmdstat_scan", "cmdstat_keys"} & set(commands), sorted(commands)
    assert admin.dbsize() >= 200


def test_the_database_connections_are_closed(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", connect)
    token = login(client)["access_token"]
    client.get("/reports/summary")
    client.post("/reports", json={"title": "q3", "value": 1}, headers=auth(token))
    assert len(opened) == 2
    for connection in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")


# -- bodies, probes ---------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_json(client: FlaskClient) -> None:
    assert client.application.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    big = b'{"username": "' + b"a" * (1024 * 1024) + b'", "password": "x"}'
    response = client.post("/auth/login", data=big, content_type="application/json")
    assert response.status_code == 413
    assert response.is_json and "error" in (response.json or {})


def test_a_chunked_body_over_the_limit_is_refused(client: FlaskClient) -> None:
    import io

    body = b'{"username": "' + b"a" * (2 * 1024 * 1024) + b'", "password": "x"}'
    response = client.post(
        "/auth/login",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.is_json


def test_the_body_limit_comes_from_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = _production(clean_env, tmp_path, MAX_CONTENT_LENGTH="2048").test_client()
    body = {"username": "alice", "password": "x" * 4096}
    assert client.post("/auth/login", json=body).status_code == 413
    with pytest.raises(UnsafeSettings, match="MAX_CONTENT_LENGTH"):
        _production(clean_env, tmp_path, MAX_CONTENT_LENGTH="1MB")


def test_liveness_answers_without_redis(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": down,
            "JWT_SECRET_KEY": JWT_KEY,
            "REPORTS_DATABASE": str(tmp_path / "reports.sqlite3"),
        }
    )
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/health/redis").status_code == 503


def test_a_revocation_redis_cannot_store_is_a_503_not_a_500(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": redis_server.url,
            "JWT_SECRET_KEY": JWT_KEY,
            "REPORTS_DATABASE": str(tmp_path / "reports.sqlite3"),
        }
    )
    client = app.test_client()
    tokens = login(client)
    admin = redis_server.admin()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", max(1, int(admin.info("memory")["used_memory"]) - 1024))
    try:
        for path, body in (
            ("/auth/logout", {"refresh_token": tokens["refresh_token"]}),
            ("/auth/logout-everywhere", None),
        ):
            answer = client.post(path, headers=auth(tokens["access_token"]), json=body)
            assert answer.status_code == 503, (path, answer.json)
            assert answer.headers["Retry-After"] == "2"
            text = answer.get_data(as_text=True)
            assert str(redis_server.port) not in text and "127.0.0.1" not in text
    finally:
        admin.config_set("maxmemory", 0)
    # Nothing was revoked: the token still works, and the logout can be tried again.
    assert client.get("/me", headers=auth(tokens["access_token"])).status_code == 200
