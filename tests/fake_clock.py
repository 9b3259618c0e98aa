"""One fake clock for every test: time moves only when a test, or an injected sleep, moves it."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Callable as a clock (`clock()` or `clock.clock()`), with a `sleep` to inject.

    `sleep` records what was asked; it moves time forward unless `advance_on_sleep` is off
    (to assert on what a limiter asked for), and with `yield_on_sleep` it also gives other
    threads a real moment, so pollers running on fake time still interleave.
    """

    def __init__(
        self,
        now: float = 1_000.0,
        *,
        advance_on_sleep: bool = True,
        yield_on_sleep: bool = False,
    ) -> None:
        self.now = now
        self.slept: list[float] = []
        self.advance_on_sleep = advance_on_sleep
        self.yield_on_sleep = yield_on_sleep
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        """Return the current fake time."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward and return it."""
        with self._lock:
            self.now += seconds
            return self.now

    def advance_days(self, days: float) -> None:
        """Move time forward by whole or fractional days."""
        self.advance(days * 86_400)

    def sleep(self, seconds: float) -> None:
        """Record a sleep; move time by it (unless told not to)."""
        with self._lock:
            self.slept.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds
        if self.yield_on_sleep:
            time.sleep(0.001)  # a real yield so polling threads interleave on fake time


class ScaledClock:
    """Real time run `factor` times faster, for a client and a fake server that share it.

    A test with a true per-minute quota stays short this way: every duration the client and
    the fake measure (the quota's window, RetryInfo, the pace's steps, backoffs, polls) is in
    this clock's seconds, while one of them takes `1 / factor` of a real second.
    """

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._origin = time.monotonic()
        self._stop = threading.Event()

    def clock(self) -> float:
        """Return the seconds since this clock was made, in its own (faster) seconds."""
        return (time.monotonic() - self._origin) * self.factor

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock."""
        self._stop.wait(max(seconds, 0.0) / self.factor)
