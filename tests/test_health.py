"""The health model as a table: every problem in, the right state, code and fix out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objlibd.status import health

NOW = 1_800_000_000.0
TCC = (
    "grant Full Disk Access (or Removable Volumes) to /Users/me/objlibd/.venv/bin/python in "
    "System Settings > Privacy & Security, then restart objlibd"
)
NOT_CONNECTED = {"state": "unavailable", "cause": "not_connected",
                 "reason": 'library disk not connected: nothing is mounted at "/Volumes/U32 Shadow"',
                 "hint": 'connect "U32 Shadow" and retry'}  # fmt: skip


def base(**change: Any) -> health.Facts:
    """A running daemon, the drive verified and watched, nothing waiting."""
    facts: dict[str, Any] = {
        "now": NOW, "running": True, "watcher_alive": True, "pending_paths": 0,
        "volume": {"state": "available", "reason": "library mounted and verified", "cause": ""},
        "files": {"uploaded": 40, "missing": 1}, "unreachable_after_s": 600.0,
        "drive": "U32 Shadow", "state_dir": "/Users/me/Library/Application Support/objlibd",
    }  # fmt: skip
    facts.update(change)
    return facts  # type: ignore[return-value]


CASES: list[tuple[str, dict[str, Any], str, str | None, str]] = [
    # (name, facts changed, state, the code, a fragment of its fix)
    ("all well", {}, "healthy", None, ""),
    ("drive simply not connected", {"volume": NOT_CONNECTED, "watcher_alive": False},
     "waiting", "drive_not_connected", 'connect "U32 Shadow"'),
    ("root unreadable: TCC", {"volume": {"state": "unavailable", "cause": "unreadable",
     "reason": "cannot read /Volumes/U32 Shadow: Operation not permitted", "hint": TCC},
     "watcher_alive": False}, "unhealthy", "library_unreadable", "Full Disk Access"),
    ("the drive fails to read", {"volume": {"state": "unavailable", "cause": "io_error",
     "reason": "cannot read /Volumes/U32 Shadow: Input/output error"}, "watcher_alive": False},
     "unhealthy", "drive_read_error", 'reconnect "U32 Shadow"'),
    ("another drive", {"volume": {"state": "degraded", "reason": "wrong library",
     "hint": "connect the drive this objlibd synced"}}, "unhealthy", "wrong_drive",
     "connect the drive this objlibd synced"),
    ("not running", {"running": False}, "unhealthy", "daemon_not_running", "objlibd start"),
    ("a mass disappearance held", {"hold": {"since": "2026-11-20T10:00:00Z", "count": 12,
     "reason": "12 of 20 files (60%) would be marked missing"}}, "unhealthy",
     "mass_missing_held", "objlibd missing --confirm"),
    ("a confirmation waits", {"hold": {"count": 12, "reason": "12 files"},
     "confirm_pending": {"waiting_for": "paused"}}, "unhealthy",
     "confirm_waiting", "objlibd resume"),
    ("the store is full", {"store_full": {"message": "Corpus has reached the storage limit",
     "since": "2026-11-20T10:00:00Z"}}, "unhealthy", "store_full", "storage tier"),
    ("the store unreachable past the threshold with work waiting",
     {"store_failing_since": NOW - 660, "store_error": "ConnectError: [Errno 111]",
      "pending_paths": 1}, "unhealthy", "store_unreachable", "base_url"),
    ("failed uploads count as waiting work", {"store_failing_since": NOW - 660,
     "files": {"uploaded": 3, "failed": 2}}, "unhealthy", "store_unreachable", "objlibd doctor"),
    ("the circuit breaker is open", {"breaker": "open"}, "unhealthy", "breaker_open",
     "rate_limit_tier"),
    ("files quarantined", {"quarantined": 2}, "unhealthy", "quarantined", "objlibd failures"),
    ("the state disk is full", {"state_disk_full": "state disk full: no space left"},
     "unhealthy", "state_disk_full", "free some space"),
    ("the watch cannot start", {"watch_failed": "the file watch cannot start (inotify "
     "watch limit reached); the library is reconciled every 60 s instead",
     "watcher_alive": False}, "unhealthy", "watch_failed", "max_user_watches"),
    ("the watch died", {"watcher_alive": False}, "unhealthy", "watcher_dead", "objlibd restart"),
    ("the store is another one", {"daemon_problem": 'this state DB synced into local store "a"',
     "daemon_problem_fix": "fix [store] in the config"}, "unhealthy", "daemon_problem",
     "fix [store] in the config"),
    ("the config changed", {"config_changed": True}, "unhealthy", "config_changed",
     "objlibd restart"),
    ("paused on purpose", {"paused": True, "paused_since": "2026-11-20T10:00:00Z"}, "waiting",
     "paused", "objlibd resume"),
    ("the state DB cannot be read", {"state_db": "file is not a database"}, "unhealthy",
     "state_db_unreadable", "objlibd doctor"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "change", "state", "code", "fix"), CASES, ids=[c[0] for c in CASES]
)
def test_each_fact_gives_its_problem_and_fix(
    name: str, change: dict[str, Any], state: str, code: str | None, fix: str
) -> None:
    verdict = health.assess(base(**change))

    assert verdict["state"] == state
    assert [p["code"] for p in verdict["problems"]] == ([code] if code else [])
    if code:
        assert fix in verdict["problems"][0]["fix"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"store_failing_since": NOW - 660}, "nothing waits"),
        ({"store_failing_since": NOW - 300, "pending_paths": 4}, "not yet 10 minutes"),
        ({"volume": NOT_CONNECTED, "watcher_alive": False, "watch_failed": "x"}, "no drive"),
    ],
)
def test_what_needs_nobody_is_not_a_problem(change: dict[str, Any], why: str) -> None:
    codes = [p["code"] for p in health.assess(base(**change))["problems"]]

    assert set(codes) <= {"drive_not_connected"}, why


def test_every_code_is_produced_by_a_case_and_has_a_fix() -> None:
    produced = {code for *_, code, _ in CASES if code} | {"state_db_unreadable"}

    assert produced == set(health.CODES)


def test_problems_come_worst_first_with_their_since() -> None:
    verdict = health.assess(base(
        quarantined=1, paused=True, hold={"since": "2026-11-20T10:00:00Z", "count": 30},
        store_failing_since=NOW - 3600, pending_paths=2, seen={"quarantined": "2026-11-21T08:00:00Z"},
    ))  # fmt: skip

    problems = verdict["problems"]
    assert [(p["code"], p["severity"]) for p in problems] == [
        ("mass_missing_held", "error"), ("store_unreachable", "error"),
        ("quarantined", "warning"), ("paused", "info"),
    ]  # fmt: skip
    assert problems[0]["since"] == "2026-11-20T10:00:00Z"  # the hold's own time
    assert problems[1]["since"] == "2027-01-15T07:00:00Z"  # when the failures began
    assert problems[2]["since"] == "2026-11-21T08:00:00Z"  # when the daemon first saw it
    assert "60 min with 2 waiting" in problems[1]["message"]


def test_a_daemon_that_is_not_running_is_judged_only_on_what_it_does_not_know() -> None:
    """Live facts of a stopped daemon (its old watcher, store) are not news."""
    verdict = health.assess(base(running=False, watcher_alive=False, store_failing_since=0.0,
                                 pending_paths=3, config_changed=True))  # fmt: skip

    assert [p["code"] for p in verdict["problems"]] == ["daemon_not_running"]


FACTS = st.fixed_dictionaries(
    {},
    optional={
        "running": st.booleans(), "watcher_alive": st.booleans(), "paused": st.booleans(),
        "pending_paths": st.integers(0, 3), "quarantined": st.integers(0, 2),
        "breaker": st.sampled_from([None, "closed", "open", "half_open"]),
        "store_failing_since": st.one_of(st.none(), st.floats(NOW - 7200, NOW)),
        "config_changed": st.booleans(),
        "volume": st.sampled_from([
            {"state": "available"}, NOT_CONNECTED, {"state": "degraded", "reason": "x"},
            {"state": "unavailable", "cause": "unreadable", "reason": "denied"},
        ]),
        "hold": st.sampled_from([None, {"count": 3, "reason": "3 files"}]),
    },
)  # fmt: skip


@given(FACTS)
def test_unhealthy_exactly_when_a_problem_needs_a_person(change: dict[str, Any]) -> None:
    verdict = health.assess(base(**change))
    ranks = [health.rank(p["severity"]) for p in verdict["problems"]]

    assert (verdict["state"] == "unhealthy") == any(r >= 1 for r in ranks)
    assert (verdict["state"] == "healthy") == (not ranks)
    assert all(p["code"] in health.CODES and p["fix"] and p["message"] for p in verdict["problems"])
    assert ranks == sorted(ranks, reverse=True)
