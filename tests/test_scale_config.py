"""Sentinel and Cluster URLs and options: what is accepted, and the errors
for what is not (clear, naming the key, never showing a password)."""

from __future__ import annotations

import pytest

from flask_fogredis import ConfigurationError, FogRedis
from flask_fogredis._config import parse_url, read_config, read_settings
from flask_fogredis._sentinel import MasterConnection, MasterSSLConnection, sentinel_manager
from flask_fogredis._topology import connection_options

from .conftest import make_app

SECRET = "s3cret-pass"


def test_sentinel_url() -> None:
    target = parse_url(
        "REDIS_URL", f"redis+sentinel://user:{SECRET}@h1:26379,h2,[::1]:26380/mymaster/2"
    )
    assert target.is_sentinel and not target.is_cluster and not target.tls
    assert target.nodes == (("h1", 26379), ("h2", 26379), ("::1", 26380))
    assert target.service == "mymaster"
    assert target.connection == {"username": "user", "password": SECRET, "db": 2}
    assert target.password == SECRET
    assert SECRET not in target.display
    assert target.display.startswith("redis+sentinel://user:***@")


def test_sentinel_url_defaults_to_database_0() -> None:
    target = parse_url("REDIS_URL", "redis+sentinel://h1:5000/cache-master")
    assert target.connection == {"db": 0}
    assert target.service == "cache-master"


def test_cluster_url() -> None:
    target = parse_url("REDIS_URL", f"redis+cluster://:{SECRET}@h1:7000,h2:7001,h3")
    assert target.is_cluster and not target.is_sentinel
    assert target.nodes == (("h1", 7000), ("h2", 7001), ("h3", 6379))
    assert target.connection == {"password": SECRET}
    assert target.service is None
    assert parse_url("REDIS_URL", "redis+cluster://h1:7000/0").nodes == (("h1", 7000),)


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_tls_forms_take_the_tls_options(kind: str) -> None:
    path = "/mymaster" if kind == "sentinel" else ""
    config = {
        "REDIS_URL": f"rediss+{kind}://h1:1000,h2:1001{path}?ssl_cert_reqs=optional",
        "REDIS_SSL_CA_CERTS": "/etc/ca.pem",
    }
    settings = read_settings(config, "REDIS")
    assert settings.target.tls
    assert settings.target.connection["ssl_cert_reqs"] == "optional"  # the URL's wins
    assert settings.target.connection["ssl_ca_certs"] == "/etc/ca.pem"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "no service name"),
        ("redis+sentinel://h1:26379/mymaster/zero", "/<service>/<db>"),
        ("redis+sentinel://h1:26379/mymaster/0/extra", "/<service>/<db>"),
        ("redis+sentinel://h1:26379/mymaster/1?db=2", "database is given twice"),
        ("redis+sentinel://h1:26379,,h2/mymaster", "an empty host"),
        # A port that is no number may be a password whose @host was left
        # out: not shown.
        ("redis+sentinel://h1:port/mymaster", "'***' of 'h1'"),
        ("redis+sentinel://h1:70000/mymaster", "port '70000'"),
        ("redis+sentinel://h1:/mymaster", "no port"),
        ("redis+sentinel:///mymaster", "no host"),
        ("redis+sentinel://[::1/mymaster", "IPv6"),
        ("redis+sentinel://h1/mymaster?decode_responses=false", "unsupported option"),
        ("redis+cluster://h1:7000/1", "database 0 only"),
        ("redis+cluster://h1:7000?db=3", "database 0 only"),
        ("redis+cluster://h 1:7000", "'h 1:7000' in the host list"),
        ("redis+cluster://h1:7000?ssl_cert_reqs=none", "unsupported option"),
        ("redis+cluster://h1:7000,h2:-1", "port '-1'"),
        ("redis+sentinels://h1/mymaster", "unknown scheme"),
    ],
)
def test_malformed_urls(url: str, says: str) -> None:
    with_secret = url.replace("://", f"://user:{SECRET}@", 1) if "///" not in url else url
    for candidate in (url, with_secret):
        with pytest.raises(ConfigurationError) as caught:
            read_settings({"REDIS_URL": candidate}, "REDIS")
        message = str(caught.value)
        assert message.startswith("REDIS_URL ")
        assert says in message
        assert SECRET not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REDIS_SENTINEL_TIMEOUT", 0),
        ("REDIS_SENTINEL_TIMEOUT", "soon"),
        ("REDIS_SENTINEL_PASSWORD", 42),
        ("REDIS_JWT_WAIT_REPLICAS", -1),
        ("REDIS_JWT_WAIT_TIMEOUT", 0),
    ],
)
def test_bad_options_name_their_key(key: str, value: object) -> None:
    app = make_app(REDIS_URL="redis+sentinel://h1/mymaster", **{key: value})
    with pytest.raises(ConfigurationError, match=key):
        FogRedis(app)


