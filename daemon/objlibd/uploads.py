"""Uploads, and the repairs that keep them exact: resume, adopt, orphan cleanup.

`Uploads.run` sends files to the store on `store.concurrency` threads while this thread
commits each result (one transaction per file). The DB records the intent before any
remote call (`begin_upload`), the store's checkpoint (operation name) right after it starts,
and the result once it returns; `recover` and adoption turn any crash between those steps
into exactly one document per file.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import structlog

from objlibd import enrichment, volume
from objlibd.config import Config
from objlibd.errors import (
    RemoteError,
    RemoteQuotaError,
    RemoteUnavailableError,
    RemoteUnsupportedError,
    SourceUnreadableError,
)
from objlibd.models import DiskEntry, FileStatus, Problem
from objlibd.remote.base import RemoteDoc, RemoteStore, UploadRequest
from objlibd.state import StateStore
from objlibd.summary import SyncSummary

log = structlog.get_logger("objlibd.sync")

Report = Callable[[str, int, int], None]  # (phase, done, total): progress of a run


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A library file that could not be read mid-run; nothing is recorded for it yet."""

    entry: DiskEntry
    reason: str
    gone: bool  # it vanished (FileNotFoundError), rather than failing to read


@dataclass(frozen=True, slots=True)
class Upload:
    """One planned upload: new (`old` None) or a replacement of document `old`."""

    entry: DiskEntry
    sha256: str
    old: str | None
    version: str
    retry: bool = False  # a second try after a transient failure earlier in this run


