"""Uploads, and the rules that keep them exact under faults: one document per file, always.

`Uploads.run` sends files to the store on `store.concurrency` threads while this thread
commits each result (one transaction per file). The DB records the intent before any remote
call (`begin_upload`), the store's checkpoint (operation name) right after it starts, and
the result once it returns.

The one rule: **never start a second import of a file while it is unknown whether an earlier
one landed.** An outcome in doubt (the answer was lost, the operation could not be polled to
its end) is settled before anything else: a checkpointed operation is resumed; otherwise the
file is looked up by identity (path, sha256) in the run's `StoreIndex` (one listing, made
again only when stale) and adopted if found. When the lookup itself fails the file is
deferred, recorded as `uploading` (in doubt) with a backoff, never uploaded blind. A run
that had any doubt ends by deleting unreferenced documents that duplicate a referenced
(path, sha256): a clean import (answered, polled to its end) cannot make a duplicate.

Failure memory (`failures.py`): refusals count per content hash and quarantine the file at
the limit; transient failures back the file off across runs.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import structlog

from objlibd.config import Config
from objlibd.engine.failures import Verdict, verdict
from objlibd.engine.repairs import ProgressReport, Repairs, Upload
from objlibd.engine.summary import SyncSummary
from objlibd.errors import (
    RemoteError,
    RemoteQuotaError,
    RemoteRejectedError,
    RemoteStoppedError,
    RemoteUnavailableError,
    RemoteUncertainError,
    RemoteUnsupportedError,
    SourceUnreadableError,
)
from objlibd.models import DiskEntry, FileStatus, Problem
from objlibd.remote import enrichment
from objlibd.remote.base import RemoteDoc, RemoteStore, UploadRequest
from objlibd.state import keys
from objlibd.state.dbtime import iso
from objlibd.state.store import StateStore

__all__ = ["ProgressReport", "Unreadable", "Upload", "Uploads"]

log = structlog.get_logger("objlibd.sync")

# Send, settle the doubts, send again... at most this many rounds; what is still in doubt
# then waits for a later run (backing off). A round of several files in which none settled is
# an outage, not bad luck: the run stops sending at once.
MAX_ROUNDS = 8
OUTAGE_FILES = 3


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A library file that could not be read mid-run; nothing is recorded for it yet."""

    entry: DiskEntry
    reason: str
    gone: bool  # it vanished (FileNotFoundError), rather than failing to read


