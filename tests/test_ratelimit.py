"""The tiered rate limiter, driven by a fake clock whose sleep moves time (no real sleeps)."""

from __future__ import annotations

import threading

import pytest

from fake_clock import FakeClock
from objlibd.remote.ratelimit import TIER_RPM, RateLimiter


@pytest.mark.parametrize(
    ("tier", "expected_interval"),
    [("free", 12.0), ("tier1", 3.0), ("tier2", 0.3), ("tier3", 0.03)],
)
def test_each_tier_spaces_calls_sixty_seconds_over_its_rpm(
    tier: str, expected_interval: float
) -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    limiter = RateLimiter.for_tier(tier, fake.clock, fake.sleep)

    waits = [limiter.acquire() for _ in range(3)]

    assert waits == pytest.approx([0.0, expected_interval, 2 * expected_interval])


def test_the_tiers_are_the_issue_numbers() -> None:
    assert TIER_RPM == {"free": 5, "tier1": 20, "tier2": 200, "tier3": 2000}


def test_an_idle_limiter_lets_the_next_call_through_at_once() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    limiter = RateLimiter(20, fake.clock, fake.sleep)
    limiter.acquire()
    fake.now += 10.0

    waited = limiter.acquire()

    assert waited == 0.0


def test_a_call_part_way_through_the_interval_waits_only_the_rest() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    limiter = RateLimiter(20, fake.clock, fake.sleep)
    limiter.acquire()
    fake.now += 1.0

    waited = limiter.acquire()

    assert waited == pytest.approx(2.0)


def test_a_burst_lets_that_many_calls_start_together_then_spaces_the_rest() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    limiter = RateLimiter(60, fake.clock, fake.sleep, burst=3)

    waits = [limiter.reserve() for _ in range(5)]

    assert waits == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])


def test_waits_go_through_the_injected_sleep_and_are_reported() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    limiter = RateLimiter(60, fake.clock, fake.sleep)

    for _ in range(3):
        limiter.acquire()

    assert (fake.slept, limiter.snapshot()) == (
        [1.0, 2.0],
        {"rpm": 60, "calls": 3, "waited_seconds": 3.0, "waiting": 0},
    )


def test_a_caller_sleeping_for_its_slot_counts_as_waiting() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    seen: list[object] = []
    limiter = RateLimiter(60, fake.clock, lambda _s: seen.append(limiter.snapshot()["waiting"]))

    limiter.acquire()
    limiter.acquire()

    assert (seen, limiter.snapshot()["waiting"]) == ([1], 0)


def test_concurrent_callers_get_distinct_evenly_spaced_slots() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)
    limiter = RateLimiter(600, fake.clock, fake.sleep)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = limiter.reserve()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits) == pytest.approx([i * 0.1 for i in range(50)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rpm": 0}, "rpm must be greater than 0"),
        ({"rpm": 5, "burst": 0}, "burst must be at least 1"),
    ],
)
def test_impossible_settings_are_refused(kwargs: dict[str, int], message: str) -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)

    with pytest.raises(ValueError, match=message):
        RateLimiter(clock=fake.clock, sleep=fake.sleep, **kwargs)


def test_an_unknown_tier_names_the_known_ones() -> None:
    fake = FakeClock(0.0, advance_on_sleep=False)

    with pytest.raises(ValueError, match="known: free, tier1, tier2, tier3"):
        RateLimiter.for_tier("gold", fake.clock, fake.sleep)
