"""Which changed files to upload: hash only what may have changed, then decide.

A file the diff calls new or possibly changed is hashed; its hash against the record's
`upload_hash` (what the store's document holds) decides: same content → keep (refresh size
and mtime, or restore a missing file); different → upload (replacing the old document,
upload-first); over max_file_mb → skipped, and any old document retired as an orphan.
Then `moves` marks the uploads that are moves: content that disappeared from one path and
arrived at another (`moves.pair` decides).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection
from typing import TYPE_CHECKING

from objlibd.config import Config
from objlibd.engine import disk, moves
from objlibd.engine.changes import Diff
from objlibd.engine.filters import Filters
from objlibd.engine.summary import SyncSummary
from objlibd.engine.uploads import ProgressReport, Unreadable, Upload
from objlibd.models import DiskEntry, FileRecord, FileStatus, Problem
from objlibd.remote import enrichment
from objlibd.state.store import StateStore

if TYPE_CHECKING:
    from objlibd.engine.sync import SyncOptions


class Classifier:
    """Turns a diff into uploads, recording the files that need none."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        *,
        stop: threading.Event,
        report: ProgressReport,
    ) -> None:
        self.config = config
        self.state = state
        self.filters = Filters.from_settings(config.library)
        self.stop = stop
        self._report = report
        self.unreadable: list[Unreadable] = []  # of the last classify; the engine settles them

    def classify(self, changes: Diff, options: SyncOptions, summary: SyncSummary) -> list[Upload]:
        """Return the uploads `changes` need; record what is kept, skipped or unreadable."""
        limit = int(self.config.library.max_file_mb * 1_000_000)  # MB as the service counts
        version = enrichment.enrichment_version(
            self.config.enrichment.rules, skip=options.skip_enrichment
        )
        candidates: list[tuple[DiskEntry, FileRecord | None]] = [(e, None) for e in changes.new]
        records = self.state.files.records(entry.path for entry in changes.check)
        candidates.extend((entry, records.get(entry.path)) for entry in changes.check)
        uploads: list[Upload] = []
        self.unreadable = []
        total = len(candidates)
        for done, (entry, record) in enumerate(candidates, 1):
            if self.stop.is_set():
                summary.stopped = "stop requested"
                break
            self._report("hash", done, total)
            if entry.size > limit:
                self._skip_large(entry, record, limit, options, summary)
                continue
            digest = self._hash(entry, record, options, summary)
            if digest is None:
                continue
            upload = self._decide(
                entry, record, digest, version=version, options=options, summary=summary
            )
            if upload is not None:
                uploads.append(upload)
        return uploads

    def moves(
        self, gone_paths: Collection[str], uploads: list[Upload], *, batch: bool = False
    ) -> tuple[list[Upload], set[str]]:
        """Mark the uploads that are moves (`moves.pair`); return them and the old paths.

        The disappeared side is `gone_paths`, what this view found gone. A `batch` sees only
        some paths, so it also asks the DB which other files hold an uploaded content (one
        indexed lookup) and keeps those now absent from the disk: a move whose old path was
        not in the batch, or was marked missing or held by an earlier one.
        """
        if not uploads:
            return uploads, set()
        records = self.state.files.records(gone_paths)
        if batch:
            records.update(self._absent_elsewhere(uploads, records))
        return self._pair(records, uploads)

    def move_for(self, item: Upload) -> Upload:
        """Mark one upload as a move if its content left another path (checked on disk)."""
        (marked,), _ = self._pair(self._absent_elsewhere([item], {}), [item])
        return marked

    def _pair(
        self, records: dict[str, FileRecord], uploads: list[Upload]
    ) -> tuple[list[Upload], set[str]]:
        gone = [moves.Gone(r.path, r.size or 0, sha, kept=r.remote_id is not None)
                for r in records.values() if (sha := moves.source_hash(r)) is not None]  # fmt: skip
        arrived = {item.entry.path: item for item in uploads}
        found = moves.pair(gone, [item.entry for item in uploads],
                           lambda entry: arrived[entry.path].sha256)  # fmt: skip
        if not found:
            return uploads, set()
        source = {move.new: records[move.old] for move in found}
        marked = [
            dataclasses.replace(item, moved_from=old.path, moved_doc=old.remote_id)
            if (old := source.get(item.entry.path)) is not None
            else item
            for item in uploads
        ]
        return marked, {move.old for move in found}

    def _absent_elsewhere(
        self, uploads: list[Upload], seen: Collection[str]
    ) -> dict[str, FileRecord]:
        """Return the other files holding these uploads' contents that are absent on disk."""
        arriving = {item.entry.path for item in uploads}
        candidates = {
            r.path: r
            for r in self.state.files.with_contents(item.sha256 for item in uploads)
            if r.path not in arriving and r.path not in seen
        }
        if not candidates:
            return {}
        _, absent = disk.stat_paths(self.config.library.root, self.filters, candidates)
        return {path: record for path, record in candidates.items() if path in absent}

    def _hash(
        self,
        entry: DiskEntry,
        record: FileRecord | None,
        options: SyncOptions,
        summary: SyncSummary,
    ) -> str | None:
        try:
            digest = disk.sha256_file(self.config.library.root / entry.path)
        except OSError as err:
            # Vanished or unreadable between walk and hash: nothing is recorded until the
            # engine has re-probed the volume (a yanked drive is not a failed file).
            gone = isinstance(err, FileNotFoundError | NotADirectoryError)
            self.unreadable.append(Unreadable(entry, f"cannot read: {err.strerror or err}", gone))
            return None
        summary.hashed += 1
        return digest

    def _decide(
        self,
        entry: DiskEntry,
        record: FileRecord | None,
        digest: str,
        *,
        version: str,
        options: SyncOptions,
        summary: SyncSummary,
    ) -> Upload | None:
        live = record is not None and record.status is not FileStatus.DELETED
        old = record.remote_id if live and record is not None else None
        # Compare with upload_hash (what the store's document holds), not content_hash: an
        # interrupted upload has already recorded the new content_hash next to the old doc.
        if record is not None and old and record.upload_hash == digest:
            stale_rules = options.force and record.enrichment_version != version
            if not stale_rules:
                self._keep(entry, record, summary, dry_run=options.dry_run)
                return None
        return Upload(entry, digest, old, version)

    def _keep(
        self, entry: DiskEntry, record: FileRecord, summary: SyncSummary, *, dry_run: bool
    ) -> None:
        if record.status is FileStatus.UPLOADED:
            summary.unchanged += 1
        else:
            summary.restored += 1
        if not dry_run:
            self.state.files.record_stat(entry.path, entry.size, entry.mtime_ns)
            if record.status is not FileStatus.UPLOADED:
                self.state.files.restore_present(entry.path, FileStatus.UPLOADED)

    def _skip_large(
        self,
        entry: DiskEntry,
        record: FileRecord | None,
        limit: int,
        options: SyncOptions,
        summary: SyncSummary,
    ) -> None:
        reason = f"larger than max_file_mb ({entry.size / 1e6:.1f} MB > {limit / 1e6:g} MB)"
        summary.skipped += 1
        summary.problems.append(Problem(entry.path, f"skipped: {reason}"))
        if options.dry_run:
            summary.plan("skip", entry.path)
            return
        self.state.files.record_skipped(entry.path, reason, entry.size, entry.mtime_ns)
        if record is not None and record.remote_id:
            # The stored document describes content that no longer exists; retire it.
            self.state.files.record_orphan(entry.path, record.remote_id)