class Uploads(Repairs):
    """Runs uploads for the engine under the one rule (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        store: RemoteStore,
        *,
        stop: threading.Event,
        report: ProgressReport,
        clock: Callable[[], float] = time.time,
        volume_present: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(config, state, store, stop=stop, report=report, clock=clock)
        self.volume_present = volume_present
        # Files this run could not read: the engine decides once it knows the volume is there
        # (vanished -> missing path, unreadable -> failed). Dropped when the next run starts.
        self.unreadable: list[Unreadable] = []
        self.volume_lost = False

    def run(
        self, uploads: list[Upload], summary: SyncSummary, *, skip_enrichment: bool = False
    ) -> None:
        """Upload `uploads` under the one rule and the failure memory; commit each."""
        self.unreadable, self.volume_lost = [], False
        if uploads:
            self._run(uploads, summary, skip_enrichment)
        summary.quarantined = self.state.failures.count_quarantined()  # held now, touched or not
        self._failed_now.clear()
        # What this run read dies with it: its records and its store listing (a full sync's
        # are the library's and the store's), not kept until the next run with uploads.
        self._records = {}
        self.index.invalidate()

    def _run(self, uploads: list[Upload], summary: SyncSummary, skip: bool) -> None:
        # Moves delete their old documents on these threads (no upload slot is taken).
        threads = max(1, int(self.store.concurrency) // 2)
        with ThreadPoolExecutor(threads, thread_name_prefix="objlibd-retire") as retiring:
            self._retiring, self._retired = retiring, []
            try:
                self._rounds(uploads, summary, skip)
            finally:
                self._retiring = None
        for future in self._retired:
            future.result()  # surface anything unexpected (a remote error is logged there)
        self._retired = []

    def _rounds(self, uploads: list[Upload], summary: SyncSummary, skip: bool) -> None:
        self.index.invalidate()  # a run sees the store anew
        self._doubted, self._done, self._total = False, 0, len(uploads)
        self.report("upload", 0, self._total)  # the phase begins: an ETA before the first file
        items = self._screen(uploads, summary)
        stalled = False
        for _ in range(MAX_ROUNDS):
            before = self._done
            items = self._look_up(self._resume(items, summary), summary)
            if not items or summary.stopped or (stalled and self._done == before):
                break  # done, stopping, or an outage (nothing settles, not even lookups)
            before, sent = self._done, len(items)
            items = self._send(items, summary, skip)
            if self.volume_lost:
                return  # the drive went away: the engine parks the run; nothing is recorded
            only_doubts = all(item.doubt or item.operation for item in items)
            stalled = only_doubts and self._done == before and sent >= OUTAGE_FILES
        if not summary.stopped:
            for item in items:  # still open after the last round: wait for a later run
                doubt = bool(item.doubt or item.operation)
                why = "its import is still in doubt" if doubt else "the store did not take it"
                self._fail_transient(item, why, summary, settled=not doubt)
        if self._doubted:
            self._dedupe(summary)
        self._total = 0

    def _screen(self, uploads: list[Upload], summary: SyncSummary) -> list[Upload]:
        """Apply the failure memory; mark what must be settled before any upload."""
        paths = [item.entry.path for item in uploads]
        self._records = self.state.files.records(paths)
        operations = {op.path: op for op in self.state.operations.pending_operations()}
        first_sync = self.state.values.get_config(keys.LIBRARY_ID) is None
        now = iso(self.clock())
        ready: list[Upload] = []
        for item in uploads:
            path = item.entry.path
            record = self._records.get(path)
            found = verdict(record, item.sha256, now)
            if found is Verdict.QUARANTINED:
                self.state.files.record_stat(path, item.entry.size, item.entry.mtime_ns)
                self._progress()
                continue
            if found is Verdict.WAITING or path in self._failed_now:
                summary.deferred += 1
                log.debug("file.backing_off", path=path, until=record and record.retry_after)
                self._progress()
                continue
            if record is not None and record.quarantined_at is not None:
                self.state.failures.release(path)  # new content: a new count
                log.info("file.released", path=path, reason="content changed")
            op = operations.get(path)
            if op is not None and op.content_hash != item.sha256:
                op = None  # an import of older content: the orphan sweep settles its document
            doubt = first_sync or (record is not None and record.status is FileStatus.UPLOADING)
            ready.append(dataclasses.replace(
                item, doubt=doubt, operation=op.operation if op else None,
                file_id=op.remote_file_id if op else None,
            ))  # fmt: skip
        return ready

    # -- settling doubts -------------------------------------------------------------------

    def _resume(self, items: list[Upload], summary: SyncSummary) -> list[Upload]:
        """Poll checkpointed operations to their end; the rest pass through."""
        out: list[Upload] = []
        for item in items:
            if item.operation is None:
                out.append(item)
                continue
            self._doubted = True
            path = item.entry.path
            try:
                outcome = self.store.resume(item.operation)
            except RemoteUnavailableError as err:
                self._fail_transient(item, f"its import cannot be checked: {err.message}", summary)
                continue
            self.state.operations.finish_operation(
                item.operation, succeeded=outcome.doc is not None
            )
            if outcome.doc is not None:
                self._commit(item, outcome.doc, summary)
                self._forget_file(item.file_id)
            elif outcome.error is not None:
                self._forget_file(item.file_id)
                self._fail_permanent(item, f"Gemini could not import {path}: {outcome.error}",
                                     summary)  # fmt: skip
            else:  # the store forgot the operation: whatever it made is found by identity
                out.append(dataclasses.replace(item, operation=None, doubt=True))
        return out

    def _look_up(self, items: list[Upload], summary: SyncSummary) -> list[Upload]:
        """Adopt what the store already holds for doubtful items; defer them if it cannot tell."""
        doubtful = [item for item in items if item.doubt]
        if not doubtful:
            return items
        try:
            found = self.index.unreferenced(self.state.files.referenced_remote_ids())
        except RemoteError as err:
            for item in doubtful:
                self._fail_transient(item, f"cannot look it up in the store: {err.message}",
                                     summary)  # fmt: skip
            return [item for item in items if not item.doubt]
        out: list[Upload] = []
        for item in items:
            if not item.doubt:
                out.append(item)
                continue
            matches = found.pop((item.entry.path, item.sha256), [])
            self._forget_file(item.file_id)
            if matches:
                self._adopt(item, matches, summary)
            else:
                out.append(dataclasses.replace(item, doubt=False, file_id=None))
        return out

    def _adopt(self, item: Upload, matches: list[RemoteDoc], summary: SyncSummary) -> None:
        keep, extra = matches[0], matches[1:]
        self.state.files.begin_upload(
            item.entry.path, item.sha256, item.entry.size, item.entry.mtime_ns
        )
        self._commit(item, keep, summary, counted="adopted")
        for doc in extra:  # duplicates from an earlier crash: exactly one document per file
            self._delete(item.entry.path, doc.doc_id, "duplicate", summary)

    def _dedupe(self, summary: SyncSummary) -> None:
        """Delete unreferenced documents that duplicate a referenced (path, sha256)."""
        try:
            docs = self.index.documents()
        except RemoteError as err:
            log.warning("remote.dedupe_skipped", error=err.message, action="the next run tries")
            return
        referenced = self.state.files.referenced_remote_ids()
        stray = [d for d in docs if d.doc_id not in referenced and d.path and d.sha256]
        records = self.state.files.records(d.path for d in stray if d.path)
        for doc in stray:
            record = records.get(doc.path or "")
            if record is not None and record.remote_id and record.upload_hash == doc.sha256:
                self._delete(doc.path or "", doc.doc_id, "duplicate", summary)

    # -- sending ---------------------------------------------------------------------------

    def _send(self, items: list[Upload], summary: SyncSummary, skip: bool) -> list[Upload]:
        """Upload `items` on the pool; return what the next round must settle or retry."""
        pending = list(reversed(items))
        later: list[Upload] = []
        workers = max(1, min(int(self.store.concurrency), len(items)))
        running: dict[Future[RemoteDoc], Upload] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="objlibd-upload") as pool:
            while pending or running:
                while pending and len(running) < workers and not summary.stopped:
                    if self.volume_lost:
                        break  # the drive went away: the engine parks the rest
                    if self.stop.is_set():
                        summary.stopped = "stop requested"
                        break
                    item = pending.pop()
                    if workers == 1:  # a daemon batch of one file: no thread hand-off
                        running[self._inline(item, skip)] = item
                    else:
                        running[pool.submit(self._upload_one, item, skip)] = item
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    again = self._settle(running.pop(future), future, summary)
                    if again is not None:
                        later.append(again)
        return later

    def _inline(self, item: Upload, skip: bool) -> Future[RemoteDoc]:
        """Run one upload on this thread, packaged like the pool's result."""
        future: Future[RemoteDoc] = Future()
        try:
            future.set_result(self._upload_one(item, skip))
        except Exception as err:  # noqa: BLE001 - re-raised by future.result() in _settle
            future.set_exception(err)
        return future

    def _upload_one(self, item: Upload, skip: bool) -> RemoteDoc:
        path = item.entry.path
        self.state.files.begin_upload(path, item.sha256, item.entry.size, item.entry.mtime_ns)
        request = UploadRequest(
            local_path=self.config.library.root / path,
            rel_path=path,
            sha256=item.sha256,
            size=item.entry.size,
            mime_type=enrichment.mime_type(path),
            metadata=enrichment.build_metadata(
                path, item.sha256, self.config.enrichment.rules, skip=skip
            ),
        )

        def checkpoint(operation: str, file_id: str) -> None:
            self.state.operations.save_operation(path, operation, file_id, item.sha256)

        return self.store.upload(request, checkpoint)

    def _settle(
        self, item: Upload, future: Future[RemoteDoc], summary: SyncSummary
    ) -> Upload | None:
        """Commit a finished upload; return what the next round must do with it, if anything."""
        path = item.entry.path
        try:
            doc = future.result()
        except SourceUnreadableError as err:
            self.unreadable.append(Unreadable(item.entry, err.message, err.gone))
            if not self.volume_lost and not self.volume_present():
                self.volume_lost = True
            return None
        except RemoteUnsupportedError as err:
            self.state.files.record_skipped(path, err.message, item.entry.size, item.entry.mtime_ns)
            summary.skipped += 1
            summary.problems.append(Problem(path, f"skipped: {err.message}"))
        except RemoteQuotaError as err:
            self._fail(path, err.message, summary)
            self.state.files.record_failure(path, FileStatus.FAILED, err.message)
            summary.stopped = f"store full, uploads stopped: {err.message}"
            summary.store_full = err.message
        except RemoteUncertainError as err:
            self._doubted = True
            self.index.invalidate()  # it may hold a document the last listing did not
            log.info("file.in_doubt", path=path, operation=err.operation, error=err.message)
            if self.stop.is_set():
                summary.stopped = "stop requested"  # the row stays `uploading`: settled later
                return None
            return dataclasses.replace(
                item, doubt=err.operation is None, operation=err.operation, file_id=err.file_id
            )
        except RemoteStoppedError:
            summary.stopped = "stop requested"  # nothing was sent; the next run starts over
        except RemoteUnavailableError as err:
            if not item.retry and not self.stop.is_set():
                log.info("file.retry_later", path=path, error=err.message)
                return dataclasses.replace(item, retry=True)
            self._fail_transient(item, err.message, summary, settled=True)
        except RemoteRejectedError as err:
            self._fail_permanent(item, err.message, summary)
        except RemoteError as err:
            self._fail_permanent(item, err.message, summary)
        else:
            self._commit(item, doc, summary)
        return None
