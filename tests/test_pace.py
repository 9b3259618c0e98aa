"""The adaptive pace (AIMD), on a fake clock: tables of what it does, then properties.

The properties run a paced client against a true sliding-window quota on simulated time
(`quota_sim`): every file lands, no quota 429 escapes to the breaker, and a run from the
learned pace keeps close to the quota with few refusals.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_clock import FakeClock
from objlibd.remote.pace import Pace, Ticket
from quota_sim import simulate

T0 = 1_000.0


def drive(
    pace: Pace,
    clock: FakeClock,
    seconds: float,
    refuse: Callable[[float], float | None] = lambda _now: None,
) -> list[bool]:
    """A caller that always has work: take each slot when it comes, for `seconds`.

    `refuse(now)` returns a RetryInfo delay to refuse that call, None to accept it.
    Returns what `refused` answered for each refusal.
    """
    answers = []
    until = clock.now + seconds
    while clock.now < until:
        ticket = pace.reserve()
        clock.now += ticket.wait
        if not pace.valid(ticket):
            continue
        delay = refuse(clock.now)
        if delay is None:
            pace.succeeded(ticket)
        else:
            answers.append(pace.refused(ticket, delay))
    return answers


def rpm_after(pace: Pace, clock: FakeClock, steps: list[float]) -> list[float]:
    """Drive the pace busily and sample it after each span of seconds."""
    seen = []
    for seconds in steps:
        drive(pace, clock, seconds)
        seen.append(pace.rpm)
    return seen


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0, advance_on_sleep=False)


# -- growth ------------------------------------------------------------------------------------


def test_slow_start_doubles_every_step_while_the_pace_is_the_limit(clock: FakeClock) -> None:
    pace = Pace(20, clock)

    assert rpm_after(pace, clock, [5.5, 5, 5, 5, 5]) == [40, 80, 160, 320, 640]


def test_a_pace_that_is_not_the_limit_does_not_grow(clock: FakeClock) -> None:
    pace = Pace(20, clock)

    for _ in range(10):  # one call every 20 s: a sixth of what 20 rpm allows
        pace.succeeded(pace.reserve())
        clock.now += 20

    assert pace.rpm == 20


def test_after_a_cut_it_doubles_back_to_the_limit_then_adds_an_eighth_of_it_per_step(
    clock: FakeClock,
) -> None:
    pace = Pace(200, clock, learned={"rpm": 50, "limit": 100, "start_rpm": 200})

    assert rpm_after(pace, clock, [5.5, 5, 5, 5]) == [100, 112.5, 125, 137.5]


def test_a_pace_of_a_few_calls_a_minute_grows_too_when_it_is_the_limit(clock: FakeClock) -> None:
    pace = Pace(2, clock)  # 30 s between calls: most 5 s steps hold none

    assert rpm_after(pace, clock, [30, 30, 30, 30]) == [4, 4, 8, 64]


def test_a_minute_past_the_limit_without_a_refusal_probes_again_by_doubling(
    clock: FakeClock,
) -> None:
    pace = Pace(200, clock, learned={"rpm": 100, "limit": 100, "start_rpm": 200})

    seen = rpm_after(pace, clock, [5.0] * 14)

    assert seen[:11] == [100 + 12.5 * step for step in range(1, 12)]  # an eighth per step
    assert seen[11:] == [475, 950, 1900]  # the limit went stale: slow start


def test_the_ceiling_caps_the_start_and_the_growth(clock: FakeClock) -> None:
    pace = Pace(20, clock, max_rpm=50)

    assert rpm_after(pace, clock, [5.5, 5, 5]) == [40, 50, 50]
    assert Pace(2000, clock, max_rpm=50).rpm == 50


# -- cuts and holds ------------------------------------------------------------------------------


def busy_at_one_call_a_second(pace: Pace, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        pace.succeeded(pace.reserve())
        clock.now += 1.0


def test_a_quota_429_halves_what_the_service_took_and_holds_until_retryinfo(
    clock: FakeClock,
) -> None:
    pace = Pace(2400, clock)
    busy_at_one_call_a_second(pace, clock, 30)  # the service took 30, not 2400 a minute
    waiting = pace.reserve()

    # RetryInfo 30.5 s: the call about to leave the window is this pace's first, so the
    # window (full, since it refuses) holds only this pace's 30 calls: the quota is 30.
    absorbed = pace.refused(pace.reserve(), 30.5)

    assert (absorbed, pace.rpm, pace.snapshot()["limit"]) == (True, 15, 15)
    assert pace.valid(waiting) is False, "a slot handed out before the hold is asked again"
    assert pace.reserve().wait == pytest.approx(30.5)


def test_a_window_still_full_of_an_earlier_runs_calls_teaches_no_limit(clock: FakeClock) -> None:
    pace = Pace(2400, clock)
    busy_at_one_call_a_second(pace, clock, 30)

    # RetryInfo 5 s: the call about to leave the window came 25 s before this pace began.
    pace.refused(pace.reserve(), 5.0)

    assert (pace.rpm, pace.snapshot()["limit"]) == (1200, None)


def test_without_retryinfo_the_hold_is_one_interval_of_the_new_pace(clock: FakeClock) -> None:
    pace = Pace(20, clock)

    pace.refused(pace.reserve(), None)

    assert (pace.rpm, pace.reserve().wait) == (10, pytest.approx(6.0))


@pytest.mark.parametrize(
    ("events", "expected_rpm"),
    [
        # 429, a call gets through, 429 again within the minute: the quota's window is
        # still full of the old calls; nothing new is learned, no second cut.
        (["429", "ok", "429"], 40),
        (["429", "ok", "wait 61", "429"], 20),  # a minute later: a new cut
        (["429", "429"], 20),  # nothing got through since the cut: cut again
        (["429", "429", "429", "429"], 5),
    ],
)
def test_one_cut_per_minute_unless_nothing_gets_through(
    clock: FakeClock, events: list[str], expected_rpm: float
) -> None:
    pace = Pace(80, clock)
    for event in events:
        if event.startswith("wait"):
            clock.now += float(event.split()[1])
            continue
        ticket = pace.reserve()
        clock.now += ticket.wait
        if event == "ok":
            pace.succeeded(ticket)
        else:
            pace.refused(ticket, 1.0)

    assert pace.rpm == expected_rpm
    assert pace.snapshot()["quota_429s"] == events.count("429")


def test_a_call_sent_before_the_cut_is_absorbed_without_a_second_cut(clock: FakeClock) -> None:
    pace = Pace(80, clock)
    early, late = pace.reserve(), pace.reserve()  # both sent at 80 rpm

    pace.refused(early, 1.0)
    absorbed = pace.refused(late, 1.0)

    assert (absorbed, pace.rpm, pace.snapshot()["cuts"]) == (True, 40, 1)


def test_at_the_floor_a_refusal_is_not_absorbed_it_is_the_breakers(clock: FakeClock) -> None:
    pace = Pace(4, clock)
    answers = drive(pace, clock, 600.0, refuse=lambda _now: 1.0)

    assert answers[:2] == [True, True]  # 4 -> 2 -> 1 rpm
    assert set(answers[2:]) == {False}
    assert (pace.rpm, pace.snapshot()["quota_429s"]) == (1, 2)


# -- what it remembers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "learned", "expected"),
    [
        (20, None, (20, None, "configured")),
        (20, {"rpm": 300, "limit": 150, "start_rpm": 20}, (300, 150, "learned")),
        (20, {"rpm": 300, "limit": None, "start_rpm": 20}, (300, None, "learned")),
        (200, {"rpm": 300, "limit": 150, "start_rpm": 20}, (200, None, "configured")),
        (20, {"rpm": "fast", "start_rpm": 20}, (20, None, "configured")),
        (20, {"rpm": -3, "start_rpm": 20}, (20, None, "configured")),
    ],
)
def test_it_starts_from_the_pace_learned_under_the_same_configuration(
    clock: FakeClock,
    start: float,
    learned: dict[str, object] | None,
    expected: tuple[float, float | None, str],
) -> None:
    pace = Pace(start, clock, learned=learned)

    snap = pace.snapshot()
    assert (snap["rpm"], snap["limit"], snap["source"]) == expected


def test_what_it_learned_round_trips_and_each_change_bumps_the_version(clock: FakeClock) -> None:
    pace = Pace(20, clock)
    drive(pace, clock, 12.0)
    pace.refused(pace.reserve(), 1.0)
    versions = pace.version

    again = Pace(20, clock, learned=pace.learned())

    assert versions == 3  # 20 -> 40 -> 80, then the cut
    assert (again.rpm, again.snapshot()["limit"], again.source) == (
        pace.rpm,
        pace.snapshot()["limit"],
        "learned",
    )
    assert pace.learned()["quota_429s"] == 1


def test_a_zero_start_is_refused() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Pace(0, lambda: 0.0)


def test_tickets_say_how_long_to_wait(clock: FakeClock) -> None:
    pace = Pace(60, clock)

    assert [pace.reserve() for _ in range(3)] == [
        Ticket(0.0, 0, 0),
        Ticket(1.0, 0, 0),
        Ticket(2.0, 0, 0),
    ]


# -- properties: against a true sliding-window quota, on simulated time ------------------------

quotas = st.integers(min_value=5, max_value=3000)
tiers = st.sampled_from([5.0, 20.0, 200.0, 2000.0])
workers = st.sampled_from([1, 2, 4, 8, 16])
latencies = st.sampled_from([0.005, 0.02, 0.1])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(quota=quotas, start=tiers, workers=workers, latency=latencies,
       files=st.integers(min_value=1, max_value=300))  # fmt: skip
def test_whatever_the_quota_and_start_every_file_lands_and_no_429_reaches_the_breaker(
    quota: int, start: float, workers: int, latency: float, files: int
) -> None:
    run = simulate(quota, files, start_rpm=start, workers=workers, latency=latency)

    assert run.quota_calls == 2 * files
    assert run.escaped == 0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(quota=st.integers(min_value=10, max_value=600), start=tiers, workers=workers,
       latency=latencies, minutes=st.floats(min_value=5.0, max_value=12.0))  # fmt: skip
def test_from_the_learned_pace_a_long_sync_keeps_near_the_quota_with_few_429s(
    quota: int, start: float, workers: int, latency: float, minutes: float
) -> None:
    files = max(10, int(quota * minutes / 2))
    first = simulate(quota, files, start_rpm=start, workers=workers, latency=latency)

    run = simulate(quota, files, start_rpm=start, workers=workers, latency=latency,
                   learned=first.learned)  # fmt: skip

    assert run.ratio >= 0.65, run  # AIMD's sawtooth averages 0.75 of the quota
    assert run.refused_per_100 <= 10, run
    assert run.escaped == 0
