"""Sphinx configuration: MyST Markdown pages, the Pallets theme, autodoc.

Nothing is fetched at build time (no intersphinx): references to redis-py,
Flask and the standard library stay plain text.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).parent
sys.path[:0] = [str(DOCS.parent), str(DOCS)]

import flask_fogredis  # noqa: E402

project = "Flask-FogRedis"
copyright = "the Flask-FogRedis authors"
release = version = flask_fogredis.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "pallets_sphinx_themes",
    "options_table",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
# _front_page.md is the README to come, not a page of the site.
exclude_patterns = ["_build", "_generated", "_front_page.md"]

myst_heading_anchors = 4

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True

html_theme = "flask"
html_title = f"Flask-FogRedis {version}"
html_show_sourcelink = False
