"""Tiered request-rate limiter (GCRA, i.e. an interval scheduler with an optional burst).

Gemini quotas are requests per minute by account tier: free 5, tier1 20, tier2 200,
tier3 2000. The limiter hands out start times spaced `60 / rpm` seconds apart; callers
reserve their slot under a lock and then sleep outside it, so waiting threads queue in
arrival order and never hold the lock while sleeping. With `burst > 1` up to `burst` calls
may start at once after an idle spell. Clock and sleep are injected so tests need no real
time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

TIER_RPM: dict[str, int] = {"free": 5, "tier1": 20, "tier2": 200, "tier3": 2000}


class RateLimiter:
    """Space calls to at most `rpm` per minute; thread-safe."""

    def __init__(
        self,
        rpm: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        burst: int = 1,
    ) -> None:
        if rpm <= 0:
            raise ValueError(f"rpm must be greater than 0, got {rpm}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rpm = rpm
        self.interval = 60.0 / rpm
        self._tolerance = (burst - 1) * self.interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat: float | None = None  # theoretical arrival time of the next call
        self._waited = 0.0
        self._calls = 0
        self._waiting = 0  # callers sleeping for their slot right now

    @classmethod
    def for_tier(
        cls,
        tier: str,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        burst: int = 1,
    ) -> RateLimiter:
        """Return a limiter for a named tier (free, tier1, tier2, tier3)."""
        try:
            rpm = TIER_RPM[tier]
        except KeyError:
            known = ", ".join(TIER_RPM)
            raise ValueError(f"unknown rate limit tier {tier!r}; known: {known}") from None
        return cls(rpm, clock, sleep, burst)

    def reserve(self) -> float:
        """Reserve the next slot; return how many seconds the caller must wait for it."""
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            start = max(now, tat - self._tolerance)
            self._tat = tat + self.interval
            wait = start - now
            self._waited += wait
            self._calls += 1
        return wait

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            with self._lock:
                self._waiting += 1
            try:
                self._sleep(wait)
            finally:
                with self._lock:
                    self._waiting -= 1
        return wait

    def snapshot(self) -> dict[str, object]:
        """Return the limiter's numbers for status output."""
        with self._lock:
            return {
                "rpm": self.rpm,
                "calls": self._calls,
                "waited_seconds": round(self._waited, 3),
                "waiting": self._waiting,
            }
