"""Write the documentation pages from README.md's sections.

    python docs/split_readme.py [README.md [OUTPUT_DIR]]

Every level-2 heading of the README, and any deeper one named in PAGE_OF,
goes with everything under it to the page PAGE_OF names (a deeper heading
not named there stays with its parent). A page made of one section takes
that section's heading as its title; a page of several gets the title in
TITLES. Links between sections become links between pages. The option
table of "Configuration" is replaced by the generated one
(``options_table.py``). It also writes ``index.md`` (the README's opening
and "The two commands", and the contents) and ``_front_page.md``, the short
README that points into these pages. Exits 1, writing nothing, when a
level-2 heading has no page.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).parent

# README heading -> page (a file in docs/, without ".md").
# The README's title, its level-1 heading, always goes to "index".
PAGE_OF = {
    "The two commands": "index",
    "Install": "quickstart",
    "Quickstart": "quickstart",
    "Configuration": "configuration",
    "How the pool behaves": "pool",
    "Worker classes": "workers",
    "Health checks, metrics and the command line": "health",
    "JWT revocation": "revocation",
    "Caching": "caching",
    "Near cache": "near-cache",
    "Scaling out: Sentinel and Cluster": "scaling",
    "What a failover costs, as measured": "failover",
    "The example app": "example",
    "Docker Compose": "example",
    "Production checklist": "production",
    "Troubleshooting": "troubleshooting",
    "Benchmarks": "benchmarks",
}
TITLES = {
    "index": "Flask-FogRedis",
    "quickstart": "Installation and quickstart",
    "example": "The example app and Docker Compose",
}
# The contents, in order; pages not written from this README are left out.
# "api" and "changes" are written by hand.
TOCTREES = {
    "User guide": [
        "quickstart",
        "configuration",
        "pool",
        "workers",
        "revocation",
        "caching",
        "near-cache",
        "health",
        "scaling",
        "one-redis",
    ],
    "Operations": ["production", "failover", "reliability", "troubleshooting", "example"],
    "Reference": ["api", "benchmarks", "changes"],
}
HAND_WRITTEN = {"api", "changes", "one-redis", "reliability"}
FRONT_PAGE = "_front_page.md"
OPTION_TABLE = re.compile(r"^\| key \| default \| meaning \|")
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
LINK = re.compile(r"\]\(#([^)\s]+)\)")


@dataclass
class Section:
    """A heading and its own lines, up to the next heading of any level."""

    level: int
    title: str
    lines: list[str]
    page: str = ""
    root: Section | None = None  # the heading whose page this one follows


@dataclass
class Page:
    name: str
    sections: list[Section] = field(default_factory=list)

    @property
    def roots(self) -> list[Section]:
        return [s for s in self.sections if s.root is s]


def slug(title: str) -> str:
    """The anchor MyST (and GitHub) give a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower().replace(" ", "-"))


def parse(text: str) -> list[Section]:
    """The README cut at every heading outside code fences."""
    sections: list[Section] = []
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        match = None if fence else HEADING.match(line)
        if match:
            sections.append(Section(len(match.group(1)), match.group(2), []))
        elif sections:
            sections[-1].lines.append(line)
    return sections


def assign(sections: list[Section]) -> list[str]:
    """Give each section its page and root; the level-2 headings with no page."""
    missing = []
    stack: list[Section] = []
    for section in sections:
        while stack and stack[-1].level >= section.level:
            stack.pop()
        if section.level == 1 or section.title in PAGE_OF:
            section.page, section.root = PAGE_OF.get(section.title, "index"), section
        elif section.level <= 2 or not stack:
            missing.append(section.title)
        else:
            section.page, section.root = stack[-1].page, stack[-1].root
        stack.append(section)
    return missing


def heading_level(page: Page, section: Section) -> int:
    """Where the section's heading goes in its page (1 is the page title)."""
    assert section.root is not None
    titled = page.name in TITLES
    return section.level - section.root.level + (2 if titled else 1)


def link_target(section: Section, pages: dict[str, Page], prefix: str) -> str:
    page = pages[section.page]
    if page.name not in TITLES and section.root is section:
        return f"{prefix}{page.name}.md"
    return f"{prefix}{page.name}.md#{slug(section.title)}"


