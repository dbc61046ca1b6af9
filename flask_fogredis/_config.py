"""Every configuration key, its default and its meaning, in one place.

Keys are read once, in ``init_app``, and validated there: a wrong value raises
:class:`ConfigurationError` naming the key and the fix. No message, and no
``repr``, shows a password: URLs are shown with the password, query values and
fragment masked, and a URL that does not parse is not shown at all (it may be
a password pasted where the URL belongs).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from ._codec import Codec, resolve_codec
from ._errors import ConfigurationError, InvalidArgumentError

# Where each app keeps its states: ``app.extensions[EXTENSION_KEY][prefix]``.
EXTENSION_KEY = "fogredis"


@dataclass(frozen=True)
class Option:
    """One configuration key (without its prefix), its default and meaning."""

    name: str
    parse: Callable[[str, Any], Any]
    default: object
    doc: str


SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "memory",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_SSL_CERT_REQS = ("required", "optional", "none")
# URL options redis-py would accept but that this extension sets from config:
# in a URL they would silently override the validated values.
_URL_OPTIONS = {"db", "client_name"}
_URL_SSL_OPTIONS = {
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
}


# Names of URL query options that may be shown; any other name might be a
# secret pasted into the URL, and is not.
_SHOWN_URL_OPTIONS = {
    "db",
    "client_name",
    "decode_responses",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "retry_on_timeout",
    "health_check_interval",
    "max_connections",
    "timeout",
    "protocol",
    "username",
    "password",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
}


def mask_url(url: str) -> str:
    """The URL with its password (or a lone user-info part), its query
    values and its fragment replaced by ``***``; a value without ``//`` is
    all ``***``.

    Everything from ``//`` to the last ``@`` counts as user info, so that a
    password with an unencoded ``/``, ``?``, ``#`` or ``@`` is masked whole
    (at worst a host is masked too, never a password shown).
    """
    start = url.find("//")
    end = url.rfind("@")
    if start < 0:
        return "***"  # not a URL: perhaps a password set where the URL belongs
    if end < start:
        head, rest = url[: start + 2], url[start + 2 :]
    else:
        user, sep, _ = url[start + 2 : end].partition(":")
        masked = f"{user}:***" if sep and not any(c in user for c in "/?#@") else "***"
        head, rest = f"{url[: start + 2]}{masked}@", url[end + 1 :]
    # A port that is no number may be a password whose "@host" was left out.
    cut = re.search(r"[/?#]", rest)
    hosts, tail = (rest[: cut.start()], rest[cut.start() :]) if cut else (rest, "")
    rest = ",".join(_mask_port(item) for item in hosts.split(",")) + tail
    rest, hash_sign, _ = rest.partition("#")
    rest, question, query = rest.partition("?")
    pairs = [pair.partition("=") for pair in query.split("&")] if question else []
    shown_query = "&".join(
        f"{name}{eq}{'***' if eq else ''}" if name in _SHOWN_URL_OPTIONS else "***"
        for name, eq, _ in pairs
    )
    shown = f"{rest}{question}{shown_query}{'#***' if hash_sign else ''}"
    # An "@" in the query or fragment ends the user info too late: whatever
    # came after it is still masked here.
    for piece in _secret_pieces(url):
        shown = shown.replace(piece, "***")
    return head + shown


def _mask_port(item: str) -> str:
    host, colon, port = item.rpartition(":")
    if colon and port and not re.fullmatch(r"-?[0-9]+", port) and not port.endswith("]"):
        return f"{host}:***"
    return item


def _secret_pieces(url: str) -> list[str]:
    """The parts of ``url`` that may hold a password, longest first: the user
    info, a port that is not a number (a password whose ``@host`` was left
    out), the query and the fragment, whole and cut at every delimiter."""
    start, end = url.find("//"), url.rfind("@")
    after = url[start + 2 :] if start >= 0 else url
    suspects: list[str] = []
    if 0 <= start < end:
        suspects.append(url[start + 2 : end])
        after = url[end + 1 :]
    hosts = re.split(r"[/?#]", after, maxsplit=1)[0]
    for item in hosts.split(","):
        port = item.rpartition(":")[2] if ":" in item else ""
        if port and not re.fullmatch(r"-?[0-9]+", port):
            suspects.append(port)
    if "?" in url:
        suspects.append(url.partition("?")[2])
    if "#" in url:
        suspects.append(url.partition("#")[2])
    pieces = set(suspects)
    for suspect in suspects:
        pieces.update(re.split(r"[/?#@:&=,;]", suspect))
    shown = {piece for piece in pieces if len(piece) >= 2} - _SHOWN_URL_OPTIONS
    return sorted(shown | {repr(p)[1:-1] for p in shown}, key=len, reverse=True)


@dataclass(frozen=True)
class Target:
    """A parsed, validated Redis URL. Its ``repr`` leaves out the password
    and the connection arguments that carry it."""

    scheme: str
    display: str
    password: str | None = field(repr=False)
    connection: dict[str, Any] = field(default_factory=dict, repr=False)
    # Sentinel and Cluster URLs: the listed nodes, and the sentinels' service.
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None

    @property
    def is_tcp(self) -> bool:
        return self.scheme in ("redis", "rediss") or self.is_sentinel or self.is_cluster

    @property
    def tls(self) -> bool:
        return self.scheme.startswith("rediss")

    @property
    def is_sentinel(self) -> bool:
        return self.scheme.endswith("+sentinel")

    @property
    def is_cluster(self) -> bool:
        return self.scheme.endswith("+cluster")


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app (one config prefix)."""

    prefix: str
    target: Target
    pool_size: int
    pool_timeout: float
    connect_timeout: float
    socket_timeout: float
    keepalive: bool
    health_check_interval: float
    decode_responses: bool
    retry_attempts: int
    retry_backoff: float
    client_name: str | None
    health_timeout: float
    key_prefix: str
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_timeout: float = 0.5
    sentinel_check_interval: float = 1.0
    # A redis-py CredentialProvider asked for a user and password by every
    # connection that opens (None: the URL's).
    credential_provider: Any = field(default=None, repr=False)

    def key(self, name: str) -> str:
        """The full config key for ``name`` (``URL`` -> ``REDIS_URL``)."""
        return f"{self.prefix}_{name}"


