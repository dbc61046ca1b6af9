"""@fog.memoize and delete_memoized, on the embedded store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_fogredis import CacheValueError, FogRedis, InvalidArgumentError

from .conftest import make_app


@pytest.fixture
def fog() -> Iterator[FogRedis]:
    app = make_app(REDIS_URL="memory://")
    fog = FogRedis(app)
    with app.app_context():
        yield fog


def counted(fog: FogRedis, **options: Any) -> tuple[Any, list[tuple[Any, ...]]]:
    calls: list[tuple[Any, ...]] = []

    @fog.memoize("memo", 60, **options)
    def area(width: int, height: int = 2, *, unit: str = "m") -> dict[str, Any]:
        calls.append((width, height, unit))
        return {"area": width * height, "unit": unit}

    return area, calls


def test_calls_that_bind_alike_share_an_entry(fog: FogRedis) -> None:
    area, calls = counted(fog)
    assert area(3) == {"area": 6, "unit": "m"}
    assert area(3, 2) == area(width=3) == area(3, height=2, unit="m") == {"area": 6, "unit": "m"}
    assert calls == [(3, 2, "m")]
    area(3, 3)
    area(3, unit="cm")
    assert len(calls) == 3


def test_none_and_falsy_results_are_cached(fog: FogRedis) -> None:
    calls: list[int] = []

    @fog.memoize("memo", 60)
    def nothing(n: int) -> None:
        calls.append(n)

    nothing(1)
    nothing(1)
    assert calls == [1]


def test_one_round_trip_per_hit(fog: FogRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    area, _ = counted(fog)
    area(1)
    sent: list[tuple[Any, ...]] = []
    original: Any = type(fog.client).execute_command

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(fog.client), "execute_command", spy)
    assert area(1) == {"area": 2, "unit": "m"}
    assert [args[0] for args in sent] == ["GET"]


def test_methods_are_keyed_without_self_unless_asked(fog: FogRedis) -> None:
    calls: list[str] = []

    class Report:
        def __init__(self, name: str) -> None:
            self.name = name

        def __repr__(self) -> str:
            return f"Report({self.name})"

        @fog.memoize("memo", 60)
        def shared(self, n: int) -> int:
            calls.append(f"shared {self.name}")
            return n

        @fog.memoize("memo", 60, key_self=True)
        def own(self, n: int) -> int:
            calls.append(f"own {self.name}")
            return n

    a, b = Report("a"), Report("b")
    assert a.shared(1) == b.shared(1) == 1
    assert a.own(1) == b.own(1) == a.own(1) == 1
    assert calls == ["shared a", "own a", "own b"]
    assert fog.delete_memoized(b.own, 1) == 1
    b.own(1)
    a.own(1)
    assert calls[-1] == "own b" and calls.count("own a") == 1


@pytest.mark.parametrize(
    ("bad", "named"), [({1, 2}, "set"), (object(), "object"), ({1: 2}, "int keys")]
)
def test_arguments_that_are_not_json_are_refused(fog: FogRedis, bad: Any, named: str) -> None:
    area, calls = counted(fog)
    with pytest.raises(InvalidArgumentError, match=named):
        area(bad)
    assert calls == []


def test_key_func_keys_anything(fog: FogRedis) -> None:
    calls: list[Any] = []

    @fog.memoize("memo", 60, key_func=lambda items: ",".join(sorted(items)))
    def joined(items: set[str]) -> str:
        calls.append(items)
        return "+".join(sorted(items))

    assert joined({"b", "a"}) == joined({"a", "b"}) == "a+b"
    assert len(calls) == 1


def test_keys_stay_bounded_for_huge_arguments(fog: FogRedis) -> None:
    area, _ = counted(fog)
    area("x" * 1_000_000)
    keys = fog.client.keys("fog:cache:4:memo:m:*")
    assert len(keys) == 1 and len(keys[0]) < 100


def test_a_result_the_codec_cannot_take_raises(fog: FogRedis) -> None:
    @fog.memoize("memo", 60)
    def odd() -> set[int]:
        return {1}

    with pytest.raises(CacheValueError, match="set"):
        odd()
    assert fog.client.keys("fog:cache:4:memo:*") == []


def test_async_functions(fog: FogRedis) -> None:
    calls: list[int] = []

    @fog.memoize("memo", 60)
    async def double(n: int) -> int:
        calls.append(n)
        return 2 * n

    assert asyncio.run(double(2)) == 4
    assert asyncio.run(double(n=2)) == 4
    assert calls == [2]
    assert fog.delete_memoized(double, 2) == 1
    assert asyncio.run(double(2)) == 4
    assert calls == [2, 2]


def test_delete_memoized_one_call_or_all(fog: FogRedis) -> None:
    area, calls = counted(fog)
    other_calls: list[int] = []

    @fog.memoize("memo", 60)
    def other(n: int) -> int:
        other_calls.append(n)
        return n

    for n in range(5):
        area(n)
    other(1)
    assert fog.delete_memoized(area, 3, height=2) == 1
    area(3)
    assert len(calls) == 6
    area(1)
    assert len(calls) == 6
    assert fog.delete_memoized(area) == 5
    area(1)
    assert len(calls) == 7
    other(1)
    assert len(other_calls) == 1  # another function in the same namespace is untouched


def test_delete_memoized_refuses_plain_functions(fog: FogRedis) -> None:
    with pytest.raises(InvalidArgumentError, match="memoize"):
        fog.delete_memoized(len)


def test_tags_and_invalidate_tags(fog: FogRedis) -> None:
    calls: list[int] = []

    @fog.memoize("memo", 60, tags=lambda user: [f"user:{user}", "users"])
    def profile(user: int) -> int:
        calls.append(user)
        return user

    profile(1)
    profile(2)
    assert fog.invalidate_tags("user:1") == 1
    profile(1)
    profile(2)
    assert calls == [1, 2, 1]
    assert fog.invalidate_tags("users", "absent") == 2
    profile(2)
    assert calls == [1, 2, 1, 2]


def test_memoize_is_checked_at_decoration(memory_app: tuple[Flask, FogRedis]) -> None:
    _, fog = memory_app
    with pytest.raises(InvalidArgumentError):
        fog.memoize("memo", 0)
    with pytest.raises(InvalidArgumentError, match="tag"):
        fog.memoize("memo", 60, tags=["ok", ""])
