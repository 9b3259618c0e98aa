"""Rolling-window circuit breaker for the store's rate limiting (HTTP 429).

The breaker watches the outcome of the last `window` calls. It opens when more than
`threshold` of that window were 429s (the denominator is the whole window, so one 429 on a
cold start is 1 %, not 100 %) or when `consecutive` 429s arrive in a row. While open every
caller waits; after `cooldown` seconds it goes half-open and lets exactly one probe call
through. A probe that succeeds closes the breaker (and clears the window); a probe that gets
a 429 opens it again for another cooldown. Other failures (5xx, timeouts) are recorded but
never trip it: they are not the server asking us to slow down.

Pure: the clock is injected, nothing sleeps or logs here. Transitions are reported to an
optional callback (called outside the lock) so the caller can log them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]
Transition = Callable[[State, dict[str, object]], None]

CLOSED: State = "closed"
OPEN: State = "open"
HALF_OPEN: State = "half_open"

# How long a caller should wait before asking again while a half-open probe is in flight.
PROBE_WAIT_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The breaker's knobs (the defaults are the issue's numbers)."""

    window: int = 100
    threshold: float = 0.05
    consecutive: int = 3
    cooldown: float = 300.0


class CircuitBreaker:
    """Thread-safe rolling-window breaker; see the module docstring for the rules."""

    def __init__(
        self,
        clock: Callable[[], float],
        settings: BreakerSettings | None = None,
        on_transition: Transition | None = None,
    ) -> None:
        self._clock = clock
        self._settings = settings or BreakerSettings()
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._window: deque[bool] = deque(maxlen=self._settings.window)  # True = 429
        self._state: State = CLOSED
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trips = 0
        self._probe_in_flight = False

    @property
    def state(self) -> State:
        """Return the current state (an expired cooldown turns open into half-open)."""
        with self._lock:
            fired = self._expire_cooldown()
            state = self._state
        self._fire(fired)
        return state

    def allow(self) -> bool:
        """Return True if a call may go now (a half-open breaker takes the one probe slot)."""
        with self._lock:
            fired = self._expire_cooldown()
            if self._state == CLOSED:
                allowed = True
            elif self._state == HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                allowed = True
            else:
                allowed = False
        self._fire(fired)
        return allowed

    def retry_after(self) -> float:
        """Return how long a refused caller should wait before calling `allow` again."""
        with self._lock:
            if self._state == OPEN and self._opened_at is not None:
                remaining = self._opened_at + self._settings.cooldown - self._clock()
                return max(remaining, 0.0)
            return 0.0 if self._state == CLOSED else PROBE_WAIT_SECONDS

    def record_success(self) -> None:
        """Record a call the server answered without a 429."""
        with self._lock:
            self._window.append(False)
            self._consecutive = 0
            fired = self._close() if self._state == HALF_OPEN else None
        self._fire(fired)

    def record_429(self) -> None:
        """Record a 429 (rate limited); may open the breaker."""
        with self._lock:
            self._window.append(True)
            self._consecutive += 1
            fired = None
            if self._state == HALF_OPEN or (self._state == CLOSED and self._should_trip()):
                fired = self._open()
        self._fire(fired)

    def record_error(self) -> None:
        """Record a failure that is not a 429 (5xx, timeout); frees a half-open probe slot."""
        with self._lock:
            self._window.append(False)
            if self._state == HALF_OPEN:
                self._probe_in_flight = False

    def error_rate(self) -> float:
        """Return the 429s in the window divided by the window size."""
        with self._lock:
            return self._rate()

    def snapshot(self) -> dict[str, object]:
        """Return the breaker's state for status output."""
        with self._lock:
            fired = self._expire_cooldown()
            snap = self._snapshot()
        self._fire(fired)
        return snap

    # -- internals (called with the lock held) ------------------------------------------

    def _rate(self) -> float:
        return sum(self._window) / self._settings.window

    def _should_trip(self) -> bool:
        return (
            self._rate() > self._settings.threshold
            or self._consecutive >= self._settings.consecutive
        )

    def _open(self) -> tuple[State, dict[str, object]]:
        if self._state != HALF_OPEN:
            self._trips += 1
        self._state = OPEN
        self._opened_at = self._clock()
        self._probe_in_flight = False
        return OPEN, self._snapshot()

    def _close(self) -> tuple[State, dict[str, object]]:
        self._state = CLOSED
        self._window.clear()
        self._consecutive = 0
        self._opened_at = None
        self._probe_in_flight = False
        return CLOSED, self._snapshot()

    def _expire_cooldown(self) -> tuple[State, dict[str, object]] | None:
        if self._state != OPEN or self._opened_at is None:
            return None
        if self._clock() - self._opened_at < self._settings.cooldown:
            return None
        self._state = HALF_OPEN
        self._probe_in_flight = False
        return HALF_OPEN, self._snapshot()

    def _snapshot(self) -> dict[str, object]:
        return {
            "state": self._state,
            "error_rate": round(self._rate(), 4),
            "consecutive": self._consecutive,
            "opened_at": self._opened_at,
            "trips": self._trips,
        }

    def _fire(self, fired: tuple[State, dict[str, object]] | None) -> None:
        if fired is not None and self._on_transition is not None:
            self._on_transition(*fired)


def concurrency_for(state: State, maximum: int) -> int:
    """Return how many calls should run in parallel in `state`: `maximum` when closed, else 1."""
    return maximum if state == CLOSED else 1
