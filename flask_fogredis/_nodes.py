"""URLs that name several nodes: Sentinel and Cluster.

redis-py has no URL for either; these follow the form other Python Redis
libraries use::

    redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/db]
    redis+cluster://[user:password@]host1:6379,host2:6379

``rediss+`` makes every connection TLS. The user and password are the data
nodes'; the sentinels' come from their own config keys. Mistakes raise the
same :class:`ConfigurationError` as the other URLs, with the password masked.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, unquote

from ._config import Target, _fail, _query, to_int

SENTINEL_PORT = 26379
CLUSTER_PORT = 6379
_HOST = re.compile(r"[A-Za-z0-9._~%-]+")


def parse_nodes_url(key: str, parts: SplitResult, shown: str) -> Target:
    """A validated Target for a ``redis+sentinel://`` or ``redis+cluster://``
    URL (or a ``rediss+`` one); ``shown`` is the URL with its password masked."""
    scheme = parts.scheme.lower()
    sentinel = scheme.endswith("+sentinel")
    example = (
        f"{scheme}://:password@host1:26379,host2:26379/mymaster/0"
        if sentinel
        else f"{scheme}://:password@host1:6379,host2:6379"
    )
    bad = "is not a valid Redis URL (not shown: it may hold a password)"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not hosts:
        raise _fail(key, f"{bad}: no host", f"write it as {example}")
    nodes = tuple(
        _node(key, bad, item, SENTINEL_PORT if sentinel else CLUSTER_PORT, example)
        for item in hosts.split(",")
    )
    connection: dict[str, Any] = {}
    password: str | None = None
    if at:
        user, sep, secret = userinfo.partition(":")
        if user:
            connection["username"] = unquote(user)
        if sep:
            password = unquote(secret)
            connection["password"] = password
    options = _query(key, parts.query, tls=scheme.startswith("rediss"))
    segments = (
        [unquote(s) for s in parts.path.strip("/").split("/")] if parts.path.strip("/") else []
    )
    service = None
    db = 0
    if sentinel:
        if not segments or not segments[0]:
            raise _fail(
                key,
                f"{bad}: no service name",
                f"name the master as the sentinels know it, as in {example}",
            )
        if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
            raise _fail(
                key,
                f"{bad}: the path must be /<service> or /<service>/<db>",
                f"write it as {example}",
            )
        service = segments[0]
        db = int(segments[1]) if len(segments) == 2 else 0
        if len(segments) == 2 and "db" in options:
            raise _fail(key, f"{bad}: the database is given twice", "keep only the /N path")
    elif segments and segments != ["0"]:
        raise _fail(
            key,
            f"{bad}: Redis Cluster has database 0 only",
            f"remove the path, as in {example}",
        )
    if "db" in options:
        db = to_int(f"{key} (db option)", options.pop("db"), 0)
        if not sentinel and db != 0:
            raise _fail(key, f"{bad}: Redis Cluster has database 0 only", "remove the db option")
    if sentinel:
        connection["db"] = db
    connection.update(options)
    return Target(
        scheme=scheme,
        display=shown,
        password=password,
        connection=connection,
        nodes=nodes,
        service=service,
    )


def _node(key: str, bad: str, item: str, default_port: int, example: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise _fail(key, f"{bad}: host {item!r}", "write an IPv6 address as [::1]:6379")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = item.partition(":")
        if not host or not _HOST.fullmatch(host):
            shown = repr(item) if item else "an empty host"
            raise _fail(key, f"{bad}: {shown} in the host list", f"write it as {example}")
    if not port_text and item.endswith(":"):
        raise _fail(key, f"{bad}: no port after {host!r}", f"write it as {example}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(key, f"{bad}: port {port_text!r} of {host!r}", "use a port from 1 to 65535")
    return host, int(port_text)
