"""Sleep and wake: notice that the machine was suspended (pure; the clocks are passed in).

A laptop sleeps with the drive attached. While it sleeps nothing is watched, the drive may be
unplugged and plugged back, and scheduled jobs fall due. The daemon's monitor loop asks
`SleepWatch` on every tick; after a suspend it re-probes the volume, rebuilds the watch,
reconciles, and wakes the scheduler so missed jobs run once (misfire grace, coalesce).
"""

from __future__ import annotations

from dataclasses import dataclass

SLEPT_AFTER = 30.0  # the wall clock ran this much further than the monotonic one: a suspend


@dataclass
class SleepWatch:
    """Notices a suspend (pure: the clocks are passed in).

    The monotonic clock stops while the machine sleeps (macOS and Linux alike); the wall
    clock does not. Between two looks, the wall clock running ahead by `threshold` or more
    means the machine slept (or the clock was set forward: a reconcile is harmless then).
    """

    threshold: float = SLEPT_AFTER
    _last: tuple[float, float] | None = None

    def check(self, wall: float, monotonic: float) -> float | None:
        """Return how long the machine slept since the last look, None if it did not."""
        last, self._last = self._last, (wall, monotonic)
        if last is None:
            return None
        slept = (wall - last[0]) - (monotonic - last[1])
        return slept if slept >= self.threshold else None
