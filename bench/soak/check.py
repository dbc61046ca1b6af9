"""The soak's checker: pure functions over a recorded history.

A history is a list of records (one JSON object a line in ``history.jsonl``):

- ``{"type": "request", "t_start", "t_end", "client", "user", "op",
  "token": {"jti", "sub", "type", "auth_time"} | None, "status",
  "body_user", "msg", "issued": [token, ...], "revokes": {...} | None,
  "phase": "load" | "probe" | "final"}``. ``status`` 0 means no answer (the
  connection failed or timed out). ``revokes`` is what a 2xx answer revoked:
  ``{"jtis": [...]}`` or ``{"user": name}`` (every session of that user that
  began up to the call).
- ``{"type": "fault", "kind", "t_start", "t_end"}``: one injected fault,
  from the moment it began to the moment the injector had undone it.
- ``{"type": "unsynced", "t_start", "t_end"}``: a time when the primary had
  fewer replicas in sync than revocations wait for (``JWT_WAIT_REPLICAS``),
  as a watcher of the topology saw it: after a restart or a failover, until
  a replica has copied the data again. A revocation cannot be acknowledged
  then, and its 503 is the documented answer.

Times are seconds since the epoch, on the one clock of the machine. The
checker never looks at the app or Redis: what it reports follows from the
history alone, so it can be tested on histories written by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Record = dict[str, Any]

# Operations sent with a token that the client knows is revoked: 401 wanted.
REPLAY_OPS = frozenset({"replay_access", "replay_refresh", "final_access", "final_refresh"})
# Operations whose answer is refused by design: a malformed token gets 422.
EXPECTED_STATUS = {"garbage_token": frozenset({422})}


@dataclass(frozen=True)
class Revocation:
    """A revocation the app confirmed: the jtis it names, or every session of
    ``user`` that began at or before ``began_by`` (whole seconds), from the
    moment the call returned (``t_end``)."""

    t_start: float
    t_end: float
    jtis: frozenset[str] = frozenset()
    user: str | None = None

    def covers(self, token: Record | None) -> bool:
        """Whether this revocation certainly covers ``token``."""
        if not token:
            return False
        if token.get("jti") in self.jtis:
            return True
        if self.user is None or token.get("sub") != self.user:
            return False
        began = token.get("auth_time")
        # Redis's clock read during the call is at least the call's start.
        return isinstance(began, (int, float)) and began <= math.floor(self.t_start)

    def may_cover(self, token: Record | None) -> bool:
        """Whether this revocation may cover ``token``: a log out everywhere
        also refuses a session begun in the same second as Redis's clock."""
        if self.covers(token):
            return True
        if self.user is None or not token or token.get("sub") != self.user:
            return False
        began = token.get("auth_time")
        return isinstance(began, (int, float)) and began <= math.floor(self.t_end)


@dataclass(frozen=True)
class Fault:
    kind: str
    t_start: float
    t_end: float


