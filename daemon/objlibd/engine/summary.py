"""What a sync run did, as counts plus the few paths worth showing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from objlibd.engine.names import printable
from objlibd.engine.progress import pace_text
from objlibd.models import Problem

COUNT_NAMES = (
    "uploaded", "replaced", "moved", "adopted", "resumed", "unchanged", "missing", "restored",
    "held", "forgotten", "skipped", "failed", "quarantined", "deferred", "pruned", "orphans_deleted",
    "lost",
)  # fmt: skip


@dataclass(slots=True)
class SyncSummary:
    """Counts and notes of one run; `exit_code` is 1 when any file failed or uploads stopped."""

    trigger: str = "manual"
    dry_run: bool = False
    uploaded: int = 0
    replaced: int = 0
    moved: int = 0  # uploaded under a new path, the old path's document deleted (moves.py)
    adopted: int = 0
    resumed: int = 0
    unchanged: int = 0
    missing: int = 0
    restored: int = 0
    held: int = 0
    forgotten: int = 0
    skipped: int = 0
    failed: int = 0
    quarantined: int = 0  # not tried: the store refused this content too often
    deferred: int = 0  # not tried: backing off after a transient failure
    pruned: int = 0
    orphans_deleted: int = 0
    lost: int = 0
    hashed: int = 0
    duration_s: float = 0.0
    hold_reason: str | None = None
    hold_cleared: str | None = None  # why a standing hold was lifted by this run's full view
    stopped: str | None = None
    store_full: str | None = None  # the store's quota message when it stopped the uploads
    problems: list[Problem] = field(default_factory=list)
    failures: list[Problem] = field(default_factory=list)
    planned: dict[str, list[str]] = field(default_factory=dict)
    duplicates: list[tuple[str, list[str]]] = field(default_factory=list)
    pace: dict[str, Any] | None = None  # the store's request pace (sync.SyncEngine.pace_facts)

    @property
    def exit_code(self) -> int:
        """Return 0 when everything that could sync did, else 1."""
        return 1 if self.failed or self.stopped else 0

    def counts(self) -> dict[str, int]:
        """Return the counters by name."""
        return {name: int(getattr(self, name)) for name in COUNT_NAMES}

    def plan(self, kind: str, path: str) -> None:
        """Note a path a dry run would act on."""
        self.planned.setdefault(kind, []).append(path)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view (stable keys)."""
        return {
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "hashed": self.hashed,
            "duration_s": round(self.duration_s, 3),
            "hold": self.hold_reason,
            "hold_cleared": self.hold_cleared,
            "stopped": self.stopped,
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
            "failures": [{"path": p.path, "reason": p.reason} for p in self.failures],
            "planned": self.planned,
            "duplicates": [{"sha256": digest, "paths": paths} for digest, paths in self.duplicates],
            "pace": self.pace,
            "exit_code": self.exit_code,
        }


def render(summary: SyncSummary, *, limit: int = 10) -> str:
    """Return the human summary table."""
    title = "dry run: nothing was changed" if summary.dry_run else "sync finished"
    lines = [f"objlibd: {title} in {summary.duration_s:.1f}s"]
    width = max(len(name) for name in COUNT_NAMES)
    for name, value in summary.counts().items():
        if value or name in ("uploaded", "unchanged", "failed"):
            lines.append(f"  {name.replace('_', ' '):<{width}}  {value}")
    for kind, paths in sorted(summary.planned.items()):
        lines.append(f"  would {kind}: {len(paths)}")
        lines.extend(f"    {printable(path)}" for path in paths[:limit])
        if len(paths) > limit:
            lines.append(f"    ... and {len(paths) - limit} more")
    lines += _hold_lines(summary)
    if summary.pace:
        lines.append(f"  pace: {pace_text(summary.pace)}")
    if summary.stopped:
        lines.append(f"  STOPPED: {summary.stopped}")
    if summary.quarantined or summary.deferred:
        lines.append(
            "    held back files: `objlibd failures` lists them, `objlibd retry` frees them"
        )
    if summary.duplicates:
        lines.append(f"  same content under several paths ({len(summary.duplicates)}):")
        for _, paths in summary.duplicates[:limit]:
            lines.append("    " + "  =  ".join(map(printable, paths)))
    for heading, items in (("failed", summary.failures), ("problems", summary.problems)):
        if items:
            lines.append(f"  {heading}:")
            lines.extend(f"    {printable(p.path)}: {p.reason}" for p in items[:limit])
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
    return "\n".join(lines)


def _hold_lines(summary: SyncSummary) -> list[str]:
    lines = []
    if summary.hold_reason:
        lines.append(f"  HELD: {summary.hold_reason}")
        lines.append("    nothing was marked missing; review with `objlibd missing`, then")
        lines.append("    confirm with `objlibd missing --confirm` if the files are really gone")
    if summary.hold_cleared:
        lines.append(f"  hold cleared: {summary.hold_cleared}")
    return lines