def _fail(key: str, problem: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{key} {problem}: {fix}.")


def to_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, f"is {value!r}", f"set it to a whole number >= {minimum}")
    return value


def _as_seconds(value: object, *, allow_zero: bool) -> float | None:
    """``value`` as seconds (a number, a numeric string or a timedelta), or
    None when it is not a finite duration in range."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value < 0 or (value == 0 and not allow_zero):
        return None
    return float(value)


def to_seconds(key: str, value: object, *, allow_zero: bool = False) -> float:
    """A configuration key's duration in seconds; raises
    :class:`ConfigurationError` naming the key."""
    seconds = _as_seconds(value, allow_zero=allow_zero)
    if seconds is None:
        bound = ">= 0" if allow_zero else "> 0"
        raise _fail(key, f"is {value!r}", f"set it to a number of seconds {bound}")
    return seconds


def argument_seconds(
    name: str, value: object, *, allow_zero: bool = False, whole: bool = False
) -> float:
    """An argument's duration in seconds (a number or a timedelta); with
    ``whole``, at least 1 and cut to whole seconds (what Redis's ``EX`` and
    ``EXPIRE`` take). Raises :class:`InvalidArgumentError` naming the
    argument. For arguments to a call, where :func:`to_seconds` is for
    configuration keys (which may be text, from the environment)."""
    seconds = None if isinstance(value, str) else _as_seconds(value, allow_zero=allow_zero)
    if seconds is None or seconds == float("inf") or (whole and seconds < 1):
        bound = ">= 1" if whole else ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(
            f"{name} must be a number of seconds {bound} or a timedelta, not {value!r}."
        )
    return float(int(seconds)) if whole else seconds


def identity_claim(config: Mapping[str, Any]) -> str:
    """The claim that holds a token's identity, per flask-jwt-extended's
    ``JWT_IDENTITY_CLAIM`` in the app's ``config``."""
    return str(config.get("JWT_IDENTITY_CLAIM", "sub"))


# The words a true or false setting (or query parameter) may be written as.
_WORDS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def is_true(text: str) -> bool:
    """Whether ``text`` is one of the words for true (any other: False)."""
    return _WORDS.get(text.strip().lower(), False)


def to_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)) and str(value).strip().lower() in _WORDS:
        return _WORDS[str(value).strip().lower()]
    raise _fail(key, f"is {value!r}", "set it to True or False")