@dataclass
class Line:
    """One row of the report; ``ok`` is None for figures with no target."""

    name: str
    value: str
    want: str = ""
    ok: bool | None = None


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    examples: dict[str, list[Record]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(line.ok is not False for line in self.lines)


def load(path: Path) -> list[Record]:
    """The records of a history file. Raises ValueError on a line that is not
    a JSON object."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        records.append(record)
    return records


def requests(history: Iterable[Record]) -> list[Record]:
    return [r for r in history if r.get("type") == "request"]


def faults(history: Iterable[Record]) -> list[Fault]:
    return [
        Fault(r["kind"], float(r["t_start"]), float(r["t_end"]))
        for r in history
        if r.get("type") == "fault"
    ]


def unsynced(history: Iterable[Record]) -> list[Fault]:
    """The times with fewer replicas in sync than revocations wait for."""
    return [
        Fault("unsynced", float(r["t_start"]), float(r["t_end"]))
        for r in history
        if r.get("type") == "unsynced"
    ]


def revocations(history: Iterable[Record], confirmed: bool = True) -> list[Revocation]:
    """Revocations in the history. ``confirmed``: only those answered 2xx;
    otherwise also calls that got no clear answer (an error or no answer may
    still have stored the revocation)."""
    found = []
    for r in requests(history):
        revokes = r.get("revokes")
        if not revokes:
            continue
        if confirmed and not _ok(r):
            continue
        found.append(
            Revocation(
                float(r["t_start"]),
                float(r["t_end"]),
                frozenset(revokes.get("jtis") or ()),
                revokes.get("user"),
            )
        )
    return found


def _ok(record: Record) -> bool:
    return 200 <= int(record.get("status", 0)) < 300


def revoked_accepted(
    history: Sequence[Record], window: float
) -> tuple[list[tuple[float, Record]], float | None]:
    """Requests answered 2xx with a token whose revocation had returned
    before they started, each with how long after the return it was
    accepted; those later than ``window`` first. Also the worst such lag
    (None if there were none)."""
    revs = revocations(history)
    found = []
    for r in requests(history):
        if not _ok(r) or not r.get("token"):
            continue
        lags = [
            float(r["t_start"]) - rev.t_end
            for rev in revs
            if rev.covers(r["token"]) and rev.t_end < float(r["t_start"])
        ]
        if lags:
            found.append((max(lags), r))
    found.sort(key=lambda item: -item[0])
    worst = found[0][0] if found else None
    return found, worst


def wrong_user(history: Sequence[Record]) -> list[Record]:
    """Answers about a user other than the token's (or, for a login, tokens
    for a user other than the one who logged in)."""
    found = []
    for r in requests(history):
        if not _ok(r):
            continue
        token = r.get("token") or {}
        body_user = r.get("body_user")
        if body_user is not None and token.get("sub") is not None and body_user != token["sub"]:
            found.append(r)
            continue
        if any(t.get("sub") != r.get("user") for t in r.get("issued") or ()):
            found.append(r)
    return found


def during(record: Record, fault_list: Sequence[Fault], grace: float) -> bool:
    """Whether ``record`` overlaps a fault, or the ``grace`` seconds after it."""
    start, end = float(record["t_start"]), float(record["t_end"])
    return any(start <= f.t_end + grace and end >= f.t_start for f in fault_list)


def unacknowledged(history: Sequence[Record], grace: float) -> list[Record]:
    """Revocations answered 503 outside every fault (and its ``grace``) while
    no replica was in sync: the write could not be acknowledged."""
    fault_list, windows = faults(history), unsynced(history)
    return [
        r
        for r in requests(history)
        if int(r.get("status", 0)) == 503
        and r.get("revokes")
        and not during(r, fault_list, grace)
        and during(r, windows, grace)
    ]


def unexpected_answers(history: Sequence[Record], grace: float) -> list[Record]:
    """Answers that are none of: 2xx where a 2xx is wanted; 401 for a token
    that is (or may be) revoked, or for a replay; 403/422 where the operation
    expects it; 503 during a fault (or ``grace`` seconds after it), or for a
    revocation while no replica was in sync. No answer at all, a 500 or any
    other code is unexpected."""
    fault_list = faults(history)
    maybe = revocations(history, confirmed=False)
    waiting = {id(r) for r in unacknowledged(history, grace)}
    found = []
    for r in requests(history):
        status = int(r.get("status", 0))
        op = r.get("op", "")
        expected = EXPECTED_STATUS.get(op)
        if expected is not None:
            if status not in expected and not (status == 503 and during(r, fault_list, grace)):
                found.append(r)
            continue
        if 200 <= status < 300:
            continue
        if status == 503 and (during(r, fault_list, grace) or id(r) in waiting):
            continue
        if status == 401 and (
            op in REPLAY_OPS
            or any(
                rev.may_cover(r.get("token")) and rev.t_start < float(r["t_end"]) for rev in maybe
            )
        ):
            continue
        found.append(r)
    return found


def lost_revocations(history: Sequence[Record]) -> tuple[list[Record], list[Record], int]:
    """The end-of-run re-checks of revoked tokens: those accepted (lost
    revocations), those with no clear refusal (not 401: unknown), and how
    many there were."""
    finals = [r for r in requests(history) if r.get("phase") == "final"]
    lost = [r for r in finals if _ok(r)]
    unclear = [r for r in finals if not _ok(r) and int(r.get("status", 0)) != 401]
    return lost, unclear, len(finals)


def recovery_times(history: Sequence[Record]) -> list[tuple[Fault, float | None]]:
    """For each fault, seconds from its end until a health probe and a
    protected-view probe, both begun after the end, had both answered 200
    (None if that never happened)."""
    probes = sorted(
        (r for r in requests(history) if r.get("phase") == "probe"),
        key=lambda r: float(r["t_start"]),
    )
    result = []
    for fault in faults(history):
        seen: dict[str, float] = {}
        recovered = None
        for r in probes:
            if float(r["t_start"]) < fault.t_end:
                continue
            if int(r.get("status", 0)) == 200:
                seen.setdefault(r["op"], float(r["t_end"]))
            else:
                seen.pop(r["op"], None)
            if "probe_health" in seen and "probe_me" in seen:
                recovered = max(seen.values()) - fault.t_end
                break
        result.append((fault, recovered))
    return result


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by the nearest-rank method; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def latencies(history: Sequence[Record]) -> tuple[list[float], list[float]]:
    """Durations of the load's answered requests outside and during faults."""
    fault_list = faults(history)
    outside: list[float] = []
    inside: list[float] = []
    for r in requests(history):
        if r.get("phase") != "load" or int(r.get("status", 0)) == 0:
            continue
        duration = float(r["t_end"]) - float(r["t_start"])
        (inside if during(r, fault_list, 0.0) else outside).append(duration)
    return outside, inside


