"""Codecs named by dotted path in the codec tests."""

from __future__ import annotations

import json
import pickle
from typing import Any


class Upper:
    """A codec of its own: JSON with a marker, to see it is the one used."""

    def dumps(self, value: Any) -> bytes:
        return b"U" + json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        assert data[:1] == b"U"
        return json.loads(data[1:])


upper = Upper()


class Failing:
    """A codec that raises on every value."""

    def dumps(self, value: Any) -> bytes:
        raise RuntimeError("cannot")

    def loads(self, data: bytes) -> Any:
        raise RuntimeError("cannot")


failing = Failing()


class Sneaky:
    """Looks like a codec of its own, but unpickles."""

    dumps = staticmethod(pickle.dumps)
    loads = staticmethod(pickle.loads)


sneaky = Sneaky()
