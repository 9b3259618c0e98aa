"""Files that left the library: mark missing (through the hold), confirm, prune.

Also the unreadable files of a run: the ones that vanished are missing, the rest failed.

The decisions are `hold`'s (pure); this module reads what they need from the state DB,
re-checks the volume right before anything is written (an eject mid-run marks nothing), and
writes the outcome: rows marked missing or forgotten, the hold stored or cleared, a log line
for every change of the hold, a decision row for every confirmation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog

from objlibd.config import Config
from objlibd.engine import disk
from objlibd.engine import hold as holds
from objlibd.engine.filters import Filters
from objlibd.engine.hold import Decision, Hold
from objlibd.engine.summary import SyncSummary
from objlibd.engine.uploads import Unreadable
from objlibd.models import FileRecord, FileStatus, Problem
from objlibd.remote.base import RemoteStore
from objlibd.state import keys
from objlibd.state.dbtime import iso
from objlibd.state.store import StateStore

log = structlog.get_logger("objlibd.sync")


def limits_of(config: Config) -> holds.Limits:
    """Return the mass-missing limits of a config."""
    sync = config.sync
    return holds.Limits(
        files=sync.mass_missing_files,
        percent=sync.mass_missing_percent,
        min_files=sync.mass_missing_min_files,
    )


@dataclass(slots=True)
class MissingFiles:
    """Applies the hold's decisions to the state DB (and prunes)."""

    config: Config
    state: StateStore
    store: RemoteStore
    clock: Callable[[], float]
    require_available: Callable[[], object]  # raises VolumeUnavailableError
    filters: Filters

    def current_hold(self) -> Hold | None:
        """Return the hold that stands, if any."""
        return Hold.from_json(self.state.values.get_json(keys.HOLD))

    def step(
        self, gone: Collection[FileRecord], present: int, summary: SyncSummary, *, full: bool
    ) -> None:
        """Files believed present were not found: mark them, or hold them for a person.

        `present` is how many files were believed present before this run changed anything;
        `full` says whether the whole library was looked at (only then may a hold shrink).
        """
        absent = [r.path for r in gone if r.status is not FileStatus.MISSING]
        before = self.current_hold()
        if not absent and (before is None or not full):
            return
        now = iso(self.clock())
        on_view = holds.on_full if full else holds.on_batch
        decision = on_view(before, absent, present, limits_of(self.config), now)
        self._apply(decision, before, summary)

    def confirm(self, summary: SyncSummary, revision: int | None) -> None:
        """Apply the standing hold (files still absent only) after a person confirmed it."""
        self.require_available()
        before = self.current_hold()
        if before is None:
            return
        root = self.config.library.root
        _, absent = disk.stat_paths(root, self.filters, before.paths)
        decision = holds.on_confirm(before, absent, revision)
        if decision.event == "missing.confirmed":
            self.state.jobs.record_decision("confirm_missing", dict(decision.detail))
        self._apply(decision, before, summary)

    def _apply(self, decision: Decision, before: Hold | None, summary: SyncSummary) -> None:
        if decision.mark:
            self._mark(decision.mark, summary)
        if decision.hold != before:
            if decision.hold is None:
                self.state.values.delete_config(keys.HOLD)
            else:
                self.state.values.set_json(keys.HOLD, decision.hold.to_json())
        if decision.event is not None:
            calm = decision.event in ("missing.hold_cleared", "missing.confirmed")
            level = log.info if calm else log.warning
            level(decision.event, **decision.detail, **_hold_fields(decision.hold))
        if decision.event == "missing.hold_cleared":
            summary.hold_cleared = str(decision.detail["reason"])
        if decision.hold is not None:
            summary.held = len(decision.hold.paths)
            summary.hold_reason = decision.hold.reason

    def _mark(self, paths: Collection[str], summary: SyncSummary) -> None:
        self.require_available()  # re-check right before: an eject mid-run marks nothing
        records = self.state.files.records(paths).values()
        never_uploaded = [r.path for r in records if not r.remote_id and not r.orphaned_remote_id]
        to_mark = [r.path for r in records if r.remote_id or r.orphaned_remote_id]
        if never_uploaded:
            self.state.files.forget(never_uploaded)
            summary.forgotten += len(never_uploaded)
        summary.missing += self.state.files.mark_missing(to_mark, iso(self.clock()))

    def settle_unreadable(
        self, items: list[Unreadable], summary: SyncSummary, *, dry_run: bool
    ) -> list[str]:
        """Return the files that vanished (this path takes them); fail the unreadable."""
        if not items:
            return []
        root = self.config.library.root
        _, absent = disk.stat_paths(root, self.filters, [item.entry.path for item in items])
        vanished = []
        for item in items:
            path = item.entry.path
            if path in absent:
                vanished.append(path)
                continue
            summary.failures.append(Problem(path, item.reason))
            summary.failed += 1
            if not dry_run:
                self.state.files.record_failure(path, FileStatus.ERROR, item.reason)
        return vanished

    def prune(self, summary: SyncSummary) -> None:
        """Delete the documents of files missing longer than prune_after_days."""
        cutoff = iso(self.clock() - self.config.sync.prune_after_days * 86400)
        candidates = self.state.files.missing_before(cutoff)
        if not candidates:
            return
        self.require_available()
        held = set(hold.paths) if (hold := self.current_hold()) else set()
        root = self.config.library.root
        present, _ = disk.stat_paths(root, self.filters, [r.path for r in candidates])
        for record in candidates:
            if record.path in present.entries or record.path in held:
                continue  # it came back (the next reconcile restores it), or a person decides
            if summary.dry_run:
                summary.plan("prune", record.path)
                continue
            if record.remote_id:
                self.store.delete(record.remote_id)
            self.state.files.mark_deleted(record.path)
            summary.pruned += 1


def _hold_fields(hold: Hold | None) -> dict[str, object]:
    if hold is None:
        return {}
    return {"hold_reason": hold.reason, "count": len(hold.paths), "revision": hold.revision}