def check(history: Sequence[Record], window: float = 1.0, grace: float = 1.0) -> Report:
    """Every line of the report. ``window``: how long after a revocation
    returned a token may still pass (the near cache's documented bound);
    ``grace``: seconds after a fault's end in which a 503 still counts as the
    fault's."""
    fault_list = faults(history)
    report = Report()
    add = report.lines.append

    def annotated(records: Iterable[Record]) -> list[Record]:
        """Examples with the faults active around them, for the report."""
        return [
            {**r, "faults_active": [f.kind for f in fault_list if during(r, [f], grace)]}
            for r in records
        ]

    load_requests = [r for r in requests(history) if r.get("phase") == "load"]
    add(Line("requests (load)", str(len(load_requests))))
    kinds: dict[str, int] = {}
    for f in fault_list:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    add(Line("faults", ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"))
    add(Line("revocations confirmed", str(len(revocations(history)))))

    accepted, worst = revoked_accepted(history, window)
    late = [r for lag, r in accepted if lag > window]
    add(Line("revoked tokens accepted after return", str(len(accepted)), "(reported)"))
    add(
        Line(
            f"  ... more than {window:g} s after",
            str(len(late)),
            "0",
            not late,
        )
    )
    add(Line("  worst window seen", "none" if worst is None else f"{worst * 1000:.1f} ms"))
    report.examples["revoked accepted"] = annotated(late[:5])

    wrong = wrong_user(history)
    add(Line("answers with another user's data", str(len(wrong)), "0", not wrong))
    report.examples["another user's data"] = annotated(wrong[:5])

    unexpected = unexpected_answers(history, grace)
    statuses: dict[int, int] = {}
    for r in unexpected:
        statuses[int(r.get("status", 0))] = statuses.get(int(r.get("status", 0)), 0) + 1
    detail = ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(statuses.items()))
    add(
        Line(
            "unexpected answers",
            f"{len(unexpected)}" + (f" ({detail})" if detail else ""),
            "0",
            not unexpected,
        )
    )
    report.examples["unexpected answers"] = annotated(unexpected[:10])
    code_503 = [r for r in load_requests if int(r.get("status", 0)) == 503]
    waiting = [r for r in unacknowledged(history, grace) if r.get("phase") == "load"]
    add(
        Line(
            "503 during faults",
            str(len(code_503) - statuses.get(503, 0) - len(waiting)),
            "(allowed)",
        )
    )
    windows = unsynced(history)
    if windows:
        spent = sum(w.t_end - w.t_start for w in windows)
        add(Line("time with no replica in sync", f"{spent:.1f} s in {len(windows)} spells"))
        add(Line("  revocations 503 then, outside faults", str(len(waiting)), "(allowed)"))

    lost, unclear, total = lost_revocations(history)
    add(Line("revoked tokens re-checked at the end", str(total)))
    add(Line("  revocations lost", str(len(lost)), "0", not lost and total > 0))
    add(Line("  re-checks not refused with 401", str(len(unclear)), "0", not unclear))
    report.examples["lost revocations"] = annotated(lost[:5])

    by_kind: dict[str, list[float | None]] = {}
    for fault, seconds in recovery_times(history):
        by_kind.setdefault(fault.kind, []).append(seconds)
    never = 0
    for kind, values in sorted(by_kind.items()):
        known = [v for v in values if v is not None]
        never += len(values) - len(known)
        worst_value = max(known) if known else None
        add(
            Line(
                f"recovery after {kind} (worst of {len(values)})",
                "never" if worst_value is None else f"{worst_value:.2f} s",
            )
        )
    add(Line("faults never recovered from", str(never), "0", never == 0))

    outside, inside = latencies(history)
    for name, durations in (("outside faults", outside), ("during faults", inside)):
        p99 = percentile(durations, 0.99)
        add(
            Line(
                f"p99 latency {name}",
                "n/a" if p99 is None else f"{p99 * 1000:.1f} ms ({len(durations)} requests)",
            )
        )
    return report


def format_table(report: Report) -> str:
    """The report as a plain-text table, then a few examples of each
    failure."""
    width = max(len(line.name) for line in report.lines)
    value_width = max(len(line.value) for line in report.lines)
    want_width = max(4, *(len(line.want) for line in report.lines))
    rows = [f"{'check':<{width}}  {'value':<{value_width}}  {'want':<{want_width}}  result"]
    for line in report.lines:
        verdict = "" if line.ok is None else ("PASS" if line.ok else "FAIL")
        rows.append(
            f"{line.name:<{width}}  {line.value:<{value_width}}  "
            f"{line.want:<{want_width}}  {verdict}".rstrip()
        )
    rows.append("soak: " + ("PASS" if report.passed else "FAIL"))
    for name, examples in report.examples.items():
        if examples:
            rows.append(f"\nexamples: {name}")
            rows.extend("  " + json.dumps(example, sort_keys=True) for example in examples)
    return "\n".join(rows)
