"""The sync engine: make the store match the library, one file at a time, crash-exact.

Pipeline of a full run: availability → store identity → resume interrupted uploads and clean
recorded orphans → walk + diff → hash what may have changed → upload new, replace changed
upload-first → mark missing (re-checking availability, holding a mass disappearance) →
optional prune and orphan sweep → library marker → summary. `run_paths` is the same pipeline
over a set of touched paths, O(paths), for the daemon's batches.

Every file commits on its own, and the DB records the intent (`uploading` + content hash)
before any remote call, so a crash at any point is repaired on the next run by resuming the
checkpointed operation or adopting the document whose identity metadata matches.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from objlibd.config import Config, LibrarySettings
from objlibd.engine import disk, identity, progress, rebuild, scanner, volume
from objlibd.engine.changes import Diff, diff, diff_quiet
from objlibd.engine.classify import Classifier
from objlibd.engine.disk import WalkResult
from objlibd.engine.filters import Filters
from objlibd.engine.identity import StoreIdentity
from objlibd.engine.jobrecord import JobRecord
from objlibd.engine.missing import MissingFiles
from objlibd.engine.summary import SyncSummary
from objlibd.engine.uploads import ProgressReport, Upload, Uploads
from objlibd.errors import (
    ObjlibdError,
    VolumeUnavailableError,
)
from objlibd.models import FileStatus, VolumeState
from objlibd.remote.base import RemoteStore
from objlibd.state import keys
from objlibd.state.store import StateStore

log = structlog.get_logger("objlibd.sync")


def open_store_for(
    config: Config,
    state: StateStore,
    *,
    stop: threading.Event | None = None,
    remember: bool = True,
) -> RemoteStore:
    """Open the configured store, starting from the request pace learned for it (if any).

    The backend saves what it learns back into the state DB as it goes (`keys.PACE`),
    so a killed run keeps it too; `remember=False` (a read-only state) saves nothing.
    """
    from objlibd.remote import open_store

    def save(pace: dict[str, object]) -> None:
        state.values.set_json(keys.PACE, pace)

    learned = state.values.get_json(keys.PACE)
    learned = learned if isinstance(learned, dict) else None
    return open_store(config, stop=stop, learned_pace=learned, save_pace=save if remember else None)


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Flags of `objlibd sync`."""

    dry_run: bool = False
    force: bool = False
    prune_missing: bool = False
    cleanup_orphans: bool = False
    skip_enrichment: bool = False
    trigger: str = "manual"


