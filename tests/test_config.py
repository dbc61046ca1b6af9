"""Configuration: defaults, validation at init_app, password-free errors."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
import redis
from flask import Flask

from flask_fogredis import ConfigurationError, FogRedis, FogRedisError, NotInitializedError
from flask_fogredis._config import mask_url

from .conftest import make_app
from .servers import free_port

SECRET = "s3cr3t-p4ss"


def test_defaults_are_written_into_the_config() -> None:
    app = make_app(REDIS_URL="memory://")
    FogRedis(app)
    assert app.config["REDIS_POOL_SIZE"] == 10
    assert app.config["REDIS_CONNECT_TIMEOUT"] == 5.0
    assert app.config["REDIS_HEALTH_CHECK_INTERVAL"] == 30
    assert app.config["REDIS_DECODE_RESPONSES"] is True
    assert app.config["REDIS_KEEPALIVE"] is True


def test_pool_is_built_from_the_config() -> None:
    app = make_app(
        REDIS_URL=f"redis://:{SECRET}@127.0.0.1:6399/3",
        REDIS_POOL_SIZE=7,
        REDIS_SOCKET_TIMEOUT=timedelta(seconds=2),
    )
    fog = FogRedis(app)
    with app.app_context():
        pool = fog.pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert pool.max_connections == 7
        kwargs = pool.connection_kwargs
        assert kwargs["db"] == 3
        assert kwargs["password"] == SECRET
        assert kwargs["socket_timeout"] == 2.0
        assert kwargs["socket_connect_timeout"] == 5.0
        assert kwargs["socket_keepalive"] is True
        assert kwargs["health_check_interval"] == 30
        assert kwargs["decode_responses"] is True
        assert fog.client.connection_pool is pool


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("REDIS_URL", f"http://:{SECRET}@localhost:6379/0", "unknown scheme"),
        ("REDIS_URL", f"redis://:{SECRET}@localhost:notaport/0", "host and port"),
        ("REDIS_URL", f"redis://:{SECRET}@localhost:99999/0", "host and port"),
        ("REDIS_URL", f"redis://:{SECRET}@/0", "no host"),
        ("REDIS_URL", f"redis://:{SECRET}@localhost:6379/zero", "database"),
        (
            "REDIS_URL",
            f"redis://:{SECRET}@localhost:6379/0?decode_responses=false",
            "REDIS_DECODE_RESPONSES",
        ),
        ("REDIS_URL", f"rediss://:{SECRET}@localhost:6379/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("REDIS_URL", "", "empty"),
        ("REDIS_URL", 6379, "not a string"),
        ("REDIS_URL", "unix://", "socket path"),
        ("REDIS_POOL_SIZE", 0, ">= 1"),
        ("REDIS_POOL_SIZE", -3, ">= 1"),
        ("REDIS_POOL_SIZE", 2.5, ">= 1"),
        ("REDIS_POOL_SIZE", "ten", ">= 1"),
        ("REDIS_POOL_SIZE", True, ">= 1"),
        ("REDIS_POOL_TIMEOUT", -1, "seconds"),
        ("REDIS_CONNECT_TIMEOUT", -0.5, "seconds"),
        ("REDIS_SOCKET_TIMEOUT", 0, "seconds"),
        ("REDIS_SOCKET_TIMEOUT", "soon", "seconds"),
        ("REDIS_HEALTH_CHECK_INTERVAL", -30, "seconds"),
        ("REDIS_HEALTH_TIMEOUT", float("nan"), "seconds"),
        ("REDIS_KEEPALIVE", "maybe", "True or False"),
        ("REDIS_RETRY_ATTEMPTS", -1, ">= 0"),
        ("REDIS_SSL_CERT_REQS", "sometimes", "required"),
        ("REDIS_KEY_PREFIX", "fog*", "glob"),
        ("REDIS_KEY_PREFIX", "", "non-empty"),
    ],
)
def test_bad_values_fail_at_init_app_naming_the_key(key: str, value: object, named: str) -> None:
    config: dict[str, object] = {"REDIS_URL": f"rediss://:{SECRET}@localhost:6379/0"}
    config[key] = value
    app = make_app(**config)
    with pytest.raises(ConfigurationError) as info:
        FogRedis(app)
    message = str(info.value)
    assert key in message
    assert named in message
    assert SECRET not in message
    assert isinstance(info.value, FogRedisError)
    assert isinstance(info.value, ValueError)


def test_numbers_from_environment_strings_are_accepted() -> None:
    app = make_app(
        REDIS_URL="memory://",
        REDIS_POOL_SIZE="4",
        REDIS_POOL_TIMEOUT="0.5",
        REDIS_KEEPALIVE="false",
    )
    fog = FogRedis(app)
    with app.app_context():
        assert fog.pool.max_connections == 4
        assert fog.pool.timeout == 0.5


def test_url_options_are_applied() -> None:
    app = make_app(
        REDIS_URL="rediss://user:pw@example.com:6380/?db=2&ssl_cert_reqs=none"
        "&ssl_check_hostname=false"
    )
    fog = FogRedis(app)
    with app.app_context():
        kwargs = fog.pool.connection_kwargs
        assert fog.pool.connection_class.__name__ == "FogSSLConnection"
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("example.com", 6380, 2)
    assert (kwargs["username"], kwargs["password"]) == ("user", "pw")
    assert kwargs["ssl_cert_reqs"] == "none"
    assert kwargs["ssl_check_hostname"] is False


def test_unix_socket_url() -> None:
    app = make_app(REDIS_URL="unix:///run/redis.sock?db=4")
    fog = FogRedis(app)
    with app.app_context():
        kwargs = fog.pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"]) == ("/run/redis.sock", 4)
    assert "socket_keepalive" not in kwargs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@h:1/0", "redis://:***@h:1/0"),
        (f"redis://user:{SECRET}@h:1/0", "redis://user:***@h:1/0"),
        (f"redis://{SECRET}@h:1/0", "redis://***@h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_mask_url_hides_the_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    "password", ["Xq7/Zr9K", "Xq7?Zr9K", "Xq7#Zr9K", "Xq7@Zr9K", "Xq7:Zr9/Kw@W"]
)
def test_unencoded_special_characters_never_show_the_password(password: str) -> None:
    """Unencoded, these characters end the user info early for a URL parser;
    neither the password nor any piece of it may show."""
    pieces = [piece for piece in re.split(r"[/?#@:]", password) if piece]
    shown = []
    for url in (
        f"redis://:{password}@host:6379/0",
        f"redis+sentinel://:{password}@h1:26379,h2:26379/mymaster",
        f"redis+cluster://:{password}@h1:7000,h2:7001",
    ):
        shown.append(mask_url(url))
        try:
            FogRedis(make_app(REDIS_URL=url))
        except ConfigurationError as exc:
            shown.append(str(exc))
    for text in shown:
        for piece in pieces:
            assert piece not in text


def test_config_prefix_gives_two_instances_their_own_keys() -> None:
    app = make_app(REDIS_URL="memory://a", CACHE_REDIS_URL="memory://b", CACHE_REDIS_POOL_SIZE=3)
    main, cache = FogRedis(app), FogRedis(app, config_prefix="CACHE_REDIS")
    with app.app_context():
        assert main.pool is not cache.pool
        assert main.pool.max_connections == 10
        assert cache.pool.max_connections == 3
        main.set("k", "main")
        cache.set("k", "cache")
        assert (main.get("k"), cache.get("k")) == ("main", "cache")


def test_bad_config_prefix() -> None:
    with pytest.raises(ConfigurationError, match="config_prefix"):
        FogRedis(make_app(), config_prefix="no spaces")


def test_init_app_twice_keeps_one_pool() -> None:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with app.app_context():
        pool = fog.pool
    fog.init_app(app)
    FogRedis(app)
    with app.app_context():
        assert fog.pool is pool


def test_use_outside_an_app_context_says_what_to_do() -> None:
    fog = FogRedis(make_app(REDIS_URL="memory://"))
    with pytest.raises(RuntimeError, match="app_context"):
        fog.get("k")


def test_use_on_an_app_never_initialised_says_what_to_do() -> None:
    fog = FogRedis()
    app = Flask("other")
    with app.app_context(), pytest.raises(NotInitializedError, match="init_app"):
        _ = fog.client


def test_missing_password_warns_in_production(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("prod")
    app.config["REDIS_URL"] = "redis://localhost:6379/0"
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        FogRedis(app)
    assert "no password" in caplog.text


def test_password_present_or_testing_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    # A port nothing listens on: init_app reads a reachable Redis's
    # maxmemory-policy, and a local one could warn about that.
    port = free_port()
    prod = Flask("prod")
    prod.config["REDIS_URL"] = f"redis://:{SECRET}@localhost:{port}/0"
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        FogRedis(prod)
        FogRedis(make_app(REDIS_URL=f"redis://localhost:{port}/0"))
    assert caplog.text == ""


def test_memory_store_warns_outside_debug_and_testing(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("prod")
    app.config["REDIS_URL"] = "memory://"
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        FogRedis(app)
    assert "memory://" in caplog.text


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "redis+cluster://127.0.0.1:7000", "unix:///tmp/r.sock"]
)
def test_certificate_keys_without_tls_are_refused(url: str) -> None:
    app = make_app(REDIS_URL=url, REDIS_SSL_CA_CERTS="/etc/ssl/ca.pem")
    with pytest.raises(ConfigurationError, match=r"REDIS_SSL_CA_CERTS is set but .*rediss://"):
        FogRedis(app)


def test_a_key_prefix_for_the_cache_s_own_redis_is_refused() -> None:
    app = make_app(
        REDIS_URL="memory://", REDIS_CACHE_URL="memory://c", REDIS_CACHE_KEY_PREFIX="other"
    )
    with pytest.raises(ConfigurationError, match="REDIS_CACHE_KEY_PREFIX is set") as caught:
        FogRedis(app)
    assert "REDIS_KEY_PREFIX" in str(caught.value)


def test_the_blocklist_default_depends_on_being_the_app_s_first() -> None:
    app = make_app(REDIS_URL="memory://", OTHER_URL="memory://")
    FogRedis(app)
    FogRedis(app, config_prefix="OTHER")
    assert app.config["REDIS_JWT_BLOCKLIST"] is True
    assert app.config["OTHER_JWT_BLOCKLIST"] is False


def test_no_certificate_check_means_no_hostname_check() -> None:
    """ssl refuses CERT_NONE with hostname checking on; redis-py 5.0 passes
    the pair through and fails at the first connect."""
    app = make_app(REDIS_URL="rediss://127.0.0.1:6379/0?ssl_cert_reqs=none")
    fog = FogRedis(app)
    with app.app_context():
        kwargs = fog.pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("none", False)
