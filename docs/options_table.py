"""The configuration reference's tables, written from ``flask_fogredis._config``.

A Sphinx extension: at every build it writes ``_generated/options.md`` from
``OPTIONS`` and ``CONNECTION_OPTIONS``, and ``configuration.md`` includes it,
so the reference is the code's own table and cannot drift from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_fogredis._config import CONNECTION_OPTIONS, OPTIONS, Option

GENERATED = Path(__file__).parent / "_generated" / "options.md"
MIB = 1024 * 1024


def show_default(value: object) -> str:
    """A default as the table shows it: ``(none)``, a code span, or the number."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, int) and not isinstance(value, bool) and value and value % MIB == 0:
        return f"{value} ({value // MIB} MiB)"
    return str(value)


def table(options: tuple[Option, ...], key_prefix: str) -> str:
    """A Markdown table of ``options``, each key shown with ``key_prefix``."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for option in options:
        meaning = option.doc.replace("|", "\\|")
        rows.append(f"| `{key_prefix}{option.name}` | {show_default(option.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def render(prefix: str = "REDIS") -> str:
    """The generated part of the configuration reference, in MyST Markdown:
    every key, the prefix rule, and the keys of the cache's own Redis."""
    cache = f"{prefix}_CACHE_"
    connection = tuple(option for option in CONNECTION_OPTIONS if option.name != "URL")
    return "\n".join(
        [
            table(OPTIONS, f"{prefix}_"),
            "(config-prefix)=",
            f"**The prefix.** Every key is read under a prefix: `{prefix}_` by default, so "
            f"the key `URL` is `{prefix}_URL`. A second FogRedis on the app reads the same "
            'keys under a prefix of its own: `FogRedis(app, config_prefix="CACHE_REDIS")` '
            "reads `CACHE_REDIS_URL`, `CACHE_REDIS_POOL_SIZE`, and so on, and builds a pool "
            f"of its own. The tables show the default prefix, `{prefix}`.",
            "",
            "(config-cache-keys)=",
            f"**The cache's own Redis.** When `{prefix}_CACHE_URL` is set, the cache's pool "
            f"reads the connection keys again with `CACHE_` after the prefix (`{cache}...` "
            "with the default prefix), each with the default of the main pool's key, not "
            "its value. That Redis is a Redis of its own: its health check (bounded by "
            f"`{cache}HEALTH_TIMEOUT`) shows in the health endpoint's detailed report under "
            f"`cache_redis`, and its pool and health in the metrics under "
            f'`config_prefix="{prefix}_CACHE"`. Its keys still start with `{prefix}_KEY_PREFIX` '
            f"(`{cache}KEY_PREFIX` is refused):",
            "",
            table(connection, cache),
        ]
    )


def write(app: Any = None) -> None:
    """Write the generated page; the ``builder-inited`` handler."""
    GENERATED.parent.mkdir(exist_ok=True)
    text = render()
    if not GENERATED.exists() or GENERATED.read_text() != text:
        GENERATED.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", write)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
