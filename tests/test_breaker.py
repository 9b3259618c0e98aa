"""The rolling-window circuit breaker, driven by a fake clock (no real time)."""

from __future__ import annotations

import threading

import pytest

from fake_clock import FakeClock
from objlibd.remote.breaker import BreakerSettings, CircuitBreaker, concurrency_for


def feed(breaker: CircuitBreaker, outcomes: str) -> None:
    """Record outcomes: '.' success, 'x' 429, 'e' other error."""
    for outcome in outcomes:
        if outcome == ".":
            breaker.record_success()
        elif outcome == "x":
            breaker.record_429()
        else:
            breaker.record_error()


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ("", "closed"),
        ("x", "closed"),
        ("xx", "closed"),
        ("xxx", "open"),
        ("xx.xx.", "closed"),  # 4 of 6 calls, but only 4 % of the window
        ("x.x.x.x.x.", "closed"),  # 5 429s = 5 % of the window: not above
        ("x.x.x.x.x.x", "open"),  # 6 429s > 5 %
        ("." * 100 + "x.x.x.x.x.x", "open"),
        ("x.x.x.x.x." + "." * 95 + "x", "closed"),  # the old 429s slid out of the window
        ("xxe", "closed"),  # errors never trip it
        ("xxex", "open"),  # ...nor reset the consecutive count
        ("eeeeeeeeee", "closed"),
    ],
)
def test_the_breaker_trips_on_the_window_rate_or_three_consecutive_429s(
    outcomes: str, expected: str
) -> None:
    breaker = CircuitBreaker(FakeClock())

    feed(breaker, outcomes)

    assert breaker.state == expected


def test_an_open_breaker_refuses_calls_until_the_cooldown_has_passed() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    feed(breaker, "xxx")
    clock.now += 299.0

    refused = breaker.allow()
    wait = breaker.retry_after()

    assert (refused, wait) == (False, pytest.approx(1.0))


def test_after_the_cooldown_exactly_one_probe_goes_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    feed(breaker, "xxx")
    clock.now += 300.0

    first, second = breaker.allow(), breaker.allow()

    assert (breaker.state, first, second) == ("half_open", True, False)


@pytest.mark.parametrize(
    ("probe", "expected_state", "expected_trips"),
    [(".", "closed", 1), ("x", "open", 1), ("e", "half_open", 1)],
)
def test_the_probe_outcome_decides_the_next_state(
    probe: str, expected_state: str, expected_trips: int
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    feed(breaker, "xxx")
    clock.now += 300.0
    assert breaker.allow()

    feed(breaker, probe)
    snap = breaker.snapshot()

    assert (snap["state"], snap["trips"]) == (expected_state, expected_trips)


def test_an_errored_probe_frees_the_slot_for_another_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    feed(breaker, "xxx")
    clock.now += 300.0
    breaker.allow()
    breaker.record_error()

    again = breaker.allow()

    assert again is True


def test_closing_clears_the_window_so_old_429s_do_not_trip_it_again() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    feed(breaker, "x.x.x.x.x.x")
    clock.now += 300.0
    breaker.allow()
    breaker.record_success()

    feed(breaker, "x.")

    assert breaker.snapshot() == {
        "state": "closed",
        "error_rate": 0.01,
        "consecutive": 0,
        "opened_at": None,
        "trips": 1,
    }


def test_the_snapshot_reports_state_rate_streak_opening_time_and_trips() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)

    feed(breaker, "..xxx")

    assert breaker.snapshot() == {
        "state": "open",
        "error_rate": 0.03,
        "consecutive": 3,
        "opened_at": 1000.0,
        "trips": 1,
    }


@pytest.mark.parametrize(
    ("outcomes", "advance", "expected"),
    [("", 0.0, 8), ("xxx", 0.0, 1), ("xxx", 300.0, 1)],
)
def test_recommended_concurrency_drops_to_one_unless_closed(
    outcomes: str, advance: float, expected: int
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock)
    feed(breaker, outcomes)
    clock.now += advance

    assert concurrency_for(breaker.state, 8) == expected


def test_transitions_are_reported_in_order() -> None:
    clock = FakeClock()
    seen: list[str] = []
    breaker = CircuitBreaker(clock, on_transition=lambda state, _snap: seen.append(state))
    feed(breaker, "xxx")
    clock.now += 300.0
    breaker.allow()
    breaker.record_429()
    clock.now += 300.0
    breaker.allow()
    breaker.record_success()

    assert seen == ["open", "half_open", "open", "half_open", "closed"]


def test_custom_settings_change_window_threshold_streak_and_cooldown() -> None:
    clock = FakeClock()
    settings = BreakerSettings(window=10, threshold=0.2, consecutive=5, cooldown=1.0)
    breaker = CircuitBreaker(clock, settings)
    feed(breaker, "x.x.x")
    clock.now += 1.0

    assert breaker.state == "half_open"


def test_concurrent_recording_counts_every_outcome() -> None:
    breaker = CircuitBreaker(FakeClock(), BreakerSettings(window=1600, consecutive=10**6))

    def hammer() -> None:
        for _ in range(100):
            breaker.record_success()
            breaker.record_429()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert breaker.error_rate() == 0.5
