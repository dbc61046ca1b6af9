"""The soak's checker on histories written by hand: each failure it must
find, and each legitimate answer it must not count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.soak import check

T0 = 1_700_000_000.0


def token(
    jti: str, sub: str = "alice", auth_time: float = T0 - 10, kind: str = "access"
) -> dict[str, Any]:
    return {"jti": jti, "sub": sub, "type": kind, "auth_time": int(auth_time)}


def req(
    op: str,
    t_start: float,
    status: int = 200,
    *,
    tok: dict[str, Any] | None = None,
    user: str = "alice",
    duration: float = 0.01,
    phase: str = "load",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "request",
        "op": op,
        "t_start": T0 + t_start,
        "t_end": T0 + t_start + duration,
        "status": status,
        "token": tok,
        "user": user,
        "client": "c1",
        "phase": phase,
        **extra,
    }


def fault(kind: str, start: float, end: float) -> dict[str, Any]:
    return {"type": "fault", "kind": kind, "t_start": T0 + start, "t_end": T0 + end}


def line(report: check.Report, name: str) -> check.Line:
    return next(item for item in report.lines if item.name.strip() == name)


A = token("a1")


def test_a_revoked_token_accepted_after_the_window_fails_the_run() -> None:
    history = [
        req("logout", 1.0, tok=A, revokes={"jtis": ["a1"]}),
        req("me", 3.0, tok=A, body_user="alice"),
    ]
    report = check.check(history, window=1.0)
    assert line(report, "... more than 1 s after").ok is False
    assert line(report, "worst window seen").value == "1990.0 ms"
    assert not report.passed


def test_acceptance_within_the_window_is_reported_but_passes() -> None:
    history = [
        req("logout", 1.0, tok=A, revokes={"jtis": ["a1"]}),
        req("me", 1.5, tok=A, body_user="alice"),
    ]
    report = check.check(history, window=1.0)
    assert line(report, "revoked tokens accepted after return").value == "1"
    assert line(report, "... more than 1 s after").ok is True


def test_acceptance_before_the_revocation_returned_is_not_counted() -> None:
    history = [
        req("logout", 1.0, tok=A, duration=0.5, revokes={"jtis": ["a1"]}),
        req("me", 1.2, tok=A, body_user="alice"),
    ]
    accepted, worst = check.revoked_accepted(history, 0.0)
    assert accepted == [] and worst is None


def test_a_failed_revocation_revokes_nothing() -> None:
    history = [
        req("logout", 1.0, 503, tok=A, revokes={"jtis": ["a1"]}),
        req("me", 3.0, tok=A, body_user="alice"),
    ]
    assert check.revoked_accepted(history, 0.0) == ([], None)


def test_log_out_everywhere_covers_sessions_begun_up_to_its_start() -> None:
    old = token("o1", auth_time=T0 + 4)
    same_second = token("s1", auth_time=T0 + 5)
    later = token("n1", auth_time=T0 + 7)
    history = [
        req("logout_everywhere", 5.2, tok=old, revokes={"user": "alice"}),
        req("me", 6.0, tok=old, body_user="alice"),
        req("me", 6.0, tok=same_second, body_user="alice"),
        req("me", 8.0, tok=later, body_user="alice"),
        req("me", 8.0, tok=token("b1", sub="bob", auth_time=T0), user="bob", body_user="bob"),
    ]
    accepted, _ = check.revoked_accepted(history, 0.0)
    assert sorted(r["token"]["jti"] for _, r in accepted) == ["o1", "s1"]


def test_another_users_data_is_found_in_bodies_and_in_logins() -> None:
    history = [
        req("me", 1.0, tok=A, body_user="bob"),
        req("me", 1.1, tok=A, body_user="alice"),
        req("login", 2.0, user="alice", issued=[token("x", sub="bob")]),
        req("login", 2.1, user="alice", issued=[token("y", sub="alice")]),
        req("me", 3.0, 401, tok=A, body_user=None),
    ]
    wrong = check.wrong_user(history)
    assert [(r["op"], r["t_start"]) for r in wrong] == [("me", T0 + 1.0), ("login", T0 + 2.0)]
    assert line(check.check(history), "answers with another user's data").ok is False


def test_a_500_fails_even_during_a_fault() -> None:
    history = [fault("pause", 1.0, 3.0), req("me", 2.0, 500, tok=A)]
    report = check.check(history)
    assert line(report, "unexpected answers").value == "1 (500: 1)"
    assert not report.passed
    example = report.examples["unexpected answers"][0]
    assert example["faults_active"] == ["pause"]


def test_503_is_allowed_during_a_fault_and_its_grace_only() -> None:
    history = [
        fault("kill9", 1.0, 3.0),
        req("me", 2.0, 503, tok=A),
        req("me", 3.5, 503, tok=A),
        req("me", 6.0, 503, tok=A),
    ]
    unexpected = check.unexpected_answers(history, grace=1.0)
    assert [r["t_start"] for r in unexpected] == [T0 + 6.0]


def test_401_needs_a_revocation_or_a_replay() -> None:
    history = [
        req("logout", 1.0, 500, tok=A, revokes={"jtis": ["a1"]}),
        req("me", 2.0, 401, tok=A),
        req("me", 2.0, 401, tok=token("z9")),
        req("replay_access", 2.0, 401, tok=token("z8")),
        req("garbage_token", 2.0, 422),
        req("garbage_token", 2.5, 200),
        req("me", 3.0, 0, tok=A),
    ]
    unexpected = check.unexpected_answers(history, grace=1.0)
    assert [(r["op"], r["status"]) for r in unexpected] == [
        ("logout", 500),
        ("me", 401),
        ("garbage_token", 200),
        ("me", 0),
    ]


def test_a_401_may_come_from_a_revocation_still_in_flight() -> None:
    history = [
        req("logout_everywhere", 1.0, duration=1.0, tok=A, revokes={"user": "alice"}),
        req("me", 1.5, 401, tok=token("q", auth_time=T0 + 1)),
    ]
    assert check.unexpected_answers(history, grace=0.0) == []


def test_lost_revocations_are_final_rechecks_that_pass() -> None:
    history = [
        req("final_access", 10.0, 401, tok=A, phase="final"),
        req("final_access", 10.0, 200, tok=token("b"), phase="final"),
        req("final_refresh", 10.0, 503, tok=token("c"), phase="final"),
    ]
    lost, unclear, total = check.lost_revocations(history)
    assert [r["token"]["jti"] for r in lost] == ["b"]
    assert [r["token"]["jti"] for r in unclear] == ["c"]
    assert total == 3
    report = check.check(history)
    assert line(report, "revocations lost").ok is False


def test_no_final_recheck_at_all_fails() -> None:
    assert line(check.check([]), "revocations lost").ok is False


def test_recovery_waits_for_both_probes_after_the_fault_end() -> None:
    history = [
        fault("kill9", 1.0, 3.0),
        req("probe_health", 2.9, 200, phase="probe"),
        req("probe_me", 3.1, 503, phase="probe"),
        req("probe_health", 3.2, 200, phase="probe", duration=0.05),
        req("probe_me", 3.4, 200, phase="probe", duration=0.1),
        fault("pause", 10.0, 12.0),
        req("probe_health", 12.1, 503, phase="probe"),
    ]
    (first, seconds), (second, never) = check.recovery_times(history)
    assert first.kind == "kill9" and seconds == pytest.approx(0.5)
    assert second.kind == "pause" and never is None
    assert line(check.check(history), "faults never recovered from").ok is False


def test_a_probe_failure_after_success_resets_recovery() -> None:
    history = [
        fault("pause", 0.0, 1.0),
        req("probe_health", 1.1, 200, phase="probe"),
        req("probe_health", 1.2, 503, phase="probe"),
        req("probe_me", 1.3, 200, phase="probe"),
        req("probe_health", 1.4, 200, phase="probe"),
    ]
    ((_, seconds),) = check.recovery_times(history)
    assert seconds == pytest.approx(0.41)


def test_latency_is_split_by_fault_and_p99_is_nearest_rank() -> None:
    history = [fault("latency", 10.0, 20.0)]
    history += [req("me", float(i) / 100, duration=0.001 * (i + 1)) for i in range(100)]
    history += [req("me", 15.0, duration=0.5), req("me", 9.9, duration=0.2)]
    outside, inside = check.latencies(history)
    assert len(outside) == 100 and len(inside) == 2
    assert check.percentile(outside, 0.99) == pytest.approx(0.099)
    assert check.percentile([], 0.99) is None


def test_a_clean_history_passes_and_reads_from_a_file(tmp_path: Path) -> None:
    history = [
        req("login", 0.0, issued=[A]),
        req("me", 0.5, tok=A, body_user="alice"),
        req("logout", 1.0, tok=A, revokes={"jtis": ["a1"]}),
        req("replay_access", 1.1, 401, tok=A),
        fault("client_kill", 2.0, 2.1),
        req("probe_health", 2.2, 200, phase="probe"),
        req("probe_me", 2.3, 200, phase="probe"),
        req("final_access", 5.0, 401, tok=A, phase="final"),
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in history) + "\n")
    report = check.check(check.load(path))
    assert report.passed, check.format_table(report)
    assert "soak: PASS" in check.format_table(report)


def test_load_refuses_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"type": "fault"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"history\.jsonl:2"):
        check.load(path)


def unsynced(start: float, end: float) -> dict[str, Any]:
    return {"type": "unsynced", "t_start": T0 + start, "t_end": T0 + end}


def test_a_revocation_refused_while_no_replica_is_in_sync_is_allowed_and_counted() -> None:
    history = [
        unsynced(10.0, 14.0),
        req("logout", 11.0, 503, tok=A, revokes={"jtis": ["a1"]}),
        req("logout", 20.0, 503, tok=A, revokes={"jtis": ["a1"]}),
    ]
    unexpected = check.unexpected_answers(history, grace=1.0)
    assert [r["t_start"] for r in unexpected] == [T0 + 20.0]
    report = check.check(history)
    assert line(report, "time with no replica in sync").value == "4.0 s in 1 spells"
    assert line(report, "revocations 503 then, outside faults").value == "1"
    assert line(report, "503 during faults").value == "0"


def test_a_read_refused_while_no_replica_is_in_sync_is_unexpected() -> None:
    # Reads need no replica: only a revocation waits for one.
    history = [unsynced(10.0, 14.0), req("me", 11.0, 503, tok=A)]
    assert len(check.unexpected_answers(history, grace=1.0)) == 1


def test_a_revocation_refused_during_a_fault_counts_as_the_faults() -> None:
    history = [
        fault("kill9", 10.0, 11.0),
        unsynced(10.0, 14.0),
        req("logout", 10.5, 503, tok=A, revokes={"jtis": ["a1"]}),
    ]
    report = check.check(history)
    assert line(report, "503 during faults").value == "1"
    assert line(report, "revocations 503 then, outside faults").value == "0"
    assert line(report, "unexpected answers").value == "0"
