"""Progress people can plan with: rates, ETAs and the words for them (pure, no I/O).

A phase (hash, upload) is measured from its first report: the rate is what it did per second
so far, and the time left is the larger of two bounds: the rate so far, and, for a store with
a request quota, the quota itself (`rpm` requests a minute, `calls_per_file` of them per
upload: Gemini spends two, the upload and the import). Before any file is done only the quota
bound exists, which is what the estimate of a first sync prints before it starts.

`objlibd status` imports this on its hot path: standard builtins only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def eta_seconds(
    left: int,
    *,
    rpm: float | None = None,
    calls_per_file: int = 1,
    done: int = 0,
    elapsed: float = 0.0,
) -> float | None:
    """Return the seconds `left` more files take, or None when nothing bounds it yet."""
    if left <= 0:
        return 0.0
    bounds = []
    if rpm:
        bounds.append(left * max(calls_per_file, 1) * 60.0 / rpm)
    if done > 0 and elapsed > 0:
        bounds.append(left * elapsed / done)
    return max(bounds) if bounds else None


def duration_text(seconds: float | None) -> str:
    """Return "about 16 min", "about 2 h 5 min", "under a minute" (or "" when unknown)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"
    return f"about {hours // 24} days {hours % 24} h"


def plan_text(left: int, seconds: float | None, *, tier: str | None = None) -> str:
    """Return "312 files to upload, about 16 min at tier1" (no time when unknown)."""
    text = f"{left} file{'' if left == 1 else 's'} to upload"
    when = duration_text(seconds)
    if when:
        text += f", {when}"
        if tier:
            text += f" at {tier}"
    return text


def rate_text(rate: float | None) -> str:
    """Return "12.5 files/s" or "40 files/min" for slow phases ("" when unknown)."""
    if not rate:
        return ""
    if rate >= 1:
        return f"{rate:.1f} files/s" if rate < 10 else f"{rate:.0f} files/s"
    return f"{rate * 60:.0f} files/min" if rate * 60 >= 1 else f"{rate * 3600:.0f} files/h"


class Phase:
    """Measures one phase at a time from (phase, done, total) reports and a clock reading."""

    __slots__ = ("done", "name", "started", "total")

    def __init__(self) -> None:
        self.name = ""
        self.started = 0.0
        self.done = 0
        self.total = 0

    def update(self, phase: str, done: int, total: int, now: float) -> bool:
        """Record a report; return True when it began a new phase."""
        new = phase != self.name or done < self.done
        if new:
            self.name, self.started = phase, now
        self.done, self.total = done, total
        return new

    def rate(self, now: float) -> float | None:
        """Return files per second in this phase so far (None before a file is done)."""
        elapsed = now - self.started
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta(self, now: float, *, rpm: float | None = None, calls_per_file: int = 1) -> float | None:
        """Return the seconds this phase still needs (see the module doc)."""
        quota = rpm if self.name == "upload" else None
        return eta_seconds(
            self.total - self.done, rpm=quota, calls_per_file=calls_per_file, done=self.done,
            elapsed=now - self.started,
        )  # fmt: skip

    def as_dict(self, now: float) -> dict[str, Any]:
        """Return the phase for the heartbeat: what, how far, since when (epoch)."""
        return {"phase": self.name, "done": self.done, "total": self.total,
                "started_epoch": self.started, "rate_per_s": self.rate(now)}  # fmt: skip
