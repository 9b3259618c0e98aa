"""The adaptive pace of quota-bearing calls: AIMD, as TCP does. Pure: the clock is injected.

Gemini's request quotas are not documented (the tiers are a guess), so the pace finds the
real one instead of trusting the guess:

* **Start** at the pace learned for this store (the caller persists `learned()` and hands it
  back), or without one at the configured tier / rpm. A pace learned from another starting
  point (the person changed the tier since) is not used: the config wins.
* **Slow start**: at the end of every step (`STEP_SECONDS`) in which the pace was the limit
  (callers queued for slots, and the service took at least half of what the pace allowed
  lately) and no quota 429 came, the pace doubles. A pace that is not the limit does not
  grow: it stays a measured number.
* **Cut**: a quota 429 halves what the service took in the last minute (TCP halves the
  flight, not a window that ran ahead of it), and `limit` keeps the halved value (TCP's
  ssthresh); with nothing to go by (the window still held an earlier run's calls) it halves
  the pace and learns no limit. Either way every caller is held until the server's
  RetryInfo delay has passed; the slots already handed out are dropped and their holders
  ask again. A call sent before the cut that comes back refused is absorbed without a second
  cut, and so is any refusal within a minute of a cut while calls still get through.
* **Additive increase**: once a limit is known, the pace grows back to it by doubling, and
  past it by `limit * INCREASE_FRACTION` per step used. A minute past the limit without a
  refusal, the limit is stale (a bad hour, a raised quota): slow start probes again.
* Never below `MIN_RPM`, never above the ceiling a person set. At the floor a fresh quota 429
  is not absorbed (`refused` returns False): the circuit breaker, the backstop for a service
  that keeps refusing, gets it.

The quota 429s the pace absorbs are counted here, apart from the breaker's overload signal,
so a well-paced run never trips the breaker. Waiting is the caller's: `reserve` returns how
long, and `valid` says whether the slot still stands after the wait.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from objlibd.remote.ratelimit import RateLimiter

MIN_RPM = 1.0
STEP_SECONDS = 5.0
USED_FRACTION = 0.5
INCREASE_FRACTION = 0.125
MINUTE = 60.0
CUT_EVERY_SECONDS = 60.0
OLDEST_SLACK = 1.0  # RetryInfo's rounding
PROBE_AFTER_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """A slot: wait `wait` seconds, then send (if it is still `valid`)."""

    wait: float
    generation: int  # cuts made when the slot was handed out
    epoch: int  # holds made when the slot was handed out


class Pace:
    """AIMD pace of quota-bearing calls; thread-safe (see the module docstring)."""

    def __init__(
        self,
        start_rpm: float,
        clock: Callable[[], float],
        *,
        max_rpm: float = 0.0,
        learned: Mapping[str, object] | None = None,
    ) -> None:
        if start_rpm <= 0:
            raise ValueError(f"the starting pace must be greater than 0, got {start_rpm}")
        self.start_rpm = float(start_rpm)
        self.max_rpm = float(max_rpm) if max_rpm > 0 else None
        self.floor = min(MIN_RPM, self.start_rpm)
        self._clock = clock
        self._lock = threading.Lock()
        rpm, self._limit, self.source = self._initial(learned)
        self._rpm = self._clamp(rpm)
        self._limiter = RateLimiter(self._rpm, clock)
        self._generation = 0
        self._epoch = 0
        self._step_end: float | None = None
        self._queued = False  # a caller waited for its slot in this step
        self._quota_429s = 0
        self._cuts = 0
        self._calls = 0
        self._waited = 0.0
        self._first: float | None = None  # when the first slot was handed out
        self._last_cut: float | None = None
        self._last_refusal: float | None = None
        self._accepted_since_cut = 0
        self._accepted: deque[float] = deque()  # successes in the last minute
        self.version = 0  # bumped whenever the pace changes: time to persist `learned()`

    def _initial(self, learned: Mapping[str, object] | None) -> tuple[float, float | None, str]:
        if learned is None or _number(learned.get("start_rpm")) != self.start_rpm:
            return self.start_rpm, None, "configured"
        rpm, limit = _number(learned.get("rpm")), _number(learned.get("limit"))
        if rpm is None or rpm <= 0:
            return self.start_rpm, None, "configured"
        return rpm, (limit if limit is not None and limit > 0 else None), "learned"

    @property
    def rpm(self) -> float:
        """Return the current pace in requests per minute."""
        with self._lock:
            return self._rpm

    # -- the calls ------------------------------------------------------------------------

    def reserve(self) -> Ticket:
        """Hand out the next slot; the caller waits `ticket.wait`, then checks `valid`."""
        with self._lock:
            now = self._clock()
            self._roll(now)
            if self._first is None:
                self._first = now
            wait = self._limiter.reserve()
            self._waited += wait
            self._queued = self._queued or wait > 0
            return Ticket(wait, self._generation, self._epoch)

    def valid(self, ticket: Ticket) -> bool:
        """Return False if a hold came after the slot was handed out (ask for another)."""
        with self._lock:
            return ticket.epoch == self._epoch

    def succeeded(self, ticket: Ticket) -> None:
        """Record a quota-bearing call the service accepted."""
        del ticket  # every success counts, whichever generation sent it
        with self._lock:
            now = self._clock()
            self._roll(now)
            self._calls += 1
            self._accepted_since_cut += 1
            self._accepted.append(now)
            self._forget_before(now - MINUTE)

    def refused(self, ticket: Ticket, retry_delay: float | None) -> bool:
        """Record a quota 429; return True if the pace absorbed it (slowed or already had).

        False only at the floor, for a call sent at the current pace: the service refuses
        even the slowest pace, which is the breaker's business.
        """
        with self._lock:
            now = self._clock()
            self._roll(now)
            fresh = ticket.generation == self._generation and self._may_cut(now)
            absorbed = not (fresh and self._rpm <= self.floor)
            if absorbed:
                self._quota_429s += 1
                if fresh:
                    self._cut(now, retry_delay)
            self._hold(now, retry_delay)
            return absorbed

    # -- decisions (lock held) --------------------------------------------------------------

    def _cut(self, now: float, retry_delay: float | None) -> None:
        measured = self._measured(now, retry_delay)
        if measured is None:  # nothing to go by: halve the pace, keep the limit known so far
            self._set(max(self.floor, self._rpm / 2))
        else:
            self._limit = max(self.floor, min(self._rpm, measured) / 2)
            self._set(self._limit)
        self._generation += 1
        self._cuts += 1
        self._last_cut, self._accepted_since_cut = now, 0

    def _may_cut(self, now: float) -> bool:
        """One cut per minute, unless nothing got through since the last one.

        A sliding-window quota that was overrun stays full for up to a minute whatever the
        pace does now (slots free as the old calls age out): refusals between accepted
        calls then say nothing new. A service that accepts nothing at all since the last
        cut is refusing the pace itself: cut again.
        """
        if self._last_cut is None or self._accepted_since_cut == 0:
            return True
        return now - self._last_cut >= CUT_EVERY_SECONDS

    def _measured(self, now: float, retry_delay: float | None) -> float | None:
        """Return how many calls the service took in the last minute, if that is its quota.

        The window is full when it refuses: its count is the quota, provided every call in
        it is this pace's. That holds once the pace has run a minute, or sooner when the
        call about to free a slot (RetryInfo says when) came after the pace's first: a
        window still holding an earlier run's calls says nothing about the quota (None).
        """
        self._forget_before(now - MINUTE)
        if self._first is None or not self._accepted:
            return None
        if now - self._first >= MINUTE:
            return float(len(self._accepted))
        if retry_delay is None:
            return None
        oldest = now + retry_delay - MINUTE  # when the call that frees the next slot came in
        return float(len(self._accepted)) if oldest >= self._first - OLDEST_SLACK else None

    def _forget_before(self, moment: float) -> None:
        while self._accepted and self._accepted[0] <= moment:
            self._accepted.popleft()

    def _hold(self, now: float, retry_delay: float | None) -> None:
        delay = retry_delay if retry_delay is not None else self._limiter.interval
        until = now + max(delay, 0.0)
        self._epoch += 1
        self._limiter.restart_at(until)
        self._step_end, self._queued = until + STEP_SECONDS, False
        self._last_refusal = now

    def _roll(self, now: float) -> None:
        """Close the step that ended (growing the pace if it was the limit)."""
        if self._step_end is None:
            self._step_end = now + STEP_SECONDS
            return
        if now < self._step_end:
            return
        if (self._queued or self._limiter.backlog() > 0) and self._busy(now):
            self._grow(now)
        self._queued = False
        following = self._step_end + STEP_SECONDS
        self._step_end = following if now < following else now + STEP_SECONDS

    def _busy(self, now: float) -> bool:
        """Return True if the service took at least half what the pace allowed lately.

        Lately: the last step, or two intervals of the pace when those are longer (at a
        few requests a minute a step may hold no call at all).
        """
        span = max(STEP_SECONDS, 2 * MINUTE / self._rpm)
        since, taken = now - span, 0
        for moment in reversed(self._accepted):
            if moment <= since:
                break
            taken += 1
        return taken >= USED_FRACTION * self._rpm * span / MINUTE

    def _grow(self, now: float) -> None:
        if self._limit is not None and self._rpm >= self._limit:
            quiet_since = self._last_refusal if self._last_refusal is not None else self._first
            if quiet_since is not None and now - quiet_since >= PROBE_AFTER_SECONDS:
                self._limit = None  # a minute over the limit without a refusal: probe again
        if self._limit is None:
            self._set(self._rpm * 2)
        elif self._rpm < self._limit:
            self._set(min(self._rpm * 2, self._limit))
        else:
            self._set(self._rpm + self._limit * INCREASE_FRACTION)

    def _set(self, rpm: float) -> None:
        rpm = self._clamp(rpm)
        if rpm != self._rpm:
            self._rpm = rpm
            self._limiter.retune(rpm)
            self.version += 1

    def _clamp(self, rpm: float) -> float:
        rpm = max(rpm, self.floor)
        return min(rpm, self.max_rpm) if self.max_rpm is not None else rpm

    # -- what it knows ------------------------------------------------------------------------

    def learned(self) -> dict[str, object]:
        """Return what to persist for the next run (JSON-ready)."""
        with self._lock:
            return {
                "rpm": round(self._rpm, 3),
                "limit": None if self._limit is None else round(self._limit, 3),
                "start_rpm": self.start_rpm,
                "quota_429s": self._quota_429s,
            }

    def snapshot(self) -> dict[str, object]:
        """Return the pace's numbers for status output."""
        with self._lock:
            return {
                "rpm": round(self._rpm, 1),
                "source": self.source,
                "limit": None if self._limit is None else round(self._limit, 1),
                "ceiling": self.max_rpm,
                "quota_429s": self._quota_429s,
                "cuts": self._cuts,
                "calls": self._calls,
                "waited_s": round(self._waited, 1),
            }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
