"""What a forked worker must not share with its parent: locks held by a
thread at the fork, the health probe's connection, the near cache's channel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable

import pytest

from flask_fogredis import FogRedis
from flask_fogredis._config import read_settings
from flask_fogredis._logs import RateLimitedLog
from flask_fogredis._near import NearCache
from flask_fogredis._stats import Stats

from .conftest import make_app
from .servers import RedisServer


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


def _in_child(check: Callable[[], bool]) -> int:
    """Fork; the child's exit code is 0 if ``check()`` is true."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            code = 0 if check() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_opens_its_own_probe_connection_and_near_cache_channel(
    redis_server: RedisServer,
) -> None:
    """The probe's connection and the near cache's listener, opened in the
    parent, are not the child's: the child opens its own, and the parent's
    keep working after the child has gone."""
    app = make_app(REDIS_URL=redis_server.url, REDIS_NEAR_CACHE=True)
    fog = FogRedis(app)
    with app.app_context():
        state = fog.state()
        assert state.probe.result().healthy
        near = state.near
        assert near is not None
        near.lookup(["fog:jwt:warm-up"])  # starts the listener
        assert _wait(lambda: near.healthy)
        parent_ids = {client["id"] for client in redis_server.admin().client_list()}

        def child_has_its_own() -> bool:
            near.lookup(["fog:jwt:warm-up"])
            if not (state.probe.result().healthy and _wait(lambda: near.healthy)):
                return False
            ids = {client["id"] for client in redis_server.admin().client_list()}
            return len(ids - parent_ids) >= 2  # the probe's and the channel's

        assert _in_child(child_has_its_own) == 0
        assert state.probe.result().healthy and near.healthy


def test_without_register_at_fork_the_extension_still_works() -> None:
    """Platforms without ``os.register_at_fork`` (Windows) have no fork:
    importing and using the extension there needs no fork hook."""
    program = (
        # The standard library's and the dependencies' own fork hooks first.
        "import os, random, threading, logging, flask, redis, fakeredis, click\n"
        "del os.register_at_fork\n"
        "from flask import Flask\n"
        "from flask_fogredis import FogRedis\n"
        "app = Flask('t')\n"
        "app.config['REDIS_URL'] = 'memory://'\n"
        "fog = FogRedis(app)\n"
        "with app.app_context():\n"
        "    fog.set('k', 'v')\n"
        "    assert fog.get('k') == 'v' and fog.health_check()['healthy']\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
