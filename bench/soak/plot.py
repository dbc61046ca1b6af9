"""The soak's timeline: answers per second by kind, p99 latency, and the
faults as shaded spans."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from . import check

COLOURS = {
    "kill9": "tab:red",
    "client_kill": "tab:purple",
    "pause": "tab:orange",
    "latency": "tab:olive",
    "full": "tab:brown",
    "failover": "tab:cyan",
}


def timeline(history: Sequence[check.Record], path: Path, title: str) -> None:
    """Write the PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in check.requests(history) if r.get("phase") == "load"]
    if not records:
        return
    t0 = min(float(r["t_start"]) for r in records)
    unexpected = {id(r) for r in check.unexpected_answers(history, 1.0)}
    series: dict[str, defaultdict[int, int]] = {
        name: defaultdict(int) for name in ("2xx", "401/403/422", "503", "unexpected")
    }
    durations: defaultdict[int, list[float]] = defaultdict(list)
    for r in records:
        second = int(float(r["t_end"]) - t0)
        status = int(r.get("status", 0))
        if id(r) in unexpected:
            name = "unexpected"
        elif 200 <= status < 300:
            name = "2xx"
        elif status == 503:
            name = "503"
        else:
            name = "401/403/422"
        series[name][second] += 1
        durations[second].append(float(r["t_end"]) - float(r["t_start"]))
    last = max(max(s, default=0) for s in series.values())
    seconds = list(range(last + 1))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    styles = {
        "2xx": "tab:green",
        "401/403/422": "tab:blue",
        "503": "tab:orange",
        "unexpected": "black",
    }
    for name, counts in series.items():
        top.plot(seconds, [counts.get(s, 0) for s in seconds], label=name, color=styles[name])
    top.set_ylabel("answers per second")
    top.set_title(title)
    # Seconds with no answer are left out, not drawn as zero latency.
    busy = [s for s in seconds if durations[s]]
    p99 = [1000 * (check.percentile(durations[s], 0.99) or 0.0) for s in busy]
    bottom.plot(busy, p99, color="tab:gray", marker=".", label="p99 latency")
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_xlabel("seconds since start")
    seen: set[str] = set()
    for fault in check.faults(history):
        colour = COLOURS.get(fault.kind, "grey")
        for axis in (top, bottom):
            axis.axvspan(
                fault.t_start - t0,
                max(fault.t_end - t0, fault.t_start - t0 + 0.3),
                color=colour,
                alpha=0.25,
                label=None if fault.kind in seen or axis is bottom else f"fault: {fault.kind}",
            )
        seen.add(fault.kind)
    for number, spell in enumerate(check.unsynced(history)):
        # A band along the top: overlaps the faults without hiding them.
        top.axvspan(
            spell.t_start - t0,
            max(spell.t_end - t0, spell.t_start - t0 + 0.3),
            ymin=0.95,
            color="black",
            alpha=0.4,
            label=None if number else "no replica in sync",
        )
    top.legend(loc="upper left", fontsize="small", ncol=3)
    bottom.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
