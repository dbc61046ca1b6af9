"""No configuration error, repr or log line shows any part of a password,
wherever in the configuration it was written: in the URL's user info, in a
``?password=`` option, as the sentinels' password, or pasted on its own
where the URL belongs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from flask_fogredis import ConfigurationError, FogRedis

# Letters that no message, key name or hex address strings together: a run
# of four of them in a text can only come from the secret.
RARE = "QXZJKVWqxzjkvw"
# Passwords have letters: at least four (a password of punctuation alone
# could be told from a URL's own by nothing).
secrets = st.text(alphabet=RARE + "-_.~!$&'()*+,;=:/?#@%", min_size=6, max_size=24).filter(
    lambda s: sum(c in RARE for c in s) >= 4
)

SHAPES = (
    "{s}",
    "redis://:{s}@127.0.0.1:6379/0",
    "redis://user:{s}@127.0.0.1:6379/0",
    "rediss://:{s}@127.0.0.1:6379/0?ssl_cert_reqs=none",
    "redis://127.0.0.1:6379/0?password={s}",
    "redis://127.0.0.1:6379/0?{s}",
    "redis://127.0.0.1:6379/0#{s}",
    "redis://:{s}",
    "redis://user:{s}",
    "redis+sentinel://:{s}@127.0.0.1:26379/mymaster",
    "redis+sentinel://127.0.0.1:26379/mymaster?password={s}",
    "redis+cluster://user:{s}@127.0.0.1:7000,127.0.0.1:7001",
)


def pieces(secret: str) -> list[str]:
    """The secret, and each part of it between URL delimiters that is long
    enough, and rare enough, to be recognised in a text."""
    parts = [p for p in re.split(r"[/?#@:&=,;]", secret) if len(p) >= 4]
    return [secret] + [p for p in parts if any(c in RARE for c in p)]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log line of every logger, down to DEBUG, while the block runs."""
    handler = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def everything_shown(config: dict[str, object]) -> list[str]:
    """What a user may see of ``config``: the error of ``init_app`` or the
    repr of what it built, and every log line meanwhile. Production mode:
    the warnings about the configuration are on."""
    app = Flask("secrets")
    app.config.update(config)
    texts: list[str] = []
    with captured_logs() as lines:
        try:
            fog = FogRedis(app)
        except ConfigurationError as exc:
            texts += [str(exc), repr(exc)]
        else:
            with app.app_context():
                state = fog.state()
                texts += [
                    repr(state.settings),
                    str(state.settings),
                    repr(state.settings.target),
                    state.settings.target.display,
                    repr(state.endpoints),
                    repr(fog.client),
                    repr(fog.pool),
                ]
            fog_state_close = state.close
            fog_state_close()
    return texts + lines


@settings(max_examples=300, deadline=None)
@given(secret=secrets, shape=st.sampled_from(SHAPES))
@example(secret="s3cr3t-p4ss", shape="{s}")
@example(secret="hunter2:xyz", shape="{s}")
@example(secret="hunter2:xyzw", shape="redis://{s}@127.0.0.1:6379/0")
@example(secret="s3cr3t-p4ss", shape="redis://127.0.0.1:6379/0?password={s}")
@example(secret="s3cr3t-p4ss", shape="redis://:{s}")
def test_no_part_of_a_secret_in_the_url_shows(secret: str, shape: str) -> None:
    if shape.startswith("redis://") and shape.endswith(":{s}"):
        # No "@host" after it: with an "@" of its own, the value is a URL
        # whose host is the rest, and a host is shown.
        assume("@" not in secret)
    url = shape.format(s=secret)
    for text in everything_shown({"REDIS_URL": url}):
        for piece in pieces(secret):
            assert piece not in text, (url, text)


@settings(max_examples=100, deadline=None)
@given(secret=secrets)
@example(secret="s3cr3t-p4ss")
def test_no_part_of_the_sentinels_password_shows(secret: str) -> None:
    shown = everything_shown(
        {
            "REDIS_URL": "redis+sentinel://:data-pw@127.0.0.1:26379/mymaster",
            "REDIS_SENTINEL_PASSWORD": secret,
        }
    )
    for text in shown:
        for piece in pieces(secret):
            assert piece not in text, text


def test_a_bare_password_says_what_shape_is_expected() -> None:
    app = Flask("bare")
    app.config["REDIS_URL"] = "hunter2:xyz"
    try:
        FogRedis(app)
    except ConfigurationError as exc:
        message = str(exc)
    else:
        raise AssertionError("a bare password was taken for a URL")
    assert "REDIS_URL" in message and "redis://" in message
    assert "hunter2" not in message and "xyz" not in message
