"""One word per idea: ``blocklist`` and ``ttl``; the older names keep
working, and a neighbour's key set where ours was meant is pointed out."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from flask_fogredis import FogRedis, InvalidArgumentError, testing

from .conftest import make_app


def test_ttl_is_the_word_and_the_older_keywords_still_work() -> None:
    with testing.app_context() as (_, fog):
        assert fog.set("a", "1", ttl=60)
        assert fog.set("b", "1", expire=timedelta(seconds=90))
        assert fog.set("c", "1", 30)
        assert 0 < fog.ttl("a") <= 60 and 60 < fog.ttl("b") <= 90 and fog.ttl("c") <= 30
        assert fog.expire("a", ttl=120) and 60 < fog.ttl("a") <= 120
        assert fog.expire("a", seconds=200) and 120 < fog.ttl("a") <= 200
        with pytest.raises(InvalidArgumentError, match="not both"):
            fog.set("a", "1", ttl=1, expire=2)
        with pytest.raises(InvalidArgumentError, match="ttl"):
            fog.expire("a", ttl=0)


@pytest.mark.parametrize("bad", ["60", 0.5, 0, -1, float("nan"), float("inf"), True])
def test_every_ttl_argument_is_checked_by_one_rule(bad: object) -> None:
    """Keys, revocations and cache entries take a ttl the same way: a number
    of seconds or a timedelta, never text (only configuration keys are)."""
    with testing.app_context() as (_, fog):
        whole = "ttl must be a number of seconds >= 1"
        with pytest.raises(InvalidArgumentError, match=whole):
            fog.set("a", "1", ttl=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match=whole):
            fog.expire("a", ttl=bad)  # type: ignore[arg-type]
        if bad != 0.5:
            with pytest.raises(InvalidArgumentError, match="ttl must be a number of seconds > 0"):
                fog.blocklist_token("j", ttl=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError, match="ttl must be a number of seconds > 0"):
                fog.cache_set("n", "k", "v", ttl=bad)  # type: ignore[arg-type]


def test_blocklist_is_the_word_and_blacklist_still_works() -> None:
    with testing.app_context() as (_, fog):
        fog.blocklist_token("one", ttl=60)
        fog.blacklist_token("two", expire_seconds=60)
        fog.blacklist_token("three", 60)
        fog.blocklist_token("four", None)
        for jti in ("one", "two", "three", "four"):
            assert fog.is_token_blocklisted(jti)
            assert fog.is_token_blacklisted(jti)
        assert not fog.is_token_blocklisted("five")
        with pytest.raises(InvalidArgumentError, match="not both"):
            fog.blocklist_token("x", ttl=1, expire_seconds=1)
        with pytest.raises(InvalidArgumentError, match="needs ttl"):
            fog.blocklist_token("x")


@pytest.mark.parametrize("option", ["--ttl", "--seconds"])
def test_the_cli_says_ttl_and_still_takes_seconds(option: str, redis_server: object) -> None:
    app = make_app(REDIS_URL=redis_server.url)  # type: ignore[attr-defined]
    fog = FogRedis(app)
    result = app.test_cli_runner().invoke(args=["fogredis", "revoke", "jti-1", option, "90"])
    assert result.exit_code == 0, result.output
    assert "for 0:01:30" in result.output
    with app.app_context():
        assert fog.is_token_blocklisted("jti-1")


def test_a_neighbour_s_key_where_ours_was_meant_is_pointed_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    theirs, ours = "CACHE_REDIS_URL", "REDIS_CACHE_URL"
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        FogRedis(make_app(REDIS_URL="memory://", **{theirs: "redis://127.0.0.1:1/0"}))
    assert f"FogRedis reads {ours}" in caplog.text
    caplog.clear()
    # The neighbour in use (its own type key set): nothing to say.
    with caplog.at_level(logging.WARNING, logger="flask_fogredis"):
        FogRedis(
            make_app(
                REDIS_URL="memory://",
                CACHE_TYPE="RedisCache",
                **{theirs: "redis://127.0.0.1:1/0"},
            )
        )
    assert "FogRedis reads" not in caplog.text