def test_sentinels_get_their_own_credentials_and_short_timeouts() -> None:
    settings = read_settings(
        {
            "REDIS_URL": f"rediss+sentinel://:{SECRET}@h1,h2/mymaster",
            "REDIS_SENTINEL_USERNAME": "watcher",
            "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
            "REDIS_SENTINEL_TIMEOUT": 0.25,
        },
        "REDIS",
    )
    manager = sentinel_manager(settings)
    kwargs = manager.sentinel_kwargs
    assert kwargs["username"] == "watcher"
    assert kwargs["password"] == "sentinel-secret"  # not the data nodes' SECRET
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["retry"]._retries == 0  # a dead sentinel is not asked again
    assert kwargs["ssl"] is True
    connection_class, options = connection_options(settings)
    assert connection_class is MasterSSLConnection
    assert options["password"] == SECRET and "host" not in options


def test_a_lone_connection_on_sentinel_goes_to_the_master() -> None:
    settings = read_settings({"REDIS_URL": "redis+sentinel://h1/mymaster"}, "REDIS")
    connection_class, options = connection_options(settings)
    assert connection_class is MasterConnection
    assert options["fog_service"] == "mymaster"


def test_no_password_warning_covers_sentinel_and_cluster(caplog: pytest.LogCaptureFixture) -> None:
    from flask import Flask

    for url in ("redis+sentinel://h1/mymaster", "redis+cluster://h1,h2"):
        app = Flask("production-like")
        app.config["REDIS_URL"] = url
        FogRedis(app)
    warned = [r.getMessage() for r in caplog.records if "has no password" in r.getMessage()]
    assert len(warned) == 2


@pytest.mark.parametrize(
    ("urls", "key"),
    [
        ({"REDIS_URL": "redis+cluster://h1,h2"}, "REDIS_URL"),
        (
            {"REDIS_URL": "redis://h1", "REDIS_CACHE_URL": "redis+cluster://h1,h2"},
            "REDIS_CACHE_URL",
        ),
    ],
)
def test_the_near_cache_is_refused_on_cluster(urls: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{key} is a Redis Cluster"):
        read_config({**urls, "REDIS_NEAR_CACHE": True}, "REDIS", first=True)


@pytest.mark.parametrize("identity", ["alice", "}x", "{", "a{b}c", "{}", "7"])
def test_revocation_keys_of_one_identity_share_a_slot(identity: str) -> None:
    from redis.crc import key_slot

    from flask_fogredis._topology import slot_tag

    tag = slot_tag(identity)
    jti_key = f"fog:jwt:{tag}:jti:some-jti"
    sub_key = f"fog:jwt:{tag}:sub:{identity}"
    assert key_slot(jti_key.encode()) == key_slot(sub_key.encode())


def test_cluster_pools_seen_as_one_before_first_use() -> None:
    from flask_fogredis._cluster import ClusterPools

    app = make_app(REDIS_URL="redis+cluster://127.0.0.1:1,127.0.0.1:2", REDIS_POOL_SIZE=4)
    fog = FogRedis(app)
    with app.app_context():
        pools = fog.pool
        assert isinstance(pools, ClusterPools)
        assert pools.stats() == {"size": 4, "open": 0, "idle": 0, "in_use": 0, "waiting": 0}
        assert (pools.maxsize, pools.qsize(), pools.waiting) == (0, 0, 0)
        fog.disconnect()  # harmless before the first use


def test_tls_forms_open_tls_connections_everywhere() -> None:
    from redis.connection import SSLConnection

    from flask_fogredis._sentinel import FogSentinelSSLConnection, SentinelBlockingPool

    cluster_app = make_app(REDIS_URL="rediss+cluster://127.0.0.1:1,127.0.0.1:2")
    sentinel_app = make_app(REDIS_URL="rediss+sentinel://127.0.0.1:1/mymaster")
    FogRedis(cluster_app)
    FogRedis(sentinel_app)
    with cluster_app.app_context():
        state = cluster_app.extensions["fogredis"]["REDIS"]
        options = state.client.__dict__["_fog_kwargs"]
        assert issubclass(options["connection_class"], SSLConnection)
        assert options["url"] == "redis://127.0.0.1:1"  # TLS comes from the class
    with sentinel_app.app_context():
        pool = sentinel_app.extensions["fogredis"]["REDIS"].pool
        assert isinstance(pool, SentinelBlockingPool)
        assert pool.connection_class is FogSentinelSSLConnection


def test_cluster_client_errors_are_told_apart() -> None:
    from redis.exceptions import RedisClusterException

    from flask_fogredis import RedisCommandError, RedisUnavailableError
    from flask_fogredis._connections import translated

    settings = read_settings({"REDIS_URL": f"redis+cluster://:{SECRET}@h1,h2"}, "REDIS")
    with pytest.raises(RedisUnavailableError, match="unavailable") as down, translated(settings):
        raise RedisClusterException(f"Redis Cluster cannot be connected (password {SECRET})")
    assert SECRET not in str(down.value)
    with pytest.raises(RedisCommandError, match="same key slot"), translated(settings):
        raise RedisClusterException("MGET - all keys must map to the same key slot")
