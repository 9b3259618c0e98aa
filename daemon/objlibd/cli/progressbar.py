"""The terminal progress of a one-shot sync: a line per phase with rate and ETA, and the plan."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TextIO

from objlibd.engine import progress


class ProgressBar:
    """`objlibd sync`'s progress: one self-rewriting line per phase, and the estimate to plan by.

    On a terminal (`draw`) each phase (hash, upload) gets one line with its bar, count, rate
    and time left, rewritten in place and erased before the next phase draws (so a short
    line never shows the tail of a longer one). Drawn or not, the upload estimate at the
    store's quota ("312 files to upload, about 16 min at tier1") is printed once when a
    long upload phase begins, and, on a first sync, before hashing starts.
    """

    WIDTH = 30
    EVERY = 0.1  # seconds between two redraws of the line
    PLAN_AFTER = 60.0  # print the estimate when the uploads take at least this long

    def __init__(
        self,
        stream: TextIO,
        *,
        draw: bool = True,
        first_sync: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._draw = draw
        self.first_sync = first_sync
        self._clock = clock
        self._phase = progress.Phase()
        self._quota: tuple[float | None, int, str | None] = (None, 1, None)
        self._shown = False
        self._drawn_at = -1e9
        self._planned = False

    def use_quota(self, health: Mapping[str, object]) -> None:
        """Take the store's request quota from its health(): rpm, calls per file, tier."""
        limit = health.get("rate_limit")
        rpm = limit.get("rpm") if isinstance(limit, dict) else None
        per_file = health.get("calls_per_file")
        self._quota = (
            float(rpm) if isinstance(rpm, int | float) else None,
            per_file if isinstance(per_file, int) else 1,
            progress.quota_label(dict(health)),
        )

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self._clock()
        new = self._phase.update(phase, done, total, now)
        if new:
            self._plan(phase, total)
        last = done >= total
        if not self._draw or not (new or last or now - self._drawn_at >= self.EVERY):
            return
        self._drawn_at = now
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"{phase:>6} [{bar}] {done}/{total}"
        rate = progress.rate_text(self._phase.rate(now))
        left = self._phase.eta(now, rpm=self._quota[0], calls_per_file=self._quota[1])
        extras = [rate] if rate else []
        if left and not last:
            extras.append(f"{progress.duration_text(left)} left")
        if extras:
            line += "  " + ", ".join(extras)
        self._stream.write(f"\r{line}\x1b[K")  # erase what a longer line left behind
        self._stream.flush()
        self._shown = True

    def _plan(self, phase: str, total: int) -> None:
        """Print the upload estimate once: on a first sync before hashing, else as uploads begin."""
        if self._planned or total <= 0:
            return
        if phase == "hash" and not self.first_sync:
            return
        rpm, per_file, tier = self._quota
        seconds = progress.eta_seconds(total, rpm=rpm, calls_per_file=per_file)
        if phase == "upload" and (seconds or 0) < self.PLAN_AFTER and not self.first_sync:
            return
        self._planned = True
        text = progress.plan_text(total, seconds, tier=tier)
        if phase == "hash":
            text = f"first sync: {text}"
        erase = "\r\x1b[K" if self._shown else ""  # the estimate goes above the bar
        self._stream.write(f"{erase}objlibd: {text}\n")
        self._stream.flush()

    def end(self) -> None:
        """Finish the line, if one was drawn."""
        if self._shown:
            self._stream.write("\n")
