"""A bad argument to a call raises InvalidArgumentError; ConfigurationError
is for the configuration only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from flask_fogredis import ConfigurationError, FogRedis, InvalidArgumentError

BAD_DURATIONS = [-1, 0, -0.5, float("nan"), float("inf"), "soon", True, timedelta(seconds=-5)]

CALLS: dict[str, Callable[[FogRedis, Any], object]] = {
    "set": lambda fog, bad: fog.set("k", "v", expire=bad),
    "expire": lambda fog, bad: fog.expire("k", bad),
    "cache_set": lambda fog, bad: fog.cache_set("ns", "k", "v", ttl=bad),
    "blacklist_token": lambda fog, bad: fog.blacklist_token("jti-1", bad),
    "cached": lambda fog, bad: fog.cached("ns", ttl=bad),
}


@pytest.mark.parametrize("bad", BAD_DURATIONS, ids=repr)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_bad_duration_is_an_invalid_argument(
    memory_app: tuple[Flask, FogRedis], call: str, bad: object
) -> None:
    _, fog = memory_app
    fog.set("k", "v")
    with pytest.raises(InvalidArgumentError) as caught:
        CALLS[call](fog, bad)
    assert not isinstance(caught.value, ConfigurationError)
    message = str(caught.value)
    assert "seconds" in message
    # The argument is named, not a config key.
    assert "REDIS_" not in message


def test_good_durations_are_accepted(memory_app: tuple[Flask, FogRedis]) -> None:
    _, fog = memory_app
    assert fog.set("k", "v", expire=timedelta(minutes=1))
    assert fog.expire("k", 30)
    assert fog.cache_set("ns", "k", "v", ttl=0.5)
    fog.blacklist_token("jti-1", timedelta(hours=1))
    assert fog.is_token_blacklisted("jti-1")
    assert callable(fog.cached("ns", ttl=timedelta(seconds=10)))


def test_a_bad_config_duration_is_still_a_configuration_error() -> None:
    app = Flask("config")
    app.config.update(TESTING=True, REDIS_URL="memory://", REDIS_CACHE_DEFAULT_TTL=-1)
    with pytest.raises(ConfigurationError, match="REDIS_CACHE_DEFAULT_TTL"):
        FogRedis(app)


def test_the_cli_refuses_a_bad_duration_as_bad_usage(memory_app: tuple[Flask, FogRedis]) -> None:
    app, _ = memory_app
    result = app.test_cli_runner().invoke(args=["fogredis", "revoke", "jti", "--seconds", "-1"])
    assert result.exit_code == 2
