"""The mass-missing hold as a pure state machine: arithmetic and lifecycle, by table."""

from __future__ import annotations

import pytest

from objlibd.engine.hold import Hold, Limits, mass_reason, on_batch, on_confirm, on_full

LIMITS = Limits(files=200, percent=20.0, min_files=5)
NOW, LATER = "2026-11-30T10:00:00.000Z", "2026-11-30T11:00:00.000Z"


def held(*paths: str, revision: int = 1, present: int = 40) -> Hold:
    return Hold(NOW, "held for a test", tuple(sorted(paths)), present, revision)


def names(count: int, prefix: str = "f") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(count)]


@pytest.mark.parametrize(
    ("count", "present", "expected"),
    [
        (1, 3, None),
        (5, 10, None),  # not more than min_files
        (6, 10, "60 %"),
        (6, 100, None),
        (20, 100, None),  # exactly the percent is fine
        (21, 100, "21 %"),
        (201, 100_000, "limit 200"),
        # The percent is of the files believed present *before* the change: 100 of the 138
        # still present is 72 %, however many were confirmed missing long ago.
        (100, 138, "72 %"),
        (40, 41, "98 %"),  # a foreign 1-file drive re-marked as ours
        (3, 0, None),
    ],
)
def test_mass_reason_measures_against_files_believed_present(
    count: int, present: int, expected: str | None
) -> None:
    reason = mass_reason(count, present, LIMITS)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert expected in reason


def test_full_view_over_the_limits_holds_and_marks_nothing() -> None:
    decision = on_full(None, names(20), 40, LIMITS, NOW)

    assert decision.mark == ()
    assert decision.hold is not None
    assert decision.hold.paths == tuple(names(20))
    assert decision.hold.present_before == 40
    assert decision.event == "missing.held"


def test_full_view_within_the_limits_marks() -> None:
    decision = on_full(None, names(3), 40, LIMITS, NOW)

    assert (decision.hold, decision.mark, decision.event) == (None, tuple(names(3)), None)


def test_full_view_clears_a_hold_when_the_files_are_back() -> None:
    decision = on_full(held(*names(20)), [], 40, LIMITS, LATER)

    assert decision.hold is None
    assert decision.mark == ()
    assert decision.event == "missing.hold_cleared"
    assert decision.detail["back"] == 20
    assert "20 of 20 held files are back" in decision.detail["reason"]


def test_full_view_clears_a_hold_and_marks_what_is_now_within_the_limits() -> None:
    decision = on_full(held(*names(20)), names(2), 40, LIMITS, LATER)

    assert decision.hold is None
    assert decision.mark == tuple(names(2))
    assert decision.event == "missing.hold_cleared"


def test_full_view_replaces_a_hold_with_what_it_sees_and_keeps_its_start() -> None:
    before = held(*names(20))
    decision = on_full(before, names(15), 40, LIMITS, LATER)

    assert decision.hold is not None
    assert decision.hold.paths == tuple(names(15))
    assert decision.hold.since == NOW, "the same disappearance, seen again"
    assert decision.hold.revision == 2
    assert decision.event == "missing.hold_replaced"
    assert decision.mark == ()


def test_full_view_that_sees_the_same_hold_changes_nothing() -> None:
    before = held(*names(20))

    assert on_full(before, names(20), 40, LIMITS, LATER).hold is before
    assert on_full(before, names(20), 40, LIMITS, LATER).event is None


@pytest.mark.parametrize("absent", [[], ["f999"], ["f000"], names(3, "g")])
def test_a_batch_never_clears_or_shrinks_a_hold_new_absences_join_it(absent: list[str]) -> None:
    before = held(*names(20))

    decision = on_batch(before, absent, 40, LIMITS, LATER)

    assert decision.mark == (), "nothing is marked while a hold stands"
    assert decision.hold is not None
    assert set(decision.hold.paths) == set(before.paths) | set(absent)
    grew = not set(absent) <= set(before.paths)
    assert decision.hold.revision == before.revision + grew
    assert decision.event == ("missing.hold_joined" if grew else None)


def test_a_batch_without_a_hold_marks_or_holds_by_the_limits() -> None:
    assert on_batch(None, ["a"], 40, LIMITS, NOW).mark == ("a",)
    big = on_batch(None, names(10), 40, LIMITS, NOW)
    assert big.mark == ()
    assert big.hold is not None
    assert big.event == "missing.held"
    assert on_batch(None, [], 40, LIMITS, NOW).hold is None


def test_confirm_marks_only_the_held_files_still_absent() -> None:
    before = held(*names(20), revision=3)

    decision = on_confirm(before, [*names(12), "not-held"], 3)

    assert decision.hold is None
    assert decision.mark == tuple(names(12))
    assert decision.event == "missing.confirmed"
    assert decision.detail["back"] == 8


def test_confirm_of_an_older_revision_keeps_the_hold() -> None:
    before = held(*names(20), revision=4)

    decision = on_confirm(before, names(20), 3)

    assert decision.hold is before
    assert decision.mark == ()
    assert decision.event == "missing.confirm_stale"


def test_confirm_without_a_hold_does_nothing() -> None:
    decision = on_confirm(None, ["a"], None)

    assert (decision.hold, decision.mark, decision.event) == (None, (), None)


def test_a_hold_round_trips_through_json_and_reads_older_rows() -> None:
    hold = held("b", "a", revision=2)

    assert Hold.from_json(hold.to_json()) == hold
    old = Hold.from_json({"reason": "r", "paths": ["x"], "since": NOW})
    assert old == Hold(NOW, "r", ("x",), 0, 1)
    assert Hold.from_json(None) is None
    assert Hold.from_json({"paths": []}) is None
