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
    from collections.abc import Mapping
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


def pace_facts(health: Mapping[str, Any], pending: int) -> dict[str, Any] | None:
    """Return a store's request pace, quota 429s absorbed and the ETA of `pending` uploads.

    `health` is the store's (`RemoteStore.health`); None for a store without a pace (local).
    """
    pace = health.get("pace")
    if not isinstance(pace, dict):
        return None
    rpm = float(pace.get("rpm") or 0.0)
    per_file = health.get("calls_per_file")
    per_file = per_file if isinstance(per_file, int) else 1
    eta = eta_seconds(pending, rpm=rpm, calls_per_file=per_file)
    return {
        "rpm": pace.get("rpm"), "source": pace.get("source"), "limit": pace.get("limit"),
        "quota_429s": pace.get("quota_429s", 0), "pending_uploads": pending,
        "eta_s": None if eta is None else round(eta, 1),
    }  # fmt: skip


def pace_text(pace: dict[str, Any]) -> str:
    """Return "300 rpm (learned), 4 quota 429s absorbed; 120 uploads left, about 2 min".

    `pace` is a store's request pace (`remote/pace.py`): rpm, where it came from, the quota
    429s it absorbed, and optionally the uploads left and their ETA at that pace.
    """
    rpm = pace.get("rpm")
    text = f"{rpm:g} rpm" if isinstance(rpm, int | float) else "? rpm"
    text += f" ({pace.get('source') or 'configured'}), "
    text += f"{pace.get('quota_429s') or 0} quota 429s absorbed"
    left, eta = pace.get("pending_uploads") or 0, pace.get("eta_s")
    if left and isinstance(eta, int | float):
        text += f"; {left} uploads left, {duration_text(eta)} at this pace"
    return text


def quota_label(remote: dict[str, Any]) -> str | None:
    """Return what an ETA at the quota is "at": the learned pace, else the configured tier."""
    pace = remote.get("pace") if isinstance(remote.get("pace"), dict) else None
    if pace and pace.get("source") == "learned" and isinstance(pace.get("rpm"), int | float):
        return f"the learned {pace['rpm']:g} rpm"
    tier = remote.get("rate_limit_tier")
    return tier if isinstance(tier, str) else None


def rate_text(rate: float | None) -> str:
    """Return "12.5 files/s" or "40 files/min" for slow phases ("" when unknown)."""
    if not rate:
        return ""
    if rate >= 1:
        return f"{rate:.1f} files/s" if rate < 10 else f"{rate:.0f} files/s"
    return f"{rate * 60:.0f} files/min" if rate * 60 >= 1 else f"{rate * 3600:.0f} files/h"


def of_heartbeat(beat: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """Return what `status` shows under way: the phase, uploads in flight, limiter waits, ETA."""
    live = beat or {}
    remote: dict[str, Any] = live["remote"] if isinstance(live.get("remote"), dict) else {}
    limit = remote.get("rate_limit") if isinstance(remote.get("rate_limit"), dict) else None
    rpm = float(limit["rpm"]) if limit and limit.get("rpm") else None
    per_file = int(remote.get("calls_per_file") or 1)
    phase = live.get("progress") if isinstance(live.get("progress"), dict) else None
    current, eta = None, None
    if phase:
        done, total = int(phase.get("done", 0)), int(phase.get("total", 0))
        elapsed = max(now - float(phase.get("started_epoch") or now), 0.0)
        uploading = phase.get("phase") == "upload"
        seconds = eta_seconds(
            total - done, rpm=rpm if uploading else None, calls_per_file=per_file, done=done,
            elapsed=elapsed,
        )  # fmt: skip
        current = {"phase": phase.get("phase"), "done": done, "total": total,
                   "rate_per_s": round(done / elapsed, 3) if done and elapsed > 0 else None,
                   "eta_s": None if seconds is None else round(seconds)}  # fmt: skip
        if uploading:
            eta = plan_text(total - done, seconds, tier=quota_label(remote) if rpm else None)
    return {
        "current": current, "eta": eta, "in_flight": remote.get("in_flight"),
        "rate_limit": None if limit is None else {
            "tier": remote.get("rate_limit_tier"), "rpm": limit.get("rpm"),
            "waiting": limit.get("waiting"), "waited_s": limit.get("waited_seconds"),
            "calls": limit.get("calls"),
        },
    }  # fmt: skip


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
