"""The documentation: its configuration reference is the code's option table,
the site builds with warnings as errors, and the README splits into pages."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flask_fogredis._config import CONNECTION_OPTIONS, OPTIONS

DOCS = Path(__file__).parent.parent / "docs"


def load(name: str) -> ModuleType:
    """A module of docs/ (not a package), registered as dataclasses need."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def rows(text: str) -> dict[str, list[str]]:
    """Table rows of a Markdown text, by their first cell."""
    found = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            found[cells[0]] = cells
    return found


def test_every_option_is_in_the_generated_reference() -> None:
    table = rows(load("options_table").render())
    for option in OPTIONS:
        key = f"`REDIS_{option.name}`"
        assert key in table, option.name
        assert table[key][2] == option.doc.replace("|", "\\|")


def test_the_cache_keys_are_the_connection_keys_under_cache() -> None:
    table = rows(load("options_table").render())
    for option in CONNECTION_OPTIONS:
        if option.name != "URL":
            assert f"`REDIS_CACHE_{option.name}`" in table, option.name
    assert "`REDIS_CACHE_URL`" in table  # once, from OPTIONS


def test_defaults_are_shown_as_the_code_has_them() -> None:
    show = load("options_table").show_default
    assert show(None) == "(none)"
    assert show("fog") == "`fog`"
    assert show(True) == "True"
    assert show(0.05) == "0.05"
    assert show(64 * 1024 * 1024) == "67108864 (64 MiB)"


def test_the_reference_explains_the_prefix() -> None:
    text = load("options_table").render(prefix="CACHE_REDIS")
    assert 'config_prefix="CACHE_REDIS"' in text
    assert "`CACHE_REDIS_URL`" in text
    assert "`CACHE_REDIS_CACHE_POOL_SIZE`" in text


@pytest.mark.slow
def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html"]
    build = subprocess.run(
        [*command, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    configuration = (out / "configuration.html").read_text()
    for option in OPTIONS:
        assert f"REDIS_{option.name}<" in configuration, option.name
    api = (out / "api.html").read_text()
    for name in __import__("flask_fogredis").__all__:
        assert f'id="flask_fogredis.{name}"' in api, name


README = """\
# Thing

What it is.

## The two commands

```sh
make run
```

## Install

Run it; see [the pool](#how-the-pool-behaves) and [Blocking](#blocking).

## How the pool behaves

Pool text.

### Blocking

Blocks.

### Worker classes

Workers, unlike [Install](#install).
"""


def test_the_readme_splits_into_pages_with_links_between_them(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert load("split_readme").main(readme, tmp_path) == 0
    pool = (tmp_path / "pool.md").read_text()
    assert pool.startswith("# How the pool behaves\n\nPool text.\n\n## Blocking\n\nBlocks.")
    assert "Worker classes" not in pool
    workers = (tmp_path / "workers.md").read_text()
    assert workers == "# Worker classes\n\nWorkers, unlike [Install](quickstart.md#install).\n"
    quickstart = (tmp_path / "quickstart.md").read_text()
    assert quickstart.startswith("# Installation and quickstart\n\n## Install\n")
    assert "[the pool](pool.md) and [Blocking](pool.md#blocking)" in quickstart
    index = (tmp_path / "index.md").read_text()
    assert index.startswith("# Flask-FogRedis\n\nWhat it is.\n\n## The two commands\n")
    assert "\nworkers\n" in index and "\nscaling\n" not in index
    front = (tmp_path / "_front_page.md").read_text()
    assert front.startswith("# Thing\n\nWhat it is.\n\n## The two commands\n\n```sh\nmake run\n```")
    assert "[the pool](docs/pool.md)" in front


def test_a_readme_section_without_a_page_is_refused(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README + "\n## Something new\n\nText.\n")
    assert load("split_readme").main(readme, tmp_path) == 1
    assert not (tmp_path / "pool.md").exists()
