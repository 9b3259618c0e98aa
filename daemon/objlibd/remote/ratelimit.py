"""Request-rate limiter (GCRA, i.e. an interval scheduler with an optional burst).

The tiers (free 5, tier1 20, tier2 200, tier3 2000 requests per minute) are seed 003's guess
at Gemini's undocumented quotas: the adaptive pace (`pace.py`) starts from one and retunes
this limiter as it learns. The limiter hands out start times spaced `60 / rpm` seconds apart;
callers reserve their slot under a lock and then sleep outside it, so waiting threads queue
in arrival order and never hold the lock while sleeping. With `burst > 1` up to `burst` calls
may start at once after an idle spell. `retune` changes the spacing for the slots not yet
handed out; `restart_at` drops the reservations handed out (their holders ask again) and
starts the next slot no earlier than a given time. Clock and sleep are injected so tests
need no real time.
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
        sleep: Callable[[float], None] | None = None,
        burst: int = 1,
    ) -> None:
        """`sleep` is needed only by `acquire` (`reserve` leaves the waiting to the caller)."""
        if rpm <= 0:
            raise ValueError(f"rpm must be greater than 0, got {rpm}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._burst = burst
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
        sleep: Callable[[float], None] | None = None,
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

    def retune(self, rpm: float) -> None:
        """Space the slots not yet handed out `60 / rpm` seconds apart."""
        if rpm <= 0:
            raise ValueError(f"rpm must be greater than 0, got {rpm}")
        with self._lock:
            self.rpm = rpm
            self.interval = 60.0 / rpm
            self._tolerance = (self._burst - 1) * self.interval

    def restart_at(self, moment: float) -> None:
        """Forget the slots handed out; the next one starts no earlier than `moment`."""
        with self._lock:
            # No burst credit across a restart: the next slot starts at `moment` exactly.
            self._tat = max(moment, self._clock()) + self._tolerance

    def backlog(self) -> float:
        """Return how far ahead the slots handed out reach (0: the next one is free now)."""
        with self._lock:
            if self._tat is None:
                return 0.0
            return max(0.0, self._tat - self._tolerance - self._clock())

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            if self._sleep is None:
                raise RuntimeError("this limiter was made without a sleep: use reserve()")
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
