"""A paced client against a true request quota, on simulated time (no threads, no sleeps).

`simulate` runs `workers` upload loops through one `Pace`: each file is a quota-bearing call,
other calls (`latency`), a second quota-bearing call, more other calls; the service admits
at most `quota_rpm` quota-bearing calls in any sliding minute and refuses the rest with a
RetryInfo of the seconds until a slot frees, as the fake Gemini server does. Events run in
time order on a heap, so thousands of calls take milliseconds.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass

from objlibd.remote.pace import MINUTE, Pace

QUOTA_CALLS_PER_FILE = 2


@dataclass(frozen=True, slots=True)
class Run:
    """What a simulated sync did."""

    wall: float  # seconds until the last file finished
    quota_calls: int  # admitted
    refused: int  # quota 429s
    escaped: int  # refusals the pace did not absorb (they would reach the breaker)
    learned: dict[str, object]
    quota_bound: float  # quota calls / the true rate
    worker_bound: float  # what the workers alone allow

    @property
    def bound(self) -> float:
        return max(self.quota_bound, self.worker_bound)

    @property
    def ratio(self) -> float:
        return self.bound / self.wall

    @property
    def refused_per_100(self) -> float:
        return 100 * self.refused / max(self.quota_calls, 1)


class SlidingQuota:
    """At most `rpm` admissions in any sliding minute."""

    def __init__(self, rpm: int) -> None:
        self.rpm = rpm
        self.admitted: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """Admit a call at `now` (None), or return the seconds until a slot frees."""
        while self.admitted and self.admitted[0] <= now - MINUTE:
            self.admitted.popleft()
        if len(self.admitted) < self.rpm:
            self.admitted.append(now)
            return None
        return self.admitted[0] + MINUTE - now


def simulate(
    quota_rpm: int,
    files: int,
    *,
    start_rpm: float = 20.0,
    workers: int = 4,
    latency: float = 0.02,
    learned: Mapping[str, object] | None = None,
) -> Run:
    """Sync `files` files through a fresh pace (starting from `learned`, if given)."""
    now = [0.0]
    pace = Pace(start_rpm, lambda: now[0], learned=learned)
    quota = SlidingQuota(quota_rpm)
    left = [files]
    counts = {"admitted": 0, "refused": 0, "escaped": 0}

    def quota_call() -> Generator[float, None, None]:
        while True:
            ticket = pace.reserve()
            if ticket.wait > 0:
                yield now[0] + ticket.wait
            if not pace.valid(ticket):
                continue
            delay = quota.admit(now[0])
            yield now[0] + latency
            if delay is None:
                counts["admitted"] += 1
                pace.succeeded(ticket)
                return
            counts["refused"] += 1
            if not pace.refused(ticket, delay):
                counts["escaped"] += 1
                yield now[0] + delay  # the breaker and the retry policy would wait too

    def worker() -> Generator[float, None, None]:
        while left[0] > 0:
            left[0] -= 1
            yield from quota_call()  # the Files API upload
            yield now[0] + latency  # its chunk
            yield from quota_call()  # the import
            yield now[0] + 2 * latency  # the poll and the temporary file's deletion

    events: list[tuple[float, int, Generator[float, None, None]]] = []
    for number in range(workers):
        heapq.heappush(events, (0.0, number, worker()))
    sequence = workers
    while events:
        now[0], _, running = heapq.heappop(events)
        try:
            wake = next(running)
        except StopIteration:
            continue
        sequence += 1
        heapq.heappush(events, (wake, sequence, running))
    return Run(
        wall=now[0],
        quota_calls=counts["admitted"],
        refused=counts["refused"],
        escaped=counts["escaped"],
        learned=pace.learned(),
        quota_bound=files * QUOTA_CALLS_PER_FILE * MINUTE / quota_rpm,
        worker_bound=files * 5 * latency / workers,
    )