class SyncEngine:
    """Runs syncs of one library into one store, writing the state DB."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        store: RemoteStore,
        *,
        clock: Callable[[], float] = time.time,
        stop: threading.Event | None = None,
        progress: ProgressReport | None = None,
    ) -> None:
        self.configured = config  # `config` follows the library if it is found elsewhere
        self.config = config
        self.state = state
        self.store = store
        self.clock = clock
        self.stop = stop or threading.Event()
        self.progress = progress
        self.filters = Filters.from_settings(config.library)
        self.uploads = Uploads(
            config, state, store, stop=self.stop, report=self._report, clock=clock,
            volume_present=lambda: self.probe().available,
        )  # fmt: skip
        self.classifier = Classifier(config, state, stop=self.stop, report=self._report)
        self.uploads.move_of = self._resumed_move
        self.missing = MissingFiles(
            config, state, store, clock, self.require_available, self.filters
        )
        self.identity = StoreIdentity(state, store)
        self.job = JobRecord(state)  # the running job's row, and its upload progress

    # -- checks ------------------------------------------------------------------------------

    def probe(self) -> VolumeState:
        """Return the library's availability right now (following it if found elsewhere)."""
        library = self.configured.library
        found = volume.probe(library, self.state.values.get_config(keys.LIBRARY_ID))
        if found.available:
            self._locate(volume.located(library, found))
        return found

    def _locate(self, library: LibrarySettings) -> None:
        """Read the library where it is now (a drive that mounted under another name)."""
        if library == self.config.library:
            return
        self.config = dataclasses.replace(self.config, library=library)
        self.uploads.config = self.classifier.config = self.missing.config = self.config
        log.info("library.located", root=str(library.root),
                 expected=str(self.configured.library.root))  # fmt: skip

    def require_available(self) -> VolumeState:
        """Probe, raising VolumeUnavailableError unless the library is available."""
        found = self.probe()
        if not found.available:
            raise VolumeUnavailableError(found.reason, hint=found.hint)
        return found

    def check_identity(self, *, connect: bool = True, create: bool = True) -> bool:
        """Abort when the configured store is not the one this DB synced into (see identity)."""
        return self.identity.check(self.config, connect=connect, create=create)

    # -- entry points ------------------------------------------------------------------------

    def run(self, options: SyncOptions) -> SyncSummary:
        """Run a full sync (a reconcile of the whole library)."""
        summary = SyncSummary(trigger=options.trigger, dry_run=options.dry_run)
        return self._as_job("sync", summary, lambda: self._full(options, summary))

    def run_paths(
        self, paths: Iterable[str], *, subtrees: Iterable[str] = (), trigger: str = "batch"
    ) -> SyncSummary:
        """Sync only `paths` (and reconcile `subtrees`, '' = all); cost O(paths)."""
        summary = SyncSummary(trigger=trigger)
        wanted, trees = set(paths), set(subtrees)
        return self._as_job("batch", summary, lambda: self._incremental(wanted, trees, summary))

    def cleanup_orphans(self, *, trigger: str = "manual", dry_run: bool = False) -> SyncSummary:
        """Delete recorded orphans, then any store document the DB does not reference."""
        summary = SyncSummary(trigger=trigger, dry_run=dry_run)

        def body() -> None:
            self.require_available()
            if not self.check_identity(create=not dry_run):
                return  # a dry run against a store that does not exist yet: nothing to sweep
            if not dry_run:
                self.uploads.recover(summary)
            self.uploads.sweep(summary)

        return self._as_job("orphan_cleanup", summary, body)

    def prune_missing(self, *, trigger: str = "manual", dry_run: bool = False) -> SyncSummary:
        """Delete the documents of files missing longer than prune_after_days."""
        summary = SyncSummary(trigger=trigger, dry_run=dry_run)

        def body() -> None:
            self.require_available()
            self.check_identity(create=not dry_run)
            self.missing.prune(summary)

        return self._as_job("prune", summary, body)

    def confirm_missing(self, revision: int | None = None) -> SyncSummary:
        """Apply a held mass-missing a person confirmed (at hold `revision`; None: as it is).

        Only the held files still absent are marked; a hold that changed since the person
        looked at it (another revision) stays, and says so.
        """
        summary = SyncSummary(trigger="confirm")
        return self._as_job(
            "confirm_missing", summary, lambda: self.missing.confirm(summary, revision)
        )

    def _as_job(self, kind: str, summary: SyncSummary, body: Callable[[], None]) -> SyncSummary:
        started = self.clock()
        self.job.start(kind, summary)
        try:
            body()
        except VolumeUnavailableError as err:
            self.job.close("skipped", summary, f"volume unavailable: {err.message}")
            raise
        except ObjlibdError as err:
            self.job.close("failed", summary, err.message)
            raise
        except BaseException as err:
            self.job.close("failed", summary, f"{type(err).__name__}: {err}")
            raise
        summary.duration_s = self.clock() - started
        summary.pace = self.pace_facts()
        self.job.close("failed" if summary.stopped else "completed", summary, summary.stopped)
        log.info(
            "batch.synced" if kind == "batch" else f"job.{kind}.finished",
            trigger=summary.trigger, dry_run=summary.dry_run, ms=round(summary.duration_s * 1000, 1),
            hold=summary.hold_reason, **summary.counts(),
        )  # fmt: skip
        return summary

    # -- pipelines ---------------------------------------------------------------------------

    def _full(self, options: SyncOptions, summary: SyncSummary) -> None:
        self.require_available()
        self.check_identity(connect=not options.dry_run)
        if not options.dry_run and rebuild.pending(self.state):
            rebuild.adopt(self.config, self.state, self.store, summary)  # a damaged DB's new start
        if not options.dry_run:
            self.uploads.recover(summary)
        cached = None if options.force else self.state.walk.cached_walk()
        walked = scanner.walk(self.config.library.root, self.filters)
        index = None
        if cached is not None and walked.folders == cached.folders:
            # The settled files were exactly the cached walk and nothing changed on either
            # side: the per-file index (the reconcile's biggest read) can stay on disk.
            changes = diff_quiet(walked.count, cached.unsettled)
        else:
            index = self.state.walk.index()
            changes = diff(walked.entries, index, force=options.force)
        log.debug("reconcile.diffed", files=walked.count, walk_cache=index is None)
        self._apply(changes, walked, options, summary, full=True)
        finished = not options.dry_run and not summary.stopped
        if finished:
            # Before the sweep: the sweep refuses to run for a DB that never marked its
            # library, and this run may be the first to finish.
            identity.mark_library(self.config, self.state, summary)
        if options.prune_missing:
            self.missing.prune(summary)
        if options.cleanup_orphans and (not options.dry_run or self.check_identity(create=False)):
            self.uploads.sweep(summary)  # a dry run sweeps only a store that exists
        if finished and index is not None and index.generation is not None and changes.exact:
            self.state.walk.save_walk(walked.folders, index.generation)  # no-op if rows changed
        if (
            summary.uploaded
            or summary.replaced
            or summary.moved
            or summary.adopted
            or summary.restored
        ):
            summary.duplicates = self.state.files.duplicates()  # content only changes with these

    def _incremental(self, paths: set[str], subtrees: set[str], summary: SyncSummary) -> None:
        self.require_available()
        self.check_identity()
        root = self.config.library.root
        walked, _absent = disk.stat_paths(root, self.filters, paths)
        hold = self.missing.current_hold()
        back = hold is not None and not walked.entries.keys().isdisjoint(hold.paths)
        if "" in subtrees or back or rebuild.pending(self.state):  # a rebuilt DB adopts first
            # Held files are back (or a whole reconcile was asked for): only a full view may
            # clear or shrink a hold, and a quiet one costs about one stat walk.
            self._full(SyncOptions(trigger=summary.trigger), summary)
            return
        entries = dict(walked.entries)
        known = self.state.walk.index(paths)
        for tree in sorted(subtrees):
            sub = scanner.walk(root, self.filters, tree)
            entries.update(sub.entries)
            walked.problems.extend(sub.problems)
            walked.unreadable_dirs.extend(sub.unreadable_dirs)
            known.update(self.state.walk.index_under(tree))
        changes = diff(entries, known)  # known holds only what was looked at
        self._apply(changes, walked, SyncOptions(), summary, full=False)

    def _apply(
        self,
        changes: Diff,
        walked: WalkResult,
        options: SyncOptions,
        summary: SyncSummary,
        *,
        full: bool,
    ) -> None:
        # The hold's arithmetic counts the files believed present before this run's changes.
        present = self.state.files.count_present()
        reading = self.config.library  # where this run reads the library (see below)
        summary.problems.extend(walked.problems)
        summary.unchanged += changes.unchanged
        uploads = self.classifier.classify(changes, options, summary)
        troubled = {problem.path for problem in walked.problems}
        gone_paths = [p for p in changes.missing if walked.covers(p) and p not in troubled]
        # Moves: their old paths never count as gone, whether or not the upload succeeds
        # (a failed move keeps the old document until it does).
        uploads, moved = self.classifier.moves(gone_paths, uploads, batch=not full)
        gone_paths = [path for path in gone_paths if path not in moved]
        if options.dry_run:
            for item in uploads:
                kind = "move" if item.moved_from else "replace" if item.old else "upload"
                summary.plan(kind, item.entry.path)
        else:
            self.uploads.run(uploads, summary, skip_enrichment=options.skip_enrichment)
        unreadable = list(self.classifier.unreadable)
        lost = False
        if not options.dry_run:
            unreadable += self.uploads.unreadable
            lost = self.uploads.volume_lost
        if gone_paths or unreadable or walked.problems or lost:
            # Anything that looks like an absence or a read failure is believed only while the
            # volume is still there: a yanked drive parks the whole batch, records nothing.
            self.require_available()
        if unreadable and self.config.library != reading:
            # The library is now read elsewhere (its drive found beside the mount point): a
            # read failure at the old place says nothing about the file. The next run retries.
            log.info("library.moved_mid_run", root=str(self.config.library.root),
                     left_for_next_run=len(unreadable))  # fmt: skip
            unreadable = []
        gone_paths += self.missing.settle_unreadable(unreadable, summary, dry_run=options.dry_run)
        gone = list(self.state.files.records(gone_paths).values())
        if options.dry_run:
            for record in gone:
                if record.status is not FileStatus.MISSING:
                    summary.plan("mark missing", record.path)
            return
        if not summary.stopped:
            self.missing.step(gone, present, summary, full=full)

    def _resumed_move(self, item: Upload) -> Upload:
        """Mark an upload `recover` completed as a move if its content left another path."""
        found = self.classifier.move_for(item)
        if found.moved_from is not None:
            self.require_available()  # an absence is believed only while the drive is there
        return found

    # -- progress and the request pace ------------------------------------------------------------------------

    def pace_facts(self, health: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Return the store's request pace and the ETA of pending uploads (`progress.pace_facts`).

        None for a store without a pace (the local one). `health` saves asking the store again.
        """
        found = health if health is not None else self.store.health()
        return progress.pace_facts(found, self.job.pending_uploads)

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)
        if phase == "upload":
            self.job.uploaded(done, total)  # the jobs row, and what `pace_facts` counts