def rewrite_links(
    text: str,
    by_slug: dict[str, Section],
    pages: dict[str, Page],
    prefix: str = "",
    local: frozenset[str] = frozenset(),
) -> str:
    """README anchors (``](#slug)``) become links to the page holding the heading."""

    def replace(match: re.Match[str]) -> str:
        anchor = match.group(1)
        if anchor in local:
            return match.group(0)
        if anchor not in by_slug:
            raise SystemExit(f"README links to #{anchor}, which no heading has")
        return f"]({link_target(by_slug[anchor], pages, prefix)})"

    return LINK.sub(replace, text)


def body(lines: list[str]) -> list[str]:
    """The lines with the option table replaced by the generated one."""
    out: list[str] = []
    skipping = False
    for line in lines:
        if OPTION_TABLE.match(line):
            skipping = True
            out += ["```{include} _generated/options.md", "```"]
            continue
        if skipping and line.startswith("|"):
            continue
        skipping = False
        out.append(line)
    return out


def render_page(page: Page) -> str:
    lines: list[str] = []
    if page.name in TITLES:
        lines += [f"# {TITLES[page.name]}", ""]
    for section in page.sections:
        level = heading_level(page, section)
        own = body(section.lines)
        if section.level > 1:
            lines.append(f"{'#' * level} {section.title}")
        else:
            while own and not own[0].strip():
                own.pop(0)
        lines += own
    return "\n".join(lines).strip() + "\n"


def contents(written: set[str]) -> str:
    out = []
    for caption, names in TOCTREES.items():
        names = [n for n in names if n in written or n in HAND_WRITTEN]
        if names:
            out += ["", "```{toctree}", f":caption: {caption}", ":maxdepth: 2", "", *names, "```"]
    return "\n".join(out) + "\n"


def front_page(sections: list[Section], by_slug: dict[str, Section], pages: dict[str, Page]) -> str:
    """The short README: what it is, the two commands, install, a quickstart, the docs."""
    named = {s.title: s for s in sections}
    keep = ["The two commands", "Install"]
    local = frozenset(slug(t) for t in keep)

    def text(lines: list[str]) -> str:
        joined = "\n".join(lines).strip()
        return rewrite_links(joined, by_slug, pages, "docs/", local)

    out = [f"# {sections[0].title}", "", text(sections[0].lines), ""]
    for title in keep:
        if title in named:
            out += [f"## {title}", "", text(named[title].lines), ""]
    quick = named["Quickstart"].lines if "Quickstart" in named else []
    fences = [i for i, line in enumerate(quick) if line.startswith("```")]
    if len(fences) >= 2:
        out += ["## Quickstart", "", *quick[fences[0] : fences[1] + 1], ""]
    out += [
        "More in [Installation and quickstart](docs/quickstart.md).",
        "",
        "## Documentation",
        "",
        "`make docs` builds it into `docs/_build/html/index.html` (the pages' sources",
        "are the Markdown files in `docs/`):",
        "",
    ]
    for caption, names in TOCTREES.items():
        links = []
        for name in names:
            if name in pages:
                title = TITLES.get(name) or pages[name].roots[0].title
                links.append(f"[{title}](docs/{name}.md)")
            elif name == "api":
                links.append("[API](docs/api.md)")
        out.append(f"- {caption}: " + ", ".join(links) + ".")
    return "\n".join(out) + "\n"


def main(readme: Path, out: Path = DOCS) -> int:
    sections = parse(readme.read_text())
    missing = assign(sections)
    if missing:
        print("No page for these README headings; add them to PAGE_OF:", file=sys.stderr)
        for title in missing:
            print(f"  {title}", file=sys.stderr)
        return 1
    pages: dict[str, Page] = {}
    for section in sections:
        pages.setdefault(section.page, Page(section.page)).sections.append(section)
    by_slug = {slug(s.title): s for s in sections}
    for name, page in pages.items():
        text = rewrite_links(render_page(page), by_slug, pages)
        if name == "index":
            text += contents(set(pages))
        (out / f"{name}.md").write_text(text)
        print(out / f"{name}.md")
    absent = sorted(set(PAGE_OF.values()) - set(pages))
    if absent:
        print(f"not in this README, not written: {', '.join(absent)}")
    (out / FRONT_PAGE).write_text(front_page(sections, by_slug, pages))
    print(out / FRONT_PAGE)
    return 0


if __name__ == "__main__":
    args = [Path(arg) for arg in sys.argv[1:3]]
    sys.exit(main(*(args or [DOCS.parent / "README.md"])))
