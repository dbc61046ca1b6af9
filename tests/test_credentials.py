"""REDIS_CREDENTIAL_PROVIDER: rotating credentials (cloud IAM tokens) for
every connection FogRedis opens, on a real redis-server with an ACL user."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from flask import Flask
from redis.credentials import CredentialProvider

from flask_fogredis import ConfigurationError, FogRedis, RedisUnavailableError

from .conftest import make_app
from .servers import RedisServer

OLD = "old-secret-in-no-message"
NEW = "new-secret-in-no-message"
USER = "rotating"


class Rotating(CredentialProvider):
    """Hands out the current password; the test changes it."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.asked = 0

    def get_credentials(self) -> tuple[str, str]:
        self.asked += 1
        return USER, self.password


def factory() -> Rotating:
    """Named by a dotted path in the tests below."""
    return Rotating(OLD)


def not_a_provider() -> object:
    return object()


def failing_factory() -> Rotating:
    raise RuntimeError(f"token service said no to {OLD}")


def _add_user(server: RedisServer, *passwords: str) -> None:
    server.admin().acl_setuser(
        USER,
        enabled=True,
        reset_passwords=True,
        passwords=[f"+{p}" for p in passwords],
        commands=["+@all"],
        keys=["*"],
        channels=["*"],
    )


def test_an_instance_or_a_factory_path_is_accepted() -> None:
    provider = Rotating(OLD)
    for value, expected in (
        (provider, provider),
        (f"{__name__}:factory", Rotating),
        (f"{__name__}.factory", Rotating),
    ):
        app = make_app(REDIS_URL="redis://127.0.0.1:1/0", REDIS_CREDENTIAL_PROVIDER=value)
        fog = FogRedis(app)
        with app.app_context():
            given = fog.state().settings.credential_provider
            assert given is expected if isinstance(expected, Rotating) else type(given) is expected
            assert OLD not in repr(fog.state().settings)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (OLD, "is a str (not shown)"),
        (12, "is a int (not shown)"),
        (f"{__name__}:absent", "cannot be imported (AttributeError)"),
        ("no_such_module_here.factory", "cannot be imported (ModuleNotFoundError)"),
        (f"{__name__}:not_a_provider", "returned a object"),
        (f"{__name__}:failing_factory", "raised RuntimeError"),
        (f"{__name__}:OLD", "not callable"),
    ],
)
def test_anything_else_is_refused_without_showing_a_secret(value: object, says: str) -> None:
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", REDIS_CREDENTIAL_PROVIDER=value)
    with pytest.raises(ConfigurationError, match="REDIS_CREDENTIAL_PROVIDER") as caught:
        FogRedis(app)
    assert says in str(caught.value)
    assert OLD not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://:pw@127.0.0.1:1/0", "redis://someone@127.0.0.1:1/0", "memory://"]
)
def test_a_url_with_credentials_or_the_memory_store_refuses_a_provider(url: str) -> None:
    app = make_app(REDIS_URL=url, REDIS_CREDENTIAL_PROVIDER=Rotating(OLD))
    with pytest.raises(ConfigurationError, match="REDIS_CREDENTIAL_PROVIDER"):
        FogRedis(app)


def test_refused_credentials_are_a_clear_error_without_the_credential(
    redis_server: RedisServer,
) -> None:
    _add_user(redis_server, NEW)
    app = make_app(REDIS_URL=redis_server.url, REDIS_CREDENTIAL_PROVIDER=Rotating(OLD))
    fog = FogRedis(app)
    with app.app_context(), pytest.raises(RedisUnavailableError) as caught:
        fog.get("k")
    text = str(caught.value)
    assert "refused the credentials" in text
    assert "REDIS_CREDENTIAL_PROVIDER" in text
    assert OLD not in text and NEW not in text
    with app.app_context():
        assert fog.health_check()["error"] == "authentication failed"


def _app_under_load(server: RedisServer, provider: Rotating) -> tuple[Flask, FogRedis]:
    app = make_app(
        REDIS_URL=server.url,
        REDIS_CREDENTIAL_PROVIDER=provider,
        REDIS_CACHE_URL=server.url[:-2] + "/1",
        REDIS_CACHE_CREDENTIAL_PROVIDER=provider,
        REDIS_NEAR_CACHE=True,
        REDIS_POOL_SIZE=4,
        REDIS_CACHE_POOL_SIZE=4,
    )
    fog = FogRedis(app)

    @app.get("/work/<int:n>")
    def work(n: int) -> str:
        fog.set(f"k{n % 7}", str(n), expire=60)
        return str(fog.get(f"k{n % 7}"))

    @app.get("/cached")
    @fog.cached(ttl=60, namespace="rot")
    def cached() -> str:
        return "cached body"

    return app, fog


def test_rotation_under_load_fails_no_request(redis_server: RedisServer) -> None:
    """Four threads send requests while the new password is added, the
    provider switched and the old password removed: connections already
    authenticated go on working. Then Redis drops every connection of the
    user (between two waves of requests: a command in flight on a dropped
    connection fails like any other) and the second wave finds the pool,
    the health probe, the cache's Redis and the near-cache listener all
    reconnected with the new password. No request fails."""
    _add_user(redis_server, OLD)
    provider = Rotating(OLD)
    app, fog = _app_under_load(redis_server, provider)
    failures: list[str] = []
    served = [0]

    def wave(seconds: float, during: Callable[[], None]) -> None:
        done = threading.Event()

        def load() -> None:
            client = app.test_client()
            n = 0
            deadline = time.monotonic() + 30
            while not done.is_set() and time.monotonic() < deadline:
                n += 1
                for url in (f"/work/{n}", "/cached"):
                    try:
                        status = client.get(url).status_code
                    except Exception as exc:  # the test client raises in testing mode
                        failures.append(f"{url}: {type(exc).__name__}")
                    else:
                        if status != 200:
                            failures.append(f"{url}: {status}")
                served[0] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(seconds)
            during()
            time.sleep(seconds)
        finally:
            done.set()
            for thread in threads:
                thread.join(35)

    admin = redis_server.admin()

    def rotate() -> None:
        admin.acl_setuser(USER, enabled=True, passwords=[f"+{NEW}"])
        provider.password = NEW
        admin.acl_setuser(USER, enabled=True, passwords=[f"-{OLD}"])

    with app.app_context():
        assert fog.health_check()["healthy"] is True
    wave(0.5, rotate)
    assert served[0] > 0 and not failures, failures[:5]
    asked = provider.asked
    assert admin.client_kill_filter(user=USER) > 0
    with app.app_context():
        fog.state().probe.forget()
        assert fog.health_check()["healthy"] is True
    wave(0.5, lambda: None)
    assert not failures, failures[:5]
    assert provider.asked > asked  # reconnected, asking for the new password
    # The near-cache listener (started by the cached view) came back as that user too.
    deadline = time.monotonic() + 5
    while True:
        mine = [c for c in admin.client_list() if c["user"] == USER]
        if any("P" in c["flags"] for c in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert any("P" in c["flags"] for c in mine), mine
