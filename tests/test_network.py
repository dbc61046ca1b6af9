"""The pool against real redis-servers: auth, TLS, contention, outages."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from flask_fogredis import FogRedis, RedisUnavailableError

from .conftest import ServerFactory, make_app
from .servers import RedisServer, free_port

PASSWORD = "n0t-in-any-message"


def test_plain_operations_on_a_real_server(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    with app.app_context():
        assert fog.set("k", "v", expire=100) is True
        assert fog.get("k") == "v"
        assert 99 <= fog.ttl("k") <= 100
        assert fog.exists("k") is True
        assert fog.expire("k", 5) is True
        assert fog.ttl("k") <= 5
        assert fog.delete("k", "absent") == 1
        assert (fog.exists("k"), fog.ttl("k"), fog.get("k")) == (False, -2, None)
        assert fog.expire("k", 5) is False
        fog.set("forever", 1)
        assert fog.ttl("forever") == -1
    assert redis_server.admin().get("forever") == "1"


def test_two_apps_one_extension_two_servers(redis_factory: ServerFactory) -> None:
    first, second = redis_factory(), redis_factory()
    fog = FogRedis()
    app_a, app_b = make_app(REDIS_URL=first.url), make_app(REDIS_URL=second.url)
    fog.init_app(app_a)
    fog.init_app(app_b)
    with app_a.app_context():
        fog.set("where", "a")
    with app_b.app_context():
        fog.set("where", "b")
        assert fog.get("where") == "b"
    assert first.admin().get("where") == "a"
    assert second.admin().get("where") == "b"


def test_right_password_works(redis_factory: ServerFactory) -> None:
    server = redis_factory(password=PASSWORD)
    app = make_app(REDIS_URL=server.url)
    fog = FogRedis(app)
    with app.app_context():
        fog.set("k", "v")
        assert fog.get("k") == "v"
        assert fog.health_check()["healthy"] is True


@pytest.mark.parametrize("auth", [":wrong-password@", "", "default:wrong-password@"])
def test_wrong_or_missing_password_is_a_clear_error(
    redis_factory: ServerFactory, auth: str
) -> None:
    server = redis_factory(password=PASSWORD)
    app = make_app(REDIS_URL=f"redis://{auth}127.0.0.1:{server.port}/0")
    fog = FogRedis(app)
    with app.app_context():
        with pytest.raises(RedisUnavailableError) as info:
            fog.get("k")
        report = fog.health_check()
    message = str(info.value)
    assert "REDIS_URL" in message
    assert "password" in message
    assert PASSWORD not in message and "wrong-password" not in message
    assert report["healthy"] is False
    assert report["connected"] is True
    assert report["error"] == "authentication failed"


def test_tls(tmp_path: Path, redis_factory: ServerFactory) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls_port = free_port()
    redis_factory(
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert_file),
        "--tls-key-file",
        str(key_file),
        "--tls-ca-cert-file",
        str(ca_file),
        "--tls-auth-clients",
        "no",
    )
    app = make_app(REDIS_URL=f"rediss://127.0.0.1:{tls_port}/0", REDIS_SSL_CA_CERTS=str(ca_file))
    fog = FogRedis(app)
    with app.app_context():
        fog.set("over-tls", "yes")
        assert fog.get("over-tls") == "yes"
        assert fog.health_check()["healthy"] is True
        assert fog.client.connection_pool.connection_class.__name__ == "FogSSLConnection"

    untrusted = make_app(REDIS_URL=f"rediss://127.0.0.1:{tls_port}/0")
    fog_untrusted = FogRedis(untrusted)
    with untrusted.app_context(), pytest.raises(RedisUnavailableError) as caught:
        fog_untrusted.get("over-tls")
    assert "TLS handshake failed" in str(caught.value)
    assert "REDIS_SSL_CA_CERTS" in str(caught.value)


def test_unix_socket(tmp_path: Path, redis_factory: ServerFactory) -> None:
    sock = tmp_path / "redis.sock"
    redis_factory("--unixsocket", str(sock))
    app = make_app(REDIS_URL=f"unix://{sock}?db=2")
    fog = FogRedis(app)
    with app.app_context():
        fog.set("k", "via-socket")
        assert fog.get("k") == "via-socket"


def _hold_connection(fog: FogRedis, app: Flask, seconds: int) -> None:
    with app.app_context():
        fog.client.blpop(["never-pushed"], timeout=seconds)


def test_pool_callers_wait_then_fail_clearly_and_no_slot_leaks(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_POOL_SIZE=2, REDIS_POOL_TIMEOUT=0.5)
    fog = FogRedis(app)
    holders = [threading.Thread(target=_hold_connection, args=(fog, app, 2)) for _ in range(2)]
    for thread in holders:
        thread.start()
    time.sleep(0.3)
    errors: list[tuple[BaseException, float]] = []
    lock = threading.Lock()

    def waiter() -> None:
        with app.app_context():
            start = time.monotonic()
            try:
                fog.get("k")
            except RedisUnavailableError as exc:
                with lock:
                    errors.append((exc, time.monotonic() - start))

    waiters = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in waiters:
        thread.start()
    for thread in waiters:
        thread.join(10)
    assert len(errors) == 4
    for exc, waited in errors:
        assert 0.4 <= waited < 1.5
        assert "REDIS_POOL_SIZE" in str(exc)
    for thread in holders:
        thread.join(10)
    with app.app_context():
        assert fog.health_check()["pool_in_use"] == 0
        # Both slots came back: two callers can hold connections at once again.
        pair = [threading.Thread(target=_hold_connection, args=(fog, app, 1)) for _ in range(2)]
        for thread in pair:
            thread.start()
        time.sleep(0.2)
        assert fog.health_check()["pool_in_use"] == 2
        for thread in pair:
            thread.join(10)
        assert fog.get("k") is None


def test_pool_callers_wait_for_a_free_connection(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_POOL_SIZE=2, REDIS_POOL_TIMEOUT=5)
    fog = FogRedis(app)
    results: list[object] = []

    def caller(n: int) -> None:
        with app.app_context():
            fog.client.blpop([f"absent-{n}"], timeout=1)
            results.append(fog.set(f"done-{n}", n))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(6)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [True] * 6
    # Six one-second holds through two connections take three rounds.
    assert time.monotonic() - start >= 2.9
    assert len(redis_server.admin().keys("done-*")) == 6


def test_outage_fails_fast_and_recovers_without_restart(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    with app.app_context():
        fog.set("before", "1")
        redis_server.kill()
        start = time.monotonic()
        with pytest.raises(RedisUnavailableError):
            fog.get("before")
        assert time.monotonic() - start < 2.0
        start = time.monotonic()
        report = fog.health_check()
        assert time.monotonic() - start < 1.5
        assert report["healthy"] is False and report["connected"] is False
        redis_server.start()
        assert fog.get("before") is None  # no persistence configured: a new, empty server
        fog.set("after", "2")
        assert fog.get("after") == "2"
        assert fog.health_check()["healthy"] is True


def test_server_restart_is_invisible_to_the_next_caller(redis_server: RedisServer) -> None:
    """Stale pooled connections are replaced at checkout, so the first
    command after a restart succeeds instead of failing once per connection."""
    app = make_app(REDIS_URL=redis_server.url, REDIS_POOL_SIZE=3)
    fog = FogRedis(app)
    barrier = threading.Barrier(3)

    def warm() -> None:
        with app.app_context():
            barrier.wait()
            fog.client.blpop(["absent"], timeout=0.2)

    threads = [threading.Thread(target=warm) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    redis_server.restart()
    with app.app_context():
        for n in range(6):
            assert fog.set(f"k{n}", n) is True


def test_unresponsive_server(silent_port: int) -> None:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{silent_port}/0", REDIS_SOCKET_TIMEOUT=0.5)
    fog = FogRedis(app)
    with app.app_context():
        start = time.monotonic()
        report = fog.health_check()
        elapsed = time.monotonic() - start
        assert report["healthy"] is False
        assert report["error"] == "timeout"
        assert elapsed < 1.5
        start = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="did not answer in time"):
            fog.get("k")
        assert time.monotonic() - start < 2.0


def test_disconnect_is_harmless_to_repeat(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    with app.app_context():
        fog.set("k", "v")
        fog.disconnect()
        fog.disconnect()
        assert fog.get("k") == "v"


def test_read_only_and_out_of_memory_are_clear_errors(redis_server: RedisServer) -> None:
    from flask_fogredis import RedisCommandError

    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    admin = redis_server.admin()
    with app.app_context():
        admin.config_set("maxmemory", "1")
        admin.config_set("maxmemory-policy", "noeviction")
        with pytest.raises(RedisCommandError, match=r"OutOfMemoryError.*maxmemory"):
            fog.set("k", "x" * 1000)
        admin.config_set("maxmemory", "0")
        fog.set("k", "kept")
        admin.replicaof("127.0.0.1", str(free_port()))
        with pytest.raises(RedisCommandError, match="ReadOnlyError"):
            fog.set("k", "lost")
        admin.replicaof("NO", "ONE")
        assert fog.get("k") == "kept"


def test_fork_under_gunicorn_preload(redis_server: RedisServer, tmp_path: Path) -> None:
    """A pool used before gunicorn forks serves every worker, with no replies
    crossed between processes."""
    from .processes import Gunicorn

    server = Gunicorn(
        "tests.apps.fork_app:app",
        {"REDIS_URL": redis_server.url},
        "--preload",
        "--workers",
        "2",
        "--threads",
        "4",
        log=tmp_path / "gunicorn.log",
    )
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def client(n: str) -> None:
        for i in range(25):
            status, _, body = server.request(f"/echo/{n}-{i}")
            with lock:
                results.append((status, body))

    pids: set[str] = set()
    try:
        # Rounds of 200 until both workers have answered: a quick round can
        # all land on one idle worker.
        for round_ in range(5):
            threads = [threading.Thread(target=client, args=(f"{round_}-{n}",)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            pids = {body.decode().split()[0] for _, body in results}
            if len(pids) == 2:
                break
    finally:
        server.stop()
    assert len(results) % 200 == 0
    assert all(status == 200 for status, _ in results), results[:3]
    for _, body in results:
        _pid, sent, got, _count = body.decode().split()
        assert sent == got
    assert len(pids) == 2
    counts = sorted(int(body.split()[3]) for _, body in results)
    assert counts == list(range(1, len(results) + 1))
    assert redis_server.admin().get("preloaded") == "parent"
    assert "Traceback" not in (tmp_path / "gunicorn.log").read_text()


def test_redis_server_is_present_under_ci() -> None:
    """Under CI, tests that need redis-server must fail rather than skip."""
    from .servers import require

    assert Path(require("redis-server")).exists()
    out = subprocess.run([require("redis-server"), "--version"], capture_output=True, text=True)
    assert "Redis server" in out.stdout


def test_error_text_never_contains_the_password(redis_factory: ServerFactory) -> None:
    server = redis_factory(password=PASSWORD)
    port = server.port
    server.kill()
    app = make_app(REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    fog = FogRedis(app)
    with app.app_context(), pytest.raises(RedisUnavailableError) as info:
        fog.get("k")
    assert PASSWORD not in str(info.value)
    assert ":***@" in str(info.value)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port).ping()


def test_a_health_connection_closed_while_idle_is_no_outage(redis_server: RedisServer) -> None:
    app = make_app(REDIS_URL=redis_server.url)
    fog = FogRedis(app)
    with app.app_context():
        assert fog.health_check()["healthy"] is True
        admin = redis_server.admin()
        admin.ping()
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert fog.health_check()["healthy"] is True


def test_a_bad_expiry_is_the_extensions_own_error(memory_app: tuple[Flask, FogRedis]) -> None:
    from flask_fogredis import FogRedisError, InvalidArgumentError

    _, fog = memory_app
    for bad in (0, -5, "soon", True):
        with pytest.raises(InvalidArgumentError) as info:
            fog.set("k", "v", expire=bad)  # type: ignore[arg-type]
        assert isinstance(info.value, (FogRedisError, ValueError))
    with pytest.raises(InvalidArgumentError):
        fog.expire("k", 0)
    assert fog.get("k") is None  # nothing was written


def test_a_socket_closed_mid_reply_is_unavailable_not_a_value_error() -> None:
    """redis-py 7.0's cluster client, reading from a node that just died,
    raises ValueError("I/O operation on closed file.")."""
    from flask_fogredis._config import read_settings
    from flask_fogredis._connections import translated

    settings = read_settings({"REDIS_URL": "redis://:pw-1234@127.0.0.1:1/0"}, "REDIS")
    closed = pytest.raises(RedisUnavailableError, match="closed mid-reply")
    with closed as caught, translated(settings):
        raise ValueError("I/O operation on closed file.")
    assert "pw-1234" not in str(caught.value)
    with pytest.raises(ValueError, match="something else"), translated(settings):
        raise ValueError("something else")


def test_a_parser_whose_buffer_was_closed_under_it_is_unavailable() -> None:
    """redis-py 7.0's cluster client disconnects a failing node's connections
    while other threads read them: the reader then finds its parser's buffer
    gone (AttributeError on None). Only such an error from inside redis-py
    is taken for a lost connection; one from anywhere else stays a bug."""
    from redis._parsers import _RESP2Parser

    from flask_fogredis._config import read_settings
    from flask_fogredis._connections import translated

    settings = read_settings({"REDIS_URL": "redis://:pw-1234@127.0.0.1:1/0"}, "REDIS")
    parser = _RESP2Parser(socket_read_size=65536)  # never connected: no buffer
    gone_buffer = pytest.raises(RedisUnavailableError, match="closed mid-reply")
    with gone_buffer as caught, translated(settings):
        parser.read_response()
    assert "pw-1234" not in str(caught.value)
    gone: Any = None
    with pytest.raises(AttributeError), translated(settings):
        gone.readline()  # our own code's None: not translated