class Uploads:
    """Runs uploads for the engine and repairs what interrupted ones left behind."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        store: RemoteStore,
        *,
        stop: threading.Event,
        report: Report,
        volume_present: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.state = state
        self.store = store
        self.stop = stop
        self.report = report
        self.volume_present = volume_present
        # Files the last run could not read: the engine decides once it knows the volume is
        # there (vanished → missing path, unreadable → failed). Dropped at the next run.
        self.unreadable: list[Unreadable] = []
        self.volume_lost = False

    def run(
        self, uploads: list[Upload], summary: SyncSummary, *, skip_enrichment: bool = False
    ) -> None:
        """Upload `uploads` (adopting identical documents already in the store) and commit."""
        self.unreadable, self.volume_lost = [], False
        if not uploads:
            return
        index = self._remote_index() if self._needs_index() else None
        pending = list(reversed(uploads))
        workers = max(1, min(int(self.store.concurrency), len(uploads)))
        running: dict[Future[RemoteDoc], Upload] = {}
        done_count = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="objlibd-upload") as pool:
            while pending or running:
                while pending and len(running) < workers and not summary.stopped:
                    if self.volume_lost:
                        break  # the drive went away: the engine parks the rest
                    item = pending.pop()
                    if self.stop.is_set():
                        summary.stopped = "stop requested"
                        break
                    if index is not None and self._adopt(item, index, summary):
                        continue
                    if item.retry and self._adopt_existing(item, summary):
                        continue
                    if workers == 1:  # a daemon batch of one file: no thread hand-off
                        running[self._inline(item, skip_enrichment)] = item
                    else:
                        running[pool.submit(self._upload_one, item, skip_enrichment)] = item
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    again = self._settle(running.pop(future), future, summary)
                    if again is not None:
                        pending.insert(0, again)  # once more, after everything else
                        continue
                    done_count += 1
                    self.report("upload", done_count, len(uploads))

    def _inline(self, item: Upload, skip_enrichment: bool) -> Future[RemoteDoc]:
        """Run one upload on this thread, packaged like the pool's result."""
        future: Future[RemoteDoc] = Future()
        try:
            future.set_result(self._upload_one(item, skip_enrichment))
        except Exception as err:  # noqa: BLE001 - re-raised by future.result() in _settle
            future.set_exception(err)
        return future

    def _upload_one(self, item: Upload, skip_enrichment: bool) -> RemoteDoc:
        path = item.entry.path
        self.state.begin_upload(path, item.sha256, item.entry.size, item.entry.mtime_ns)
        request = UploadRequest(
            local_path=self.config.library.root / path,
            rel_path=path,
            sha256=item.sha256,
            size=item.entry.size,
            mime_type=enrichment.mime_type(path),
            metadata=enrichment.build_metadata(
                path, item.sha256, self.config.enrichment.rules, skip=skip_enrichment
            ),
        )

        def checkpoint(operation: str, file_id: str) -> None:
            self.state.save_operation(path, operation, file_id, item.sha256)

        return self.store.upload(request, checkpoint)

    def _settle(  # noqa: PLR0911 - one return per outcome of an upload
        self, item: Upload, future: Future[RemoteDoc], summary: SyncSummary
    ) -> Upload | None:
        """Commit a finished upload; return the item to try again after a transient failure."""
        path = item.entry.path
        try:
            doc = future.result()
        except SourceUnreadableError as err:
            self.unreadable.append(Unreadable(item.entry, err.message, err.gone))
            if not self.volume_lost and not self.volume_present():
                self.volume_lost = True
            return None
        except RemoteUnsupportedError as err:
            self.state.record_skipped(path, err.message, item.entry.size, item.entry.mtime_ns)
            summary.skipped += 1
            summary.problems.append(Problem(path, f"skipped: {err.message}"))
            return None
        except RemoteQuotaError as err:
            self._fail(path, err, summary)
            summary.stopped = f"store full, uploads stopped: {err.message}"
            return None
        except RemoteUnavailableError as err:
            if not item.retry and not self.stop.is_set():
                log.info("file.retry_later", path=path, error=err.message)
                return dataclasses.replace(item, retry=True)
            self._fail(path, err, summary)
            return None
        except RemoteError as err:
            self._fail(path, err, summary)
            return None
        if self._commit_upload(path, doc, item, summary) == "replaced":
            summary.replaced += 1
        else:
            summary.uploaded += 1
        return None

    def _adopt_existing(self, item: Upload, summary: SyncSummary) -> bool:
        """Before a second try, adopt what the failed first try may have left in the store."""
        try:
            docs = self.store.find(item.entry.path)
        except RemoteError:
            return False  # the upload itself will say what is wrong
        referenced = self.state.referenced_remote_ids()
        matches = [d for d in docs if d.sha256 == item.sha256 and d.doc_id not in referenced]
        return bool(matches) and self._adopt(
            item, {(item.entry.path, item.sha256): matches}, summary
        )

    def _commit_upload(self, path: str, doc: RemoteDoc, item: Upload, summary: SyncSummary) -> str:
        """Record `doc` as the file's document; delete the one it replaces (upload-first)."""
        self.state.record_uploaded(
            path,
            remote_id=doc.doc_id,
            remote_file_id=doc.file_id,
            upload_hash=item.sha256,
            enrichment_version=item.version,
            replaced_remote_id=item.old,
        )
        log.debug("file.uploaded", path=path, doc=doc.doc_id, replaced=item.old)
        if item.old and item.old != doc.doc_id:
            self._delete_orphan(path, item.old, summary, count=False)
            return "replaced"
        return "uploaded"

    def _fail(self, path: str, err: RemoteError, summary: SyncSummary) -> None:
        summary.failed += 1
        summary.failures.append(Problem(path, err.message))
        self.state.record_failure(path, FileStatus.FAILED, err.message)
        log.warning("file.failed", path=path, error=err.message)

    # -- recovery, adoption and orphans ----------------------------------------------------------

    def _needs_index(self) -> bool:
        first_sync = self.state.get_config(volume.LIBRARY_ID_KEY) is None
        return first_sync or bool(self.state.with_status(FileStatus.UPLOADING))

    def _remote_index(self) -> dict[tuple[str, str], list[RemoteDoc]]:
        index: dict[tuple[str, str], list[RemoteDoc]] = {}
        referenced = self.state.referenced_remote_ids()
        for doc in self.store.list_docs():
            if doc.path and doc.sha256 and doc.doc_id not in referenced:
                index.setdefault((doc.path, doc.sha256), []).append(doc)
        return index

    def _adopt(
        self, item: Upload, index: dict[tuple[str, str], list[RemoteDoc]], summary: SyncSummary
    ) -> bool:
        matches = index.pop((item.entry.path, item.sha256), [])
        if not matches:
            return False
        keep, extra = matches[0], matches[1:]
        self.state.begin_upload(item.entry.path, item.sha256, item.entry.size, item.entry.mtime_ns)
        self._commit_upload(item.entry.path, keep, item, summary)
        summary.adopted += 1
        for doc in extra:  # duplicates from an earlier crash: exactly one document per file
            self.store.delete(doc.doc_id)
            summary.orphans_deleted += 1
        return True

    def recover(self, summary: SyncSummary) -> None:
        for op in self.state.pending_operations():
            record = self.state.record(op.path)
            doc = self.store.resume(op.operation)
            if doc is None or record is None:
                self.state.finish_operation(op.operation, succeeded=False)
            elif record.content_hash == op.content_hash and record.status is FileStatus.UPLOADING:
                entry = DiskEntry(op.path, record.size or 0, record.mtime_ns or 0)
                version = enrichment.enrichment_version(self.config.enrichment.rules, skip=False)
                item = Upload(entry, op.content_hash or "", record.remote_id, version)
                self._commit_upload(op.path, doc, item, summary)
                summary.resumed += 1
            else:
                self.state.finish_operation(op.operation, succeeded=False)
                self.store.delete(doc.doc_id)  # superseded: the file changed since
            if op.remote_file_id:
                self.store.forget_file(op.remote_file_id)
        self._delete_recorded_orphans(summary)

    def _delete_recorded_orphans(self, summary: SyncSummary) -> None:
        for record in self.state.with_orphans():
            if record.orphaned_remote_id:
                self._delete_orphan(record.path, record.orphaned_remote_id, summary, count=True)

    def _delete_orphan(self, path: str, doc_id: str, summary: SyncSummary, *, count: bool) -> None:
        try:
            self.store.delete(doc_id)
        except RemoteError as err:
            log.warning("orphan.delete_failed", path=path, doc=doc_id, error=err.message)
            return
        self.state.clear_orphan(path, doc_id)
        if count:
            summary.orphans_deleted += 1

    def sweep(self, summary: SyncSummary) -> None:
        """Delete store documents nothing in the DB points at (after adopting matches)."""
        if self.state.count_tracked() == 0 or self.state.get_config(volume.LIBRARY_ID_KEY) is None:
            log.warning("orphan.sweep_refused", reason="state DB tracks no synced library yet")
            return
        referenced = self.state.referenced_remote_ids()
        listed: set[str] = set()
        for doc in self.store.list_docs():
            listed.add(doc.doc_id)
            if doc.doc_id in referenced:
                continue
            record = self.state.record(doc.path) if doc.path else None
            if record is not None and record.status is FileStatus.UPLOADING:
                continue  # in flight in another run; its owner settles it
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
        uploaded = self.state.with_status(FileStatus.UPLOADED)
        if not listed and uploaded:
            log.warning("remote.listing_empty", uploaded=len(uploaded), action="nothing relinked")
            return
        for record in uploaded:
            if record.remote_id and record.remote_id not in listed:
                if summary.dry_run:
                    summary.plan("upload again", record.path)
                    continue
                self.state.clear_remote(record.path)
                summary.lost += 1
                log.warning("document.lost", path=record.path, doc=record.remote_id)
