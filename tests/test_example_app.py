"""The example app, in process on the embedded store: every flow and every
kind of bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app

PASSWORD = "demo-password"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "REDIS_URL": "memory://",
            "REPORT_COMPUTE_SECONDS": 0,
            "JWT_SECRET_KEY": "example-test-key-that-is-long-enough-for-hs256",
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
    created = client.post("/reports", json={"title": "q3", "value": 12.5})
    assert created.status_code == 201
    assert created.json == {"stored": "q3", "invalidated": 1}
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
    response = client.post("/reports", json=body)
    assert response.status_code == 400
    assert response.is_json


def test_not_a_number_is_refused(client: FlaskClient) -> None:
    response = client.post(
        "/reports", data='{"title": "x", "value": NaN}', content_type="application/json"
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
