"""The table (terminal and Markdown), the JSON file and the chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .results import Contender, Ratio, Scenario

# figure -> (column header, format)
FIGURES: dict[str, tuple[str, str]] = {
    "rps": ("req/s", "{:,.0f}"),
    "ops": ("ops/s", "{:,.0f}"),
    "calls": ("calls/s", "{:,.0f}"),
    "p50_ms": ("p50 ms", "{:.2f}"),
    "p99_ms": ("p99 ms", "{:.2f}"),
    "max_ms": ("max ms", "{:.1f}"),
    "errors": ("errors", "{:,.0f}"),
    "attempts": ("attempts", "{:,.0f}"),
    "other_outcomes": ("other outcomes", "{:,.0f}"),
    "wait_p50_ms": ("wait p50 ms", "{:.3f}"),
    "wait_p99_ms": ("wait p99 ms", "{:.2f}"),
    "fail_p50_over_timeout": ("fail p50 / timeout", "{:.2f}x"),
    "fail_max_over_timeout": ("fail max / timeout", "{:.2f}x"),
    "max_over_timeout": ("max / probe bound", "{:.2f}x"),
    "connections": ("conns to Redis", "{:,.0f}"),
    "pings": ("PINGs to Redis", "{:,.0f}"),
    "connections_per_1k_requests": ("conns per 1k req", "{:.2f}"),
    "entries": ("entries kept", "{:,.0f}"),
    "kept_mib": ("kept MiB (counted)", "{:.1f}"),
    "growth_mib": ("RSS growth MiB", "{:.1f}"),
    "bytes_per_entry": ("RSS B per entry", "{:,.0f}"),
    "freed_mib": ("freed by flush MiB", "{:.1f}"),
}
# Counts are added up over the rounds; every other figure is a median.
SUMMED = {"errors", "attempts", "other_outcomes", "connections", "pings"}


def value(contender: Contender, figure: str) -> float | None:
    values = contender.figures.get(figure)
    if not values:
        return None
    return float(sum(values)) if figure in SUMMED else contender.median(figure)


def _cell(contender: Contender, figure: str) -> str:
    v = value(contender, figure)
    if v is None or math.isnan(v):
        return "-"
    return FIGURES[figure][1].format(v)


def _header(figure: str) -> str:
    header = FIGURES[figure][0]
    return f"{header} (sum)" if figure in SUMMED else header


def _columns(scenario: Scenario) -> list[str]:
    return scenario.columns or [scenario.main_figure]


def _target(ratio: Ratio) -> str:
    if ratio.target is None:
        return ""
    sign = ">=" if ratio.higher_is_better else "<="
    return f"{sign} {ratio.target:.2f}x"


def _verdict(ratio: Ratio) -> str:
    return {None: "", True: "met", False: "MISSED"}[ratio.met]


def _rounds(ratio: Ratio) -> str:
    return " ".join(f"{r:.2f}" for r in ratio.per_round)


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return lines


def text(meta: dict[str, Any], scenarios: list[Scenario]) -> str:
    """The table for the terminal."""
    out = [_heading(meta), ""]
    for s in scenarios:
        out.append(f"{s.number}. {s.title}")
        if s.skipped:
            out += [f"   skipped: {s.skipped}", ""]
            continue
        columns = _columns(s)
        rows = [["contender", *[_header(f) for f in columns]]]
        rows += [[c.label, *[_cell(c, f) for f in columns]] for c in s.contenders]
        out += ["   " + line for line in _grid(rows)]
        if s.ratios:
            rows = [["ratio", "median", "per round", "target", ""]]
            rows += [
                [r.label, f"{r.median:.3f}x", _rounds(r), _target(r), _verdict(r)] for r in s.ratios
            ]
            out += ["", *("   " + line for line in _grid(rows))]
        for check, ok in s.checks:
            out.append(f"   [{'ok' if ok else 'FAILED'}] {check}")
        for note in s.notes:
            out.append(f"   note: {note}")
        out.append("")
    return "\n".join(out)


def _heading(meta: dict[str, Any]) -> str:
    load = meta["load"]
    return (
        f"Flask-FogRedis benchmark, {meta['date']}: {meta['machine']['cpus']} CPUs "
        f"({meta['machine']['cpu']}), Python {meta['versions']['python']}, "
        f"redis-server {meta['versions']['redis-server']}, redis-py {meta['versions']['redis']}\n"
        f"load: {load['generator']} -t{load['threads']} -c{load['connections']}, "
        f"{load['rounds']} rounds of {load['seconds']:g} s, contenders in turns; gunicorn "
        f"{meta['gunicorn']['workers']} workers x {meta['gunicorn']['threads']} threads (gthread) "
        "for every contender.\nFigures are medians over rounds; a ratio is the median of "
        "per-round ratios. Only ratios carry over to another machine."
    )


def markdown(meta: dict[str, Any], scenarios: list[Scenario]) -> str:
    """The table for the README."""
    out = [_heading(meta).replace("\n", "\n\n"), ""]
    for s in scenarios:
        out.append(f"**{s.number}. {s.title}**")
        out.append("")
        if s.skipped:
            out += [f"Skipped: {s.skipped}.", ""]
            continue
        columns = _columns(s)
        out.append("| contender | " + " | ".join(_header(f) for f in columns) + " |")
        out.append("| --- |" + " ---: |" * len(columns))
        for c in s.contenders:
            out.append(f"| {c.label} | " + " | ".join(_cell(c, f) for f in columns) + " |")
        out.append("")
        if s.ratios:
            out.append("| ratio | median | per round | target | |")
            out.append("| --- | ---: | --- | --- | --- |")
            for r in s.ratios:
                out.append(
                    f"| {r.label} | {r.median:.3f}x | {_rounds(r)} | {_target(r)} | {_verdict(r)} |"
                )
            out.append("")
        for check, ok in s.checks:
            out.append(f"- {'ok' if ok else 'FAILED'}: {check}")
        if s.checks:
            out.append("")
    return "\n".join(out)


def write_json(path: Path, meta: dict[str, Any], scenarios: list[Scenario]) -> None:
    document = {"meta": meta, "scenarios": [s.as_dict() for s in scenarios]}
    path.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")


def _finite(obj: Any) -> Any:
    """``obj`` with NaN (a figure with no value) as null: JSON has no NaN."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def chart(path: Path, meta: dict[str, Any], scenarios: list[Scenario]) -> None:
    """Every ratio as a bar, its target as a mark: green met, red missed,
    grey for ratios reported without a target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(s.number, r) for s in scenarios if not s.skipped for r in s.ratios]
    if not bars:
        return
    height = 0.9 + 0.42 * len(bars)
    fig, ax = plt.subplots(figsize=(9.5, height))
    labels = [
        f"{n}. {r.label}" + ("" if r.higher_is_better else " (lower is better)") for n, r in bars
    ]
    values = [r.median for _, r in bars]
    colours = [{True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}[r.met] for _, r in bars]
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, values, color=colours, height=0.6)
    for y, (_, r) in zip(ys, bars):
        low, high = min(r.per_round), max(r.per_round)
        ax.plot([low, high], [y, y], color="black", linewidth=1)
        if r.target is not None:
            ax.plot([r.target, r.target], [y - 0.45, y + 0.45], color="#1565c0", linewidth=3)
        ax.text(r.median + 0.02, y + 0.18, f"{r.median:.2f}x", va="bottom", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle=":")
    ax.set_xlabel(
        "ratio: median of rounds (bar), range over rounds (black line), target (blue mark)"
    )
    load = meta["load"]
    ax.set_title(
        f"Flask-FogRedis vs peers, {meta['date']}: {meta['machine']['cpus']} CPUs, "
        f"{load['generator']} -c{load['connections']}, {load['rounds']} rounds in turns\n"
        "green: target met, red: missed, grey: no target. A shared machine: "
        "only ratios carry over.",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
