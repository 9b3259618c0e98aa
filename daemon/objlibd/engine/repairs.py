"""What a run records and repairs: outcomes, failure memory, resumed imports, orphans.

`Repairs` is the half of the upload engine that writes results: it commits a document for a
file (deleting the one it replaces, upload-first), records refusals and transient failures
through the failure memory (`failures.py`), settles imports a previous process checkpointed
(`recover`), and deletes documents nothing references (`sweep`). `uploads.Uploads` builds the
run on top of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import structlog

from objlibd.config import Config
from objlibd.engine.failures import FailurePolicy
from objlibd.engine.storeindex import StoreIndex
from objlibd.engine.summary import SyncSummary
from objlibd.errors import RemoteError, RemoteUnavailableError
from objlibd.models import DiskEntry, FileRecord, FileStatus, Problem
from objlibd.remote import enrichment
from objlibd.remote.base import RemoteDoc, RemoteStore
from objlibd.remote.filetypes import include_warnings
from objlibd.state import keys
from objlibd.state.dbtime import iso
from objlibd.state.store import StateStore

log = structlog.get_logger("objlibd.sync")

ProgressReport = Callable[[str, int, int], None]  # (phase, done, total): progress of a run


@dataclass(frozen=True, slots=True)
class Upload:
    """One planned upload: new (`old` None) or a replacement of document `old`.

    `doubt`: an earlier import of this content may have landed (look it up first).
    `operation`: that import's checkpointed operation (resume it first). `file_id`: its
    temporary upload, dropped once settled. `retry`: a second try after a transient failure
    that surely imported nothing. `moved_from`: the path this content moved away from, whose
    document `moved_doc` (if any) is deleted once this upload is committed (`moves.py`).
    """

    entry: DiskEntry
    sha256: str
    old: str | None
    version: str
    retry: bool = False
    doubt: bool = False
    operation: str | None = None
    file_id: str | None = None
    moved_from: str | None = None
    moved_doc: str | None = None


class Repairs:
    """Records outcomes and repairs what interrupted runs left behind."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        store: RemoteStore,
        *,
        stop: threading.Event,
        report: ProgressReport,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.stop = stop
        self.report = report
        self.clock = clock
        self.policy = FailurePolicy.of(config.sync)
        self.index = StoreIndex(store)
        for warning in include_warnings(config.library, store.backend):
            log.warning("config.include_refused", warning=warning)
        self._records: dict[str, FileRecord] = {}
        self._failed_now: set[str] = set()  # refused while recovering: not tried again now
        # Marks an upload that is a move (the engine's pairing); `recover` asks it, because a
        # move interrupted after its import must still retire its old path with the commit.
        self.move_of: Callable[[Upload], Upload] = lambda item: item
        self._retiring: Executor | None = None  # where moves' old documents are deleted
        self._retired: list[Future[None]] = []
        self._doubted = False
        self._done = 0
        self._total = 0

    # -- outcomes ----------------------------------------------------------------------------

    def _commit(
        self, item: Upload, doc: RemoteDoc, summary: SyncSummary, *, counted: str = ""
    ) -> None:
        """Record `doc` as the file's document; delete the one it replaces (upload-first)."""
        path = item.entry.path
        self.state.files.record_uploaded(
            path,
            remote_id=doc.doc_id,
            remote_file_id=doc.file_id,
            upload_hash=item.sha256,
            enrichment_version=item.version,
            replaced_remote_id=item.old,
            moved_from=item.moved_from,
        )
        log.debug("file.uploaded", path=path, doc=doc.doc_id, replaced=item.old, how=counted,
                  moved_from=item.moved_from)  # fmt: skip
        replaced = bool(item.old and item.old != doc.doc_id)
        if replaced and item.old:
            self._delete_orphan(path, item.old, summary, count=False)
        if item.moved_from is not None:
            self._finish_move(item.moved_from, item.moved_doc, path)
        name = counted or (
            "moved" if item.moved_from else "replaced" if replaced else "uploaded"
        )  # a SyncSummary counter
        setattr(summary, name, getattr(summary, name) + 1)
        self._progress()

    def _finish_move(self, old: str, doc_id: str | None, new: str) -> None:
        """Delete the moved file's old document (already recorded as its row's orphan).

        During a run of uploads the delete goes to the run's retiring threads, so it
        overlaps the next uploads instead of holding up this (committing) thread.
        """
        log.info("file.moved", path=new, moved_from=old, doc=doc_id)
        if doc_id is None:
            return
        if self._retiring is None:
            self._delete_orphan(old, doc_id, None, count=False)
        else:
            self._retired.append(
                self._retiring.submit(self._delete_orphan, old, doc_id, None, count=False)
            )

    def _fail_permanent(self, item: Upload, message: str, summary: SyncSummary) -> None:
        """Count a refusal of this content; quarantine the file at the limit."""
        path = item.entry.path
        count, quarantine = self.policy.permanent(self._records.get(path), item.sha256)
        now = iso(self.clock())
        self.state.failures.record_permanent_failure(
            path, item.sha256, message, failures=count, quarantined_at=now if quarantine else None
        )
        self._fail(path, message, summary)
        if quarantine:
            log.warning("file.quarantined", path=path, failures=count, error=message,
                        hint=f"objlibd retry {path!r} once it is fixed")  # fmt: skip

    def _fail_transient(
        self, item: Upload, message: str, summary: SyncSummary, *, settled: bool = False
    ) -> None:
        """Back the file off; `settled` False keeps it `uploading` (looked up before retrying)."""
        path = item.entry.path
        record = self._records.get(path)
        in_a_row = (record.transient_failures if record is not None else 0) + 1
        until = iso(self.clock() + self.policy.backoff(in_a_row))
        self.state.failures.record_transient_failure(
            path, message, in_a_row=in_a_row, retry_after=until, settled=settled
        )
        self._fail(path, message, summary)
        log.info("file.backing_off", path=path, until=until, in_a_row=in_a_row)

    def _fail(self, path: str, message: str, summary: SyncSummary) -> None:
        summary.failed += 1
        summary.failures.append(Problem(path, message))
        log.warning("file.failed", path=path, error=message)
        self._progress()

    def _progress(self) -> None:
        if self._total:  # not while recovering, before a run's uploads
            self._done += 1
            self.report("upload", min(self._done, self._total), self._total)

    def _forget_file(self, file_id: str | None) -> None:
        if not file_id:
            return
        try:
            self.store.forget_file(file_id)
        except RemoteError as err:
            log.info("remote.file.delete_failed", file=file_id, error=err.message)

    def _delete(self, path: str, doc_id: str, why: str, summary: SyncSummary) -> None:
        try:
            self.store.delete(doc_id)
        except RemoteError as err:
            log.warning(f"remote.{why}.delete_failed", path=path, doc=doc_id, error=err.message)
            return
        self.index.forget(doc_id)
        summary.orphans_deleted += 1
        log.info(f"remote.{why}.deleted", path=path, doc=doc_id)

    # -- recovery and orphans ------------------------------------------------------------------

    def recover(self, summary: SyncSummary) -> None:
        """Settle imports a previous process checkpointed; delete recorded orphans."""
        for op in self.state.operations.pending_operations():
            record = self.state.files.record(op.path)
            try:
                outcome = self.store.resume(op.operation)
            except RemoteUnavailableError as err:
                log.info("remote.resume.later", path=op.path, operation=op.operation,
                         error=err.message)  # fmt: skip
                continue  # still pending: the file is not imported again meanwhile
            current = (
                record is not None
                and record.content_hash == op.content_hash
                and record.status is FileStatus.UPLOADING
            )
            self.state.operations.finish_operation(op.operation, succeeded=outcome.doc is not None)
            if outcome.doc is not None and current and record is not None:
                entry = DiskEntry(op.path, record.size or 0, record.mtime_ns or 0)
                version = enrichment.enrichment_version(self.config.enrichment.rules, skip=False)
                item = Upload(entry, op.content_hash or "", record.remote_id, version)
                # It may be the new path of a move: its old path is retired with the commit.
                self._commit(self.move_of(item), outcome.doc, summary, counted="resumed")
            elif outcome.doc is not None:
                self.store.delete(outcome.doc.doc_id)  # superseded: the file changed since
            elif outcome.error is not None and current and record is not None:
                entry = DiskEntry(op.path, record.size or 0, record.mtime_ns or 0)
                self._records[op.path] = record
                item = Upload(entry, op.content_hash or "", record.remote_id, "")
                self._fail_permanent(item, f"Gemini could not import {op.path}: {outcome.error}",
                                     summary)  # fmt: skip
                self._failed_now.add(op.path)
            if op.remote_file_id:
                self._forget_file(op.remote_file_id)
        self._delete_recorded_orphans(summary)

    def _delete_recorded_orphans(self, summary: SyncSummary) -> None:
        for record in self.state.files.with_orphans():
            if record.orphaned_remote_id:
                self._delete_orphan(record.path, record.orphaned_remote_id, summary, count=True)

    def _delete_orphan(
        self, path: str, doc_id: str, summary: SyncSummary | None, *, count: bool
    ) -> None:
        try:
            self.store.delete(doc_id)
        except RemoteError as err:
            log.warning("orphan.delete_failed", path=path, doc=doc_id, error=err.message)
            return
        self.state.files.clear_orphan(path, doc_id)
        self.index.forget(doc_id)
        if count and summary is not None:
            summary.orphans_deleted += 1

    def sweep(self, summary: SyncSummary) -> None:
        """Delete store documents nothing in the DB points at (after adopting matches)."""
        if (
            self.state.files.count_tracked() == 0
            or self.state.values.get_config(keys.LIBRARY_ID) is None
        ):
            log.warning("orphan.sweep_refused", reason="state DB tracks no synced library yet")
            return
        referenced = self.state.files.referenced_remote_ids()
        listed: set[str] = set()
        for doc in self.store.list_docs():
            listed.add(doc.doc_id)
            if doc.doc_id in referenced:
                continue
            record = self.state.files.record(doc.path) if doc.path else None
            if record is not None and record.status is FileStatus.UPLOADING:
                continue  # in doubt: the next run adopts it or finds it a duplicate
            if summary.dry_run:
                summary.plan("delete orphan", doc.doc_id)
                continue
            self.store.delete(doc.doc_id)
            summary.orphans_deleted += 1
        self._relink_lost(listed, summary)
        if not summary.dry_run and (left := self.store.sweep_leftovers()):
            log.info("store.leftovers_deleted", count=left)  # kill -9 remains, not documents

    def _relink_lost(self, listed: set[str], summary: SyncSummary) -> None:
        """Files whose document the store no longer has go back to pending (uploaded again).

        Someone deleted it in the console, or an adopted import failed later. An empty
        listing while files are uploaded is not believed (that looks like the wrong store).
        """
        uploaded = self.state.files.with_status(FileStatus.UPLOADED)
        if not listed and uploaded:
            log.warning("remote.listing_empty", uploaded=len(uploaded), action="nothing relinked")
            return
        for record in uploaded:
            if record.remote_id and record.remote_id not in listed:
                if summary.dry_run:
                    summary.plan("upload again", record.path)
                    continue
                self.state.files.clear_remote(record.path)
                summary.lost += 1
                log.warning("document.lost", path=record.path, doc=record.remote_id)
