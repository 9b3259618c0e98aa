"""The mass-missing hold: when many files vanish at once, a person decides (pure, no I/O).

A disappearance is measured against the files *believed present before the change* (every
tracked file that is not already missing, deleted or skipped), never against rows that are
already gone. Above the limits nothing is marked missing; a hold records when, why, how
many and which paths, and waits for `objlibd missing --confirm`.

The lifecycle is a small state machine over three kinds of view:

| view | no hold | a hold stands |
|---|---|---|
| full reconcile (`on_full`) | over the limits → hold; else mark | over the limits → the hold becomes this view; else clear it and mark |
| incremental batch (`on_batch`) | over the limits → hold; else mark | new absences join it; nothing is marked, nothing leaves it |
| confirmation (`on_confirm`) | nothing | mark the held files still absent and clear it (only the hold that was shown) |

Only a full view sees the whole library, so only a full view (or a person) can shrink or
clear a hold; a batch sees a few paths and can only add to it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Limits:
    """[sync] mass_missing_files, mass_missing_percent, mass_missing_min_files."""

    files: int
    percent: float
    min_files: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A held mass disappearance. `revision` changes whenever its paths do."""

    since: str
    reason: str
    paths: tuple[str, ...]
    present_before: int
    revision: int = 1

    def to_json(self) -> dict[str, Any]:
        """Return the form stored in the state DB (library_config)."""
        return {
            "since": self.since,
            "reason": self.reason,
            "count": len(self.paths),
            "paths": list(self.paths),
            "present_before": self.present_before,
            "revision": self.revision,
        }

    @classmethod
    def from_json(cls, data: object) -> Hold | None:
        """Read a stored hold (older rows lack revision/present_before); None if there is none."""
        if not isinstance(data, Mapping) or not data.get("paths"):
            return None
        paths = tuple(sorted(str(p) for p in data["paths"]))
        return cls(
            since=str(data.get("since", "")),
            reason=str(data.get("reason", "")),
            paths=paths,
            present_before=int(data.get("present_before", 0) or 0),
            revision=int(data.get("revision", 1) or 1),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What a view means: the hold afterwards, what to mark missing now, and what to log."""

    hold: Hold | None
    mark: tuple[str, ...] = ()
    event: str | None = None  # the log event: missing.held, missing.hold_cleared, ...
    detail: dict[str, Any] = field(default_factory=dict)


def mass_reason(count: int, present: int, limits: Limits) -> str | None:
    """Return why marking `count` of `present` believed-present files needs a person."""
    if count > limits.files:
        return f"{count} files would be marked missing (limit {limits.files})"
    percent = 100.0 * count / max(present, 1)
    if count > limits.min_files and percent > limits.percent:
        return (
            f"{count} of {present} files ({percent:.0f} %) would be marked missing "
            f"(limit {limits.percent:g} %)"
        )
    return None


def on_full(
    hold: Hold | None, absent: Collection[str], present: int, limits: Limits, now: str
) -> Decision:
    """A full reconcile saw `absent` (believed present, not found) of `present` files."""
    paths = tuple(sorted(absent))
    reason = mass_reason(len(paths), present, limits)
    if reason is not None:
        if hold is None:
            return Decision(Hold(now, reason, paths, present), event="missing.held")
        if paths == hold.paths:
            return Decision(hold)
        # The whole library was looked at: this view is the truth, smaller or larger.
        since = hold.since if set(paths) & set(hold.paths) else now
        new = Hold(since, reason, paths, present, hold.revision + 1)
        return Decision(new, event="missing.hold_replaced", detail={"was": len(hold.paths)})
    if hold is None:
        return Decision(None, mark=paths)
    back = len(set(hold.paths) - set(paths))
    why = (
        f"{back} of {len(hold.paths)} held files are back"
        if back
        else "the absence is now within the limits"
    )
    detail = {"reason": why, "held": len(hold.paths), "back": back, "marked": len(paths)}
    return Decision(None, mark=paths, event="missing.hold_cleared", detail=detail)


def on_batch(
    hold: Hold | None, absent: Collection[str], present: int, limits: Limits, now: str
) -> Decision:
    """An incremental batch saw `absent` of the paths it looked at."""
    paths = tuple(sorted(absent))
    if hold is not None:
        joined = tuple(sorted(set(hold.paths) | set(paths)))
        if joined == hold.paths:
            return Decision(hold)
        grown = Hold(hold.since, hold.reason, joined, hold.present_before, hold.revision + 1)
        return Decision(
            grown, event="missing.hold_joined", detail={"added": len(joined) - len(hold.paths)}
        )
    if not paths:
        return Decision(None)
    reason = mass_reason(len(paths), present, limits)
    if reason is not None:
        return Decision(Hold(now, reason, paths, present), event="missing.held")
    return Decision(None, mark=paths)


def on_confirm(hold: Hold | None, still_absent: Collection[str], revision: int | None) -> Decision:
    """A person confirmed the hold at `revision` (None: whatever stands now)."""
    if hold is None:
        return Decision(None)
    if revision is not None and revision != hold.revision:
        stale = {"confirmed_revision": revision, "current_revision": hold.revision}
        return Decision(hold, event="missing.confirm_stale", detail=stale)
    marked = tuple(sorted(set(still_absent) & set(hold.paths)))
    detail: dict[str, Any] = {
        "reason": hold.reason,
        "count": len(marked),
        "back": len(hold.paths) - len(marked),
    }
    return Decision(None, mark=marked, event="missing.confirmed", detail=detail)
