"""How cache values become bytes: the codec (``REDIS_CACHE_SERIALIZER``), and
the small tag that tells ``bytes`` from a codec value.

A ``str`` is stored as its UTF-8, as it always was: other clients read it as
it is. ``bytes`` and codec values start with the byte 0xF8, which never
occurs in UTF-8, and a kind letter, so no ``str`` (nor anything stored
before the tag existed) is mistaken for them.

Nothing is ever pickled: a codec that would unpickle what it reads (pickle,
dill, cloudpickle, jsonpickle) is refused at startup, because whoever can
write to the cache's Redis could then run code in every process reading it.
"""

from __future__ import annotations

import importlib
import json
import math
from typing import Any, Protocol

from ._errors import CacheValueError, ConfigurationError

_BYTES, _VALUE = b"\xf8b", b"\xf8v"
# Top-level packages whose loads can run code while reading.
_UNPICKLERS = frozenset({"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "jsonpickle"})


class Codec(Protocol):
    """What ``REDIS_CACHE_SERIALIZER`` names: ``dumps`` turns a value into
    ``bytes`` (or ``str``), ``loads`` turns those bytes back."""

    def dumps(self, value: Any) -> bytes | str: ...

    def loads(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON: dicts with ``str`` keys, lists, ``str``, ``int``, ``float``
    (finite), ``bool`` and None. A tuple comes back as a list. Anything else
    raises :class:`CacheValueError` naming its type, rather than coming back
    changed (a dict with ``int`` keys would come back with ``str`` keys)."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        _check_json(value)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class MsgpackCodec:
    """msgpack (the ``msgpack`` extra): JSON's types plus ``bytes`` and
    non-``str`` dict keys. A tuple comes back as a list."""

    name = "msgpack"

    def __init__(self) -> None:
        import msgpack

        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        try:
            return self._msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as exc:
            raise CacheValueError(f"msgpack cannot store this value: {exc}") from None

    def loads(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False, strict_map_key=False)


def json_offender(value: Any) -> str | None:
    """What in ``value`` JSON would refuse or bring back changed (a type's
    name, or a description), or None when it round-trips exactly (tuples
    aside, which come back as lists)."""
    kind = type(value)
    if value is None or kind in (str, int, bool):
        return None
    if kind is float:
        return None if math.isfinite(value) else f"float {value!r}"
    if kind in (list, tuple):
        for item in value:
            found = json_offender(item)
            if found is not None:
                return found
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"dict with {type(key).__name__} keys"
            found = json_offender(item)
            if found is not None:
                return found
        return None
    return kind.__name__


def _check_json(value: Any) -> None:
    """Raise :class:`CacheValueError` for anything JSON would refuse or change."""
    found = json_offender(value)
    if found is not None:
        raise CacheValueError(
            f"The json codec cannot store {found}: store str, bytes, or dict (str keys), "
            "list, int, float, bool and None; or set REDIS_CACHE_SERIALIZER (nothing is "
            "pickled)."
        )


def _unpickles(codec: object, dotted: str) -> bool:
    names = [dotted, getattr(codec, "__name__", ""), type(codec).__module__]
    for attribute in ("dumps", "loads"):
        names.append(getattr(getattr(codec, attribute, None), "__module__", None) or "")
    return any(name.split(".")[0] in _UNPICKLERS for name in names if isinstance(name, str))


def resolve_codec(key: str, value: object) -> Codec:
    """The codec named by ``value`` (``"json"``, ``"msgpack"``, a dotted path
    ``package.module.name`` or ``package.module:name``, or an object with
    ``dumps`` and ``loads``). Raises :class:`ConfigurationError` naming
    ``key`` for an unknown name, a missing extra, or a codec that unpickles.
    """
    if value in (None, "", "json"):
        return JsonCodec()
    if value == "msgpack":
        try:
            return MsgpackCodec()
        except ImportError:
            raise ConfigurationError(
                f"{key} is msgpack, which is not installed: pip install 'flask-fogredis[msgpack]'."
            ) from None
    dotted = value if isinstance(value, str) else ""
    codec: object = value
    if isinstance(value, str):
        module_name, _, attribute = value.replace(":", ".").rpartition(".")
        if value.split(".")[0].split(":")[0] in _UNPICKLERS:
            codec = None  # refused below, without importing it
        else:
            try:
                codec = getattr(importlib.import_module(module_name), attribute)
            except (ImportError, AttributeError, ValueError):
                raise ConfigurationError(
                    f"{key} = {value!r}: no such codec. Use 'json', 'msgpack', or the "
                    "dotted path of an object with dumps and loads."
                ) from None
    if codec is None or _unpickles(codec, dotted):
        raise ConfigurationError(
            f"{key} names a codec that unpickles ({value!r}): whoever can write to the "
            "cache's Redis could run code in the app. Use 'json' or 'msgpack'."
        )
    if not callable(getattr(codec, "dumps", None)) or not callable(getattr(codec, "loads", None)):
        raise ConfigurationError(f"{key}: {value!r} has no dumps and loads functions.")
    return codec  # type: ignore[return-value]


def encode(codec: Codec, value: Any) -> bytes:
    """``value`` as stored: a ``str`` as UTF-8, ``bytes`` tagged so they
    come back as ``bytes``, anything else through ``codec``, tagged. Raises
    :class:`CacheValueError` naming the type when the codec fails."""
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError:
            raise CacheValueError("The cache stores str that is valid Unicode.") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _BYTES + bytes(value)
    try:
        data = codec.dumps(value)
    except CacheValueError:
        raise
    except Exception as exc:
        raise CacheValueError(
            f"The cache's codec cannot store {type(value).__name__}: {type(exc).__name__}."
        ) from None
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes):
        raise CacheValueError(f"The cache's codec returned {type(data).__name__}, not bytes.")
    return _VALUE + data


def decode(codec: Codec, raw: bytes, decode_text: bool) -> Any:
    """A stored value back. Untagged values (a ``str``, or ``bytes`` stored
    before the tag existed) come back as every reply does: ``str`` when
    ``decode_text`` (``REDIS_DECODE_RESPONSES``) and they are UTF-8,
    ``bytes`` otherwise."""
    if raw[:1] == b"\xf8":
        kind = raw[:2]
        if kind == _BYTES:
            return raw[2:]
        if kind == _VALUE:
            return codec.loads(raw[2:])
    if decode_text:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw
    return raw