def to_optional_str(key: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise _fail(key, f"is {type(value).__name__}", "set it to a string or None")


def parse_url(key: str, url: object) -> Target:
    """Validate a Redis URL and turn it into connection keyword arguments.
    Raises :class:`ConfigurationError`, whose message shows no part of a
    password, wherever in the value it was written."""
    try:
        return _parse_url(key, url)
    except ConfigurationError as exc:
        if not isinstance(url, str):
            raise
        # A password with an unencoded / ? # or @ is cut into pieces that a
        # parser takes for a host, port or path: none of them may show.
        message = str(exc)
        for piece in _secret_pieces(url.strip()):
            message = message.replace(piece, "***")
        raise ConfigurationError(message) from None


_URL_SHAPE = "redis://[[user]:password@]host[:port][/db]"


def _parse_url(key: str, url: object) -> Target:
    if not isinstance(url, str) or not url.strip():
        raise _fail(
            key, "is empty or not a string", "set it to a URL such as redis://:password@host:6379/0"
        )
    url = url.strip()
    # Messages about a URL that does not parse never show it: it may be a
    # password set where the URL belongs, or hold one where no parser finds it.
    bad = "is not a valid Redis URL (not shown: it may hold a password)"
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise _fail(
            key,
            "has an unknown scheme or none (the value is not shown: it may hold a password)",
            f"write it as {_URL_SHAPE}, starting with one of "
            + ", ".join(f"{s}://" for s in SCHEMES),
        )
    try:
        parts = urlsplit(url)
        # Sentinel and Cluster URLs list several hosts, with a port each.
        port = parts.port if "+" not in scheme else None
    except ValueError as exc:
        # Not the parser's words: they quote the piece they could not read.
        text = str(exc)
        if "IPv6" in text:
            problem = "an IPv6 address is not closed by ']'"
        elif "range" in text:
            problem = "the port is out of range"
        else:
            problem = "the port is not a number"
        raise _fail(
            key,
            f"{bad}: {problem}",
            f"check the host and port (1 to 65535), and URL-encode / ? # @ in a password; "
            f"the shape is {_URL_SHAPE}",
        ) from None
    if "#" in url:
        # Redis URLs have no fragment: a "#" is a password's, unencoded, and
        # would cut the URL short (its host taken from the password).
        raise _fail(key, f"{bad}: it has a '#'", "URL-encode # in a password as %23")
    shown = mask_url(url)
    if "+" in scheme:
        return parse_nodes_url(key, parts, shown)
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    options = _query(key, parts.query, tls=scheme == "rediss")
    connection: dict[str, Any] = {}
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise _fail(key, f"{bad}: no host", "write it as redis://host:6379/0")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise _fail(
                key, f"{bad}: the path is not a database number", "end the URL with one, like /0"
            )
        if path and "db" in options:
            raise _fail(key, f"{bad}: the database is given twice", "keep only the /N path")
        connection.update(host=parts.hostname, port=port or 6379)
        connection["db"] = int(path) if path else 0
    elif scheme == "memory":
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise _fail(
                key,
                f"{bad}: the path is not a database number",
                "write it as memory:// or memory://name/0",
            )
        connection.update(store=parts.hostname or "", db=int(path) if path else 0)
    elif scheme == "unix":
        if not parts.path:
            raise _fail(key, f"{bad}: no socket path", "write it as unix:///path/to/redis.sock")
        connection.update(path=parts.path, db=0)
    if "db" in options:
        connection["db"] = to_int(f"{key} (db option)", options.pop("db"), 0)
    if username:
        connection["username"] = username
    if password is not None:
        connection["password"] = password
    connection.update(options)
    return Target(scheme=scheme, display=shown, password=password, connection=connection)


def _query(key: str, query: str, *, tls: bool) -> dict[str, Any]:
    """The URL's query options; raises :class:`ConfigurationError` for one
    this extension sets from its config instead, naming the option only when
    it is a known one (any other name may be a password pasted there)."""
    allowed = _URL_OPTIONS | (_URL_SSL_OPTIONS if tls else set())
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            config_key = key.rsplit("_", 1)[0] + "_" + name.upper()
            if name == "password":
                fix = f"put it in the URL as {_URL_SHAPE}, URL-encoded"
            elif name.upper() in DEFAULTS:
                fix = f"remove it from the URL; set {config_key} in the config instead"
            else:
                fix = "remove it from the URL"
            shown = repr(name) if name in _SHOWN_URL_OPTIONS else "(not shown)"
            raise _fail(key, f"has an unsupported option {shown}", fix)
        options[name] = value
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = to_bool(
            f"{key} (ssl_check_hostname option)", options["ssl_check_hostname"]
        )
    if options.get("ssl_cert_reqs", "required") not in _SSL_CERT_REQS:
        raise _fail(key, "has an unknown ssl_cert_reqs", "use required, optional or none")
    return options


# URLs that name several nodes: Sentinel and Cluster.
#
# redis-py has no URL for either; these follow the form other Python Redis
# libraries use::
#
#     redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/db]
#     redis+cluster://[user:password@]host1:6379,host2:6379
#
# ``rediss+`` makes every connection TLS. The user and password are the data
# nodes'; the sentinels' come from their own config keys. Mistakes raise the
# same :class:`ConfigurationError` as the other URLs, with the password masked.

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


def _whole(minimum: int) -> Callable[[str, object], int]:
    """A parser of whole numbers >= ``minimum``."""
    return functools.partial(to_int, minimum=minimum)


def _seconds_or_zero(key: str, value: object) -> float:
    return to_seconds(key, value, allow_zero=True)


def _optional_seconds(key: str, value: object) -> float | None:
    return None if value is None else to_seconds(key, value)


def _cert_reqs(key: str, value: object) -> str:
    if value not in _SSL_CERT_REQS:
        raise _fail(key, f"is {value!r}", "use 'required', 'optional' or 'none'")
    return str(value)


def _key_prefix(key: str, value: object) -> str:
    prefix = to_optional_str(key, value)
    if not prefix or any(c in prefix for c in "*?[]\\{}") or prefix.endswith(":"):
        raise _fail(
            key,
            f"is {prefix!r}",
            "use a non-empty name without glob characters, braces or a trailing ':'",
        )
    return prefix


def _path(key: str, value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
        raise ConfigurationError(
            f"{key} is {value!r}: set it to a path such as '/health/redis' "
            "(letters, digits, '.', '_', '~', '-' and '/')."
        )
    return value.rstrip("/") or "/"


def _optional_path(key: str, value: object) -> str | None:
    return None if value is None else _path(key, value)


def _token(key: str, value: object) -> str | None:
    token = to_optional_str(key, value)
    if token is not None and (token != token.strip() or " " in token):
        raise ConfigurationError(
            f"{key} contains spaces: use a random string without spaces, such as "
            "the output of python -c 'import secrets; print(secrets.token_urlsafe())'."
        )
    return token


_DOTTED = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*([:.][A-Za-z_][A-Za-z0-9_]*)"
)


def _is_credential_provider(value: object) -> bool:
    """Whether ``value`` is a redis-py ``CredentialProvider``, by its shape:
    this layer does not import redis."""
    return not isinstance(value, (str, bytes)) and callable(getattr(value, "get_credentials", None))


def _credential_provider(key: str, value: object) -> Any:
    """A redis-py ``CredentialProvider``: ``value`` itself, or what the
    zero-argument factory named by ``value`` (``package.module:factory`` or
    ``package.module.factory``) returns. Raises :class:`ConfigurationError`;
    its message never shows a provider, nor a value that is not a dotted
    name (it may be a password set in the wrong key)."""
    if value is None or _is_credential_provider(value):
        return value
    shape = "a redis.credentials.CredentialProvider, or the dotted path of a factory returning one"
    if not isinstance(value, str) or not _DOTTED.fullmatch(value):
        raise _fail(key, f"is a {type(value).__name__} (not shown)", f"set it to {shape}")
    module_name, sep, attribute = value.partition(":")
    if not sep:
        module_name, _, attribute = value.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise _fail(
            key,
            f"names {value!r}, which cannot be imported ({type(exc).__name__})",
            f"set it to {shape}, such as 'myapp.redis_auth:provider'",
        ) from exc
    if not callable(factory):
        raise _fail(key, f"names {value!r}, which is not callable", f"set it to {shape}")
    try:
        provider = factory()
    except Exception as exc:
        # The factory's own words are not repeated: they may hold a credential.
        raise _fail(
            key,
            f"names {value!r}, which raised {type(exc).__name__}",
            "make the factory callable with no arguments",
        ) from exc
    if not _is_credential_provider(provider):
        raise _fail(
            key,
            f"names {value!r}, which returned a {type(provider).__name__}",
            "return a redis.credentials.CredentialProvider",
        )
    return provider


def _optional_url(key: str, value: object) -> Target | None:
    return parse_url(key, value) if value else None


# Everything a pool needs; a second Redis (the cache's) reads these again
# under its own prefix.
CONNECTION_OPTIONS: tuple[Option, ...] = (
    Option(
        "URL",
        parse_url,
        "redis://localhost:6379/0",
        "Where Redis is: `redis://`, `rediss://` (TLS), `unix://`, "
        "`memory://` (embedded in-process store, for development and tests), "
        "`redis+sentinel://` or `redis+cluster://` (and their `rediss+` TLS forms).",
    ),
    Option("POOL_SIZE", _whole(1), 10, "Connections in the blocking pool, per process."),
    Option(
        "POOL_TIMEOUT",
        to_seconds,
        5.0,
        "Seconds a caller waits for a free connection before an error.",
    ),
    Option("CONNECT_TIMEOUT", to_seconds, 5.0, "Seconds to open a connection."),
    Option("SOCKET_TIMEOUT", to_seconds, 5.0, "Seconds to wait for a reply to a command."),
    Option("KEEPALIVE", to_bool, True, "TCP keepalive on every connection."),
    Option(
        "HEALTH_CHECK_INTERVAL",
        _seconds_or_zero,
        30,
        "A connection idle this many seconds is PINGed before reuse (0: never).",
    ),
    Option("DECODE_RESPONSES", to_bool, True, "Return `str` instead of `bytes`."),
    Option(
        "RETRY_ATTEMPTS",
        _whole(0),
        2,
        "Extra attempts to open a connection that was refused; commands "
        "already sent are never re-sent.",
    ),
    Option(
        "RETRY_BACKOFF",
        _seconds_or_zero,
        0.05,
        "First wait between connection attempts, doubled each time, with jitter, capped at 1 s.",
    ),
    Option("CLIENT_NAME", to_optional_str, None, "Name shown by `CLIENT LIST`."),
    Option("SSL_CA_CERTS", to_optional_str, None, "CA bundle for `rediss://`."),
    Option("SSL_CERTFILE", to_optional_str, None, "Client certificate for `rediss://`."),
    Option("SSL_KEYFILE", to_optional_str, None, "Client key for `rediss://`."),
    Option(
        "SSL_CERT_REQS",
        _cert_reqs,
        "required",
        "Server certificate check for `rediss://`: required, optional or none.",
    ),
    Option("SSL_CHECK_HOSTNAME", to_bool, True, "Check the server's hostname for `rediss://`."),
    Option(
        "CREDENTIAL_PROVIDER",
        _credential_provider,
        None,
        "A redis-py `CredentialProvider` (or the dotted path of a zero-argument factory "
        "returning one) asked for the user and password by every connection that opens: "
        "rotating or short-lived credentials (cloud IAM). The URL then holds none. The "
        "sentinels themselves use `SENTINEL_USERNAME` and `SENTINEL_PASSWORD`.",
    ),
    Option(
        "HEALTH_TIMEOUT",
        to_seconds,
        1.0,
        "Bound in seconds on a health check, down or unresponsive Redis included.",
    ),
    Option(
        "SENTINEL_USERNAME",
        to_optional_str,
        None,
        "User for the sentinels (not the data nodes), when they have ACL users.",
    ),
    Option(
        "SENTINEL_PASSWORD",
        to_optional_str,
        None,
        "Password for the sentinels (`requirepass` in sentinel.conf); the URL's is the "
        "data nodes'. Unset: sentinels are asked without one.",
    ),
    Option(
        "SENTINEL_TIMEOUT",
        to_seconds,
        0.5,
        "Seconds to connect to one sentinel and hear its answer before asking the next.",
    ),
    Option(
        "SENTINEL_CHECK_INTERVAL",
        _seconds_or_zero,
        1.0,
        "Seconds between two questions to the sentinels about who the master is, so that "
        "writes leave a demoted master (0: ask only when connecting).",
    ),
)

OPTIONS: tuple[Option, ...] = (
    *CONNECTION_OPTIONS,
    Option(
        "KEY_PREFIX",
        _key_prefix,
        "fog",
        "Prefix of every key the extension writes (revocations, cache).",
    ),
    Option("HEALTH_ENABLED", to_bool, True, "Serve the health endpoint."),
    Option(
        "HEALTH_URL",
        _optional_path,
        None,
        "Path of the health endpoint. Default: `/health/redis`; with another "
        "config prefix, `/health/` and the prefix in lower case with `-` for `_` "
        "(`CACHE_REDIS`: `/health/cache-redis`).",
    ),
    Option(
        "HEALTH_CACHE_SECONDS",
        _seconds_or_zero,
        1.0,
        "Seconds a check's result answers the health endpoint before the next "
        "PING (0: every request waits for a check of its own, still one at a time).",
    ),
    Option(
        "HEALTH_DETAILS_TOKEN",
        _token,
        None,
        "Turns on the detailed health report and is the credential it "
        "requires (`Authorization: Bearer <token>`). Off when unset.",
    ),
    Option("METRICS_ENABLED", to_bool, True, "Serve Prometheus metrics."),
    Option("METRICS_URL", _path, "/metrics", "Path of the metrics endpoint."),
    Option(
        "METRICS_TOKEN",
        _token,
        None,
        "When set, the metrics endpoint requires it (`Authorization: Bearer <token>`).",
    ),
    Option(
        "CACHE_URL",
        _optional_url,
        None,
        "A Redis of its own for the cache (an evicting one, say). Its pool reads every "
        "connection key above with `CACHE_` after the prefix: `REDIS_CACHE_POOL_SIZE`, "
        "`REDIS_CACHE_SOCKET_TIMEOUT`, ... Unset: the cache shares the main pool.",
    ),
    Option(
        "CACHE_DEFAULT_TTL", to_seconds, 300, "Seconds a cache entry lives when no `ttl` is given."
    ),
    Option(
        "CACHE_LOCK_TIMEOUT",
        to_seconds,
        10.0,
        "Seconds one computation of a missed view may hold the stampede lock; "
        "requests waiting on it compute the view themselves after that.",
    ),
    Option(
        "CACHE_SERIALIZER",
        resolve_codec,
        "json",
        "How `cache_set` and `memoize` store values other than `str` and `bytes`: `json`, "
        "`msgpack` (the `msgpack` extra), or the dotted path of an object with `dumps` "
        "and `loads`. A codec that unpickles (pickle, dill, cloudpickle, jsonpickle) is "
        "refused.",
    ),
    Option(
        "NEAR_CACHE",
        to_bool,
        False,
        "Answer repeated revocation checks and cache hits from process memory, kept exact "
        "by Redis's invalidation messages (`CLIENT TRACKING`). Needs Redis 6+; not for "
        "`memory://`.",
    ),
    Option(
        "NEAR_CACHE_MAX_ENTRIES", _whole(1), 10_000, "Entries the near cache keeps per process."
    ),
    Option(
        "NEAR_CACHE_MAX_BYTES",
        _whole(1024),
        64 * 1024 * 1024,
        "Bytes the near cache keeps per process.",
    ),
    Option(
        "JWT_BLOCKLIST",
        to_bool,
        True,
        "Register the revocation check on the app's flask-jwt-extended `JWTManager`. "
        "Default: True for the app's first FogRedis, False for later ones (another "
        "config prefix).",
    ),
    Option(
        "JWT_FAIL_OPEN",
        to_bool,
        False,
        "When Redis cannot answer the check: False refuses the token (503 with "
        "`Retry-After`); True accepts it and logs a warning (at most one per 30 s).",
    ),
    Option("JWT_RETRY_AFTER", to_seconds, 5, "`Retry-After` seconds on that 503."),
    Option(
        "JWT_MAX_TOKEN_LIFETIME",
        _optional_seconds,
        None,
        "How long a log out everywhere lasts, in seconds. Default: the longer of "
        "`JWT_ACCESS_TOKEN_EXPIRES` and `JWT_REFRESH_TOKEN_EXPIRES`, plus "
        "`JWT_DECODE_LEEWAY` (forever if either is False).",
    ),
    Option(
        "JWT_WAIT_REPLICAS",
        _whole(0),
        0,
        "Replicas that must acknowledge a revocation (Redis `WAIT`) before it counts as "
        "done; fewer within `JWT_WAIT_TIMEOUT` raise `RedisUnavailableError`. 0: do not wait.",
    ),
    Option("JWT_WAIT_TIMEOUT", to_seconds, 1.0, "Seconds a revocation waits for those replicas."),
    Option(
        "JWT_STRICT_EVICTION",
        to_bool,
        False,
        "Refuse revocation work (an error at first use) when the Redis's "
        "maxmemory-policy may evict; otherwise a warning.",
    ),
)

DEFAULTS: dict[str, object] = {option.name: option.default for option in OPTIONS}


def read_settings(
    config: MutableMapping[str, Any], prefix: str, options: tuple[Option, ...] = OPTIONS
) -> Settings:
    """Fill in defaults for ``prefix``'s ``options``, validate the connection
    keys and return them."""
    return _settings(_read(config, prefix, options), prefix)


def _read(
    config: MutableMapping[str, Any],
    prefix: str,
    options: tuple[Option, ...],
    defaults: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """Every option of ``options`` under ``prefix``: defaults filled into
    ``config`` (``defaults`` replacing some), each value parsed by its
    option's parser. Raises :class:`ConfigurationError` naming the key."""
    if not prefix or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise ConfigurationError(
            f"config_prefix {prefix!r} is not valid: use letters, digits and _, like 'REDIS'."
        )
    defaults = defaults or {}
    values = {}
    for option in options:
        key = f"{prefix}_{option.name}"
        value = config.setdefault(key, defaults.get(option.name, option.default))
        values[option.name] = option.parse(key, value)
    return values


def _settings(values: Mapping[str, Any], prefix: str) -> Settings:
    def k(name: str) -> str:
        return f"{prefix}_{name}"

    target: Target = values["URL"]
    if target.tls:
        # Options written in the URL win over the config keys' defaults.
        tls: dict[str, Any] = {
            "ssl_cert_reqs": values["SSL_CERT_REQS"],
            "ssl_check_hostname": values["SSL_CHECK_HOSTNAME"],
        }
        for name in _CERT_FILES:
            if values[name] is not None:
                tls[name.lower()] = values[name]
        target.connection.update({n: v for n, v in tls.items() if n not in target.connection})
        if target.connection["ssl_cert_reqs"] == "none":
            # No certificate, no name to check: ssl refuses the pair, at the
            # first connect and only on some redis-py versions.
            target.connection["ssl_check_hostname"] = False
    elif target.scheme != "memory":
        # Certificate files given for a URL without TLS: the connection would
        # be plaintext while the config says otherwise.
        for name in _CERT_FILES:
            if values[name]:
                raise _fail(
                    k(name),
                    f"is set but {k('URL')} ({target.display}) does not use TLS",
                    "use a rediss:// (or rediss+sentinel://, rediss+cluster://) URL, "
                    "or remove the key",
                )
    provider = values["CREDENTIAL_PROVIDER"]
    if provider is not None:
        if target.scheme == "memory":
            raise _fail(
                k("CREDENTIAL_PROVIDER"), "is set for memory://", "remove it: no credentials there"
            )
        if "username" in target.connection or "password" in target.connection:
            raise _fail(
                k("CREDENTIAL_PROVIDER"),
                f"is set and {k('URL')} ({target.display}) holds a user or password too",
                "keep only one: remove them from the URL",
            )
    return Settings(
        prefix=prefix,
        target=target,
        pool_size=values["POOL_SIZE"],
        pool_timeout=values["POOL_TIMEOUT"],
        connect_timeout=values["CONNECT_TIMEOUT"],
        socket_timeout=values["SOCKET_TIMEOUT"],
        keepalive=values["KEEPALIVE"],
        health_check_interval=values["HEALTH_CHECK_INTERVAL"],
        decode_responses=values["DECODE_RESPONSES"],
        retry_attempts=values["RETRY_ATTEMPTS"],
        retry_backoff=values["RETRY_BACKOFF"],
        client_name=values["CLIENT_NAME"],
        health_timeout=values["HEALTH_TIMEOUT"],
        key_prefix=values.get("KEY_PREFIX", "fog"),
        sentinel_username=values["SENTINEL_USERNAME"],
        sentinel_password=values["SENTINEL_PASSWORD"],
        sentinel_timeout=values["SENTINEL_TIMEOUT"],
        sentinel_check_interval=values["SENTINEL_CHECK_INTERVAL"],
        credential_provider=provider,
    )


_CERT_FILES = ("SSL_CA_CERTS", "SSL_CERTFILE", "SSL_KEYFILE")


@dataclass(frozen=True)
class EndpointSettings:
    """The health and metrics endpoints of one config prefix."""

    health_enabled: bool
    health_url: str
    cache_seconds: float
    details_token: str | None
    metrics_enabled: bool
    metrics_url: str
    metrics_token: str | None


@dataclass(frozen=True)
class CacheSettings:
    """The cache: ``connection`` is its own Redis's (the main one's when it
    shares the main pool, ``own`` False)."""

    connection: Settings
    own: bool
    default_ttl: float
    lock_timeout: float
    codec: Codec


@dataclass(frozen=True)
class RevocationSettings:
    """JWT revocation. ``max_lifetime``: how long a log out everywhere lasts,
    leeway included; None to derive it from flask-jwt-extended's config."""

    auto_register: bool
    fail_open: bool
    strict_eviction: bool
    retry_after: int
    max_lifetime: float | None
    wait_replicas: int
    wait_timeout: float


@dataclass(frozen=True)
class NearCacheSettings:
    """The near cache; ``enabled`` False leaves the other fields unused."""

    enabled: bool
    max_entries: int
    max_bytes: int


@dataclass(frozen=True)
class AppConfig:
    """Everything one FogRedis (one config prefix) reads, validated."""

    connection: Settings
    endpoints: EndpointSettings
    cache: CacheSettings
    revocation: RevocationSettings
    near: NearCacheSettings


def read_config(config: MutableMapping[str, Any], prefix: str, *, first: bool) -> AppConfig:
    """Read and validate every key of ``prefix`` once, filling in defaults.

    ``first``: whether this is the app's first FogRedis; only that one
    checks revocations unless told to (``JWT_BLOCKLIST``), so that a second
    one (a cache's Redis, say) adds no round trip to every request, nor
    refuses tokens when only it is down. Raises :class:`ConfigurationError`
    naming the key and the fix.
    """
    values = _read(config, prefix, OPTIONS, {"JWT_BLOCKLIST": first})
    connection = _settings(values, prefix)

    def k(name: str) -> str:
        return f"{prefix}_{name}"

    health_url = values["HEALTH_URL"] or "/health/" + prefix.lower().replace("_", "-")
    endpoints = EndpointSettings(
        health_enabled=values["HEALTH_ENABLED"],
        health_url=health_url,
        cache_seconds=values["HEALTH_CACHE_SECONDS"],
        details_token=values["HEALTH_DETAILS_TOKEN"],
        metrics_enabled=values["METRICS_ENABLED"],
        metrics_url=values["METRICS_URL"],
        metrics_token=values["METRICS_TOKEN"],
    )
    if (
        endpoints.health_enabled
        and endpoints.metrics_enabled
        and health_url == endpoints.metrics_url
    ):
        raise ConfigurationError(
            f"{k('HEALTH_URL')} and {k('METRICS_URL')} are both {health_url!r}: "
            "give them different paths."
        )
    own = values["CACHE_URL"] is not None
    if own and k("CACHE_KEY_PREFIX") in config:
        raise _fail(
            k("CACHE_KEY_PREFIX"),
            "is set, but the cache's keys start with "
            f"{k('KEY_PREFIX')} on its own Redis too (apps sharing that Redis stay apart by it)",
            f"remove {k('CACHE_KEY_PREFIX')}, and set {k('KEY_PREFIX')} if the prefix must change",
        )
    cache = CacheSettings(
        connection=read_settings(config, k("CACHE"), CONNECTION_OPTIONS) if own else connection,
        own=own,
        default_ttl=values["CACHE_DEFAULT_TTL"],
        lock_timeout=values["CACHE_LOCK_TIMEOUT"],
        codec=values["CACHE_SERIALIZER"],
    )
    lifetime = values["JWT_MAX_TOKEN_LIFETIME"]
    revocation = RevocationSettings(
        auto_register=values["JWT_BLOCKLIST"],
        fail_open=values["JWT_FAIL_OPEN"],
        strict_eviction=values["JWT_STRICT_EVICTION"],
        retry_after=math.ceil(values["JWT_RETRY_AFTER"]),
        # The longest token life, plus the leeway on both sides (see
        # token_lifetime).
        max_lifetime=None if lifetime is None else lifetime + 2 * leeway_of(config),
        wait_replicas=values["JWT_WAIT_REPLICAS"],
        wait_timeout=values["JWT_WAIT_TIMEOUT"],
    )
    near = NearCacheSettings(
        enabled=values["NEAR_CACHE"],
        max_entries=values["NEAR_CACHE_MAX_ENTRIES"],
        max_bytes=values["NEAR_CACHE_MAX_BYTES"],
    )
    if near.enabled and "memory" in (connection.target.scheme, cache.connection.target.scheme):
        raise ConfigurationError(
            f"{k('NEAR_CACHE')} needs a real Redis (6 or newer): memory:// cannot send "
            "invalidations. Turn it off for the embedded store."
        )
    for settings in (connection, cache.connection):
        if near.enabled and settings.target.is_cluster:
            raise ConfigurationError(
                f"{settings.key('URL')} is a Redis Cluster ({settings.target.display}), "
                "where the near cache is not supported: turn the near cache off."
            )
    return AppConfig(connection, endpoints, cache, revocation, near)


def token_lifetime(config: Mapping[str, Any], leeway: float) -> float | None:
    """How long a log-out-everywhere marker must last: the longest a token of
    this app can live, per flask-jwt-extended's config (its defaults when
    unset), plus ``leeway`` twice (a token issued just after the marker by a
    host whose clock is ahead, accepted by a host whose clock is behind);
    None when tokens may never expire."""
    longest = 0.0
    for key, default in (
        ("JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=15)),
        ("JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=30)),
    ):
        value = config.get(key, default)
        if value is False:
            return None
        longest = max(longest, to_seconds(key, value))
    return longest + 2 * leeway


def leeway_of(config: Mapping[str, Any]) -> float:
    """flask-jwt-extended's ``JWT_DECODE_LEEWAY`` in seconds."""
    return to_seconds("JWT_DECODE_LEEWAY", config.get("JWT_DECODE_LEEWAY", 0), allow_zero=True)


def logout_everywhere_lifetime(
    revocation: RevocationSettings, config: Mapping[str, Any]
) -> float | None:
    """How long a log out everywhere lasts: ``JWT_MAX_TOKEN_LIFETIME`` when
    set, else the longest token life of the app's flask-jwt-extended config
    (read now: it may change after ``init_app``), leeway included."""
    if revocation.max_lifetime is not None:
        return revocation.max_lifetime
    return token_lifetime(config, leeway_of(config))
