"""Python values in the cache: the codec (REDIS_CACHE_SERIALIZER), on the
embedded store."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.client import NEVER_DECODE

from flask_fogredis import CacheValueError, ConfigurationError, FogRedis
from flask_fogredis._codec import JsonCodec, MsgpackCodec, decode, encode

from .conftest import make_app

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text()
    | st.binary()
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text() | st.integers(0, 1000), inner, max_size=4)
    ),
    max_leaves=20,
)


def fog_app(**config: Any) -> tuple[Any, FogRedis]:
    app = make_app(REDIS_URL="memory://", **config)
    return app, FogRedis(app)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_json_round_trips(value: Any) -> None:
    codec = JsonCodec()
    assert decode(codec, encode(codec, value), True) == value


@settings(max_examples=200, deadline=None)
@given(msgpack_values)
def test_msgpack_round_trips(value: Any) -> None:
    codec = MsgpackCodec()
    assert decode(codec, encode(codec, value), True) == value


@settings(max_examples=100, deadline=None)
@given(st.text() | st.binary())
def test_str_stays_str_and_bytes_stay_bytes(value: str | bytes) -> None:
    for codec in (JsonCodec(), MsgpackCodec()):
        back = decode(codec, encode(codec, value), True)
        assert back == value and type(back) is type(value)


def test_helper_takes_python_values() -> None:
    app, fog = fog_app()
    with app.app_context():
        fog.cache_set("ns", "d", {"a": [1, 2.5, None, True], "b": "x"})
        assert fog.cache_get("ns", "d") == {"a": [1, 2.5, None, True], "b": "x"}
        fog.cache_set("ns", "t", (1, "two"))
        assert fog.cache_get("ns", "t") == [1, "two"]  # the documented type
        fog.cache_set("ns", "n", 0)
        assert fog.cache_get("ns", "n") == 0
        fog.cache_set("ns", "b", b"text")
        assert fog.cache_get("ns", "b") == b"text"  # not "text": bytes stay bytes
        fog.cache_set("ns", "s", "text")
        assert fog.client.get("fog:cache:2:ns:k:s") == "text"  # str stored as given


def test_values_stored_before_the_codec_still_read() -> None:
    app, fog = fog_app()
    with app.app_context():
        fog.client.set("fog:cache:2:ns:k:old", "plain")
        fog.client.set("fog:cache:2:ns:k:raw", b"\xff\x00")
        assert fog.cache_get("ns", "old") == "plain"
        assert fog.cache_get("ns", "raw") == b"\xff\x00"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({1, 2}, "set"),
        ({1: "a"}, "dict with int keys"),
        ([object()], "object"),
        (float("nan"), "nan"),
    ],
)
def test_what_json_cannot_take_is_refused_and_nothing_stored(value: Any, named: str) -> None:
    app, fog = fog_app()
    with app.app_context():
        with pytest.raises(CacheValueError, match=named):
            fog.cache_set("ns", "k", value)
        assert fog.client.exists("fog:cache:2:ns:k:k") == 0


def test_msgpack_is_chosen_by_name() -> None:
    app, fog = fog_app(REDIS_CACHE_SERIALIZER="msgpack")
    with app.app_context():
        fog.cache_set("ns", "k", {1: b"\x00"})
        assert fog.cache_get("ns", "k") == {1: b"\x00"}


def test_a_dotted_path_names_a_codec() -> None:
    app, fog = fog_app(REDIS_CACHE_SERIALIZER="tests.fake_codecs.upper")
    with app.app_context():
        fog.cache_set("ns", "k", [1])
        raw = fog.client.execute_command("GET", "fog:cache:2:ns:k:k", **{NEVER_DECODE: True})
        assert raw == b"\xf8vU[1]"
        assert fog.cache_get("ns", "k") == [1]


def test_a_codec_that_raises_gives_a_cache_value_error() -> None:
    app, fog = fog_app(REDIS_CACHE_SERIALIZER="tests.fake_codecs:failing")
    with app.app_context():
        with pytest.raises(CacheValueError, match="list"):
            fog.cache_set("ns", "k", [1])
        assert fog.client.exists("fog:cache:2:ns:k:k") == 0


@pytest.mark.parametrize(
    "codec",
    [
        "pickle",
        "dill",
        "cloudpickle",
        "jsonpickle",
        "pickle:loads",
        pickle,
        "tests.fake_codecs.sneaky",
    ],
)
def test_codecs_that_unpickle_are_refused_at_startup(codec: object) -> None:
    with pytest.raises(ConfigurationError, match=r"REDIS_CACHE_SERIALIZER.*unpickles"):
        fog_app(REDIS_CACHE_SERIALIZER=codec)


@pytest.mark.parametrize("codec", ["nope", "tests.fake_codecs.absent", "os.path"])
def test_unknown_codecs_are_refused_at_startup(codec: str) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_CACHE_SERIALIZER"):
        fog_app(REDIS_CACHE_SERIALIZER=codec)
