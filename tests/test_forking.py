"""Locks held by a thread when gunicorn forks are free in the worker."""

from __future__ import annotations

import os
import threading
import warnings

import pytest

from flask_fogredis._config import read_settings
from flask_fogredis._logs import RateLimitedLog
from flask_fogredis._near import NearCache
from flask_fogredis._stats import Stats


def _fork_while_held(lock_owner: object, name: str) -> int:
    """Fork while another thread holds ``lock_owner.<name>``; the child's exit
    code is 0 if it could take the lock."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with getattr(lock_owner, name):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if getattr(lock_owner, name).acquire(timeout=2) else 1)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (Stats, "_lock"),
        (lambda: RateLimitedLog(__import__("logging").getLogger("t"), 1.0), "_lock"),
        (
            lambda: NearCache(
                read_settings({"REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS"),
                ["fog:"],
                10,
                10_000,
                connect=lambda *args, **kwargs: pytest.fail("no connection expected"),
            ),
            "_lock",
        ),
    ],
)
def test_a_lock_held_at_fork_is_free_in_the_child(make: object, name: str) -> None:
    owner = make()  # type: ignore[operator]
    assert _fork_while_held(owner, name) == 0
