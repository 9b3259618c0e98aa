"""Crash states, built by hand, are repaired exactly by the next run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine_fixtures import Env, make_library, touch_later
from objlibd.engine.disk import sha256_file
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import RemoteUnavailableError, RemoteUncertainError
from objlibd.models import FileStatus
from objlibd.remote import enrichment
from objlibd.remote.base import Checkpoint, RemoteDoc, UploadRequest
from objlibd.remote.local import LocalStore


def request_for(env: Env, path: str) -> UploadRequest:
    digest = sha256_file(env.root / path)
    return UploadRequest(
        env.root / path, path, digest, (env.root / path).stat().st_size, "text/plain",
        enrichment.build_metadata(path, digest, (), skip=True),
    )  # fmt: skip


def crashed_after_upload(env: Env, path: str, *, checkpoint: bool) -> str:
    """The state a SIGKILL leaves between the store's upload and the DB commit."""
    request = request_for(env, path)
    info = (env.root / path).stat()
    env.state.files.begin_upload(path, request.sha256, info.st_size, info.st_mtime_ns)
    saved = []
    doc = env.store.upload(request, lambda op, fid: saved.append(op))
    if checkpoint:
        env.state.operations.save_operation(path, saved[0], "", request.sha256)
    return doc.doc_id


def test_a_checkpointed_operation_is_resumed_not_uploaded_again(env: Env) -> None:
    paths = make_library(env.root, 4)
    env.engine.check_identity()
    doc = crashed_after_upload(env, paths[0], checkpoint=True)

    summary = env.engine.run(SyncOptions())

    assert summary.resumed == 1
    assert summary.uploaded == 3
    assert env.state.files.record(paths[0]).remote_id == doc  # type: ignore[union-attr]
    assert env.state.operations.pending_operations() == []
    assert all(len(v) == 1 for v in env.docs_by_path().values())


def test_an_unrecorded_upload_is_adopted_by_its_identity(env: Env) -> None:
    paths = make_library(env.root, 4)
    env.engine.check_identity()
    doc = crashed_after_upload(env, paths[1], checkpoint=False)

    summary = env.engine.run(SyncOptions())

    assert summary.adopted == 1
    assert env.state.files.record(paths[1]).remote_id == doc  # type: ignore[union-attr]
    assert len(list(env.store.list_docs())) == 4


def test_duplicate_documents_from_repeated_crashes_collapse_to_one(env: Env) -> None:
    paths = make_library(env.root, 3)
    env.engine.check_identity()
    crashed_after_upload(env, paths[0], checkpoint=False)
    crashed_after_upload(env, paths[0], checkpoint=False)

    summary = env.engine.run(SyncOptions())

    assert summary.adopted == 1
    assert summary.orphans_deleted == 1
    assert sorted(env.docs_by_path()) == sorted(paths)
    assert all(len(v) == 1 for v in env.docs_by_path().values())


def test_an_interrupted_replacement_finishes_and_deletes_the_old_document(env: Env) -> None:
    paths = make_library(env.root, 6)
    env.engine.run(SyncOptions())
    old = env.state.files.record(paths[0]).remote_id  # type: ignore[union-attr]
    touch_later(env.root / paths[0], "new content")
    new = crashed_after_upload(env, paths[0], checkpoint=True)

    summary = env.engine.run(SyncOptions())

    record = env.state.files.record(paths[0])
    assert record is not None
    assert (record.remote_id, record.status, record.orphaned_remote_id) == (
        new,
        FileStatus.UPLOADED,
        None,
    )
    assert summary.resumed == 1
    assert old not in {d.doc_id for d in env.store.list_docs()}


def test_an_operation_that_never_finished_is_uploaded_again(env: Env) -> None:
    paths = make_library(env.root, 2)
    env.engine.check_identity()
    info = (env.root / paths[0]).stat()
    env.state.files.begin_upload(paths[0], sha256_file(env.root / paths[0]), info.st_size,
                           info.st_mtime_ns)  # fmt: skip
    env.state.operations.save_operation(paths[0], "localStores/x/documents/never-written", "", "h")

    summary = env.engine.run(SyncOptions())

    assert summary.uploaded == 2
    assert env.state.operations.pending_operations() == []
    assert env.state.files.record(paths[0]).status is FileStatus.UPLOADED  # type: ignore[union-attr]


def test_recorded_orphans_are_deleted_at_the_start_of_a_run(env: Env) -> None:
    paths = make_library(env.root, 3)
    env.engine.run(SyncOptions())
    stray = env.store.upload(request_for(env, paths[0]))
    env.state.files.record_uploaded(paths[0], remote_id=env.state.files.record(paths[0]).remote_id or "",  # type: ignore[union-attr]
                              remote_file_id=None, upload_hash="h", enrichment_version="v",
                              replaced_remote_id=stray.doc_id)  # fmt: skip
    assert env.state.files.orphan_count() == 1

    summary = env.engine.run(SyncOptions())

    assert summary.orphans_deleted == 1
    assert env.state.files.orphan_count() == 0
    assert stray.doc_id not in {d.doc_id for d in env.store.list_docs()}


def test_an_edit_interrupted_before_its_upload_is_still_replaced(env: Env) -> None:
    """Found by the crash test: the intent row already holds the new hash, the doc the old."""
    paths = make_library(env.root, 3)
    env.engine.run(SyncOptions())
    old = env.state.files.record(paths[0]).remote_id  # type: ignore[union-attr]
    touch_later(env.root / paths[0], "edited")
    info = (env.root / paths[0]).stat()
    env.state.files.begin_upload(paths[0], sha256_file(env.root / paths[0]), info.st_size,
                           info.st_mtime_ns)  # fmt: skip

    summary = env.engine.run(SyncOptions())

    record = env.state.files.record(paths[0])
    assert record is not None
    assert summary.replaced == 1
    assert record.remote_id != old
    docs = {d.doc_id: d for d in env.store.list_docs()}
    assert docs[record.remote_id].sha256 == record.content_hash == record.upload_hash
    assert old not in docs


class FlakyStore(LocalStore):
    """The local store, failing chosen uploads once the way a busy service does."""

    def __init__(self, root: Path, flaky: set[str], *, after_upload: bool) -> None:
        super().__init__(root)
        self.flaky = set(flaky)
        self.after_upload = after_upload  # the lost-response case: the document exists

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        if request.rel_path in self.flaky:
            self.flaky.discard(request.rel_path)
            if self.after_upload:  # the import landed, its answer was lost: in doubt
                super().upload(request)
                raise RemoteUncertainError("connection reset after the import was sent")
            raise RemoteUnavailableError("503 UNAVAILABLE after retries")
        return super().upload(request, checkpoint)


@pytest.mark.parametrize("after_upload", [False, True])
def test_a_transient_failure_is_tried_again_in_the_same_run(env: Env, after_upload: bool) -> None:
    paths = make_library(env.root, 6)
    store = FlakyStore(env.config.state.dir / "local-store", {paths[1], paths[4]},
                       after_upload=after_upload)  # fmt: skip
    engine = SyncEngine(env.config, env.state, store, clock=env.clock)

    summary = engine.run(SyncOptions())

    assert summary.failed == 0
    assert summary.uploaded + summary.adopted == 6
    assert summary.adopted == (2 if after_upload else 0)
    assert sorted(env.docs_by_path()) == sorted(paths)
    assert all(len(v) == 1 for v in env.docs_by_path().values()), "no second copy"


def test_a_file_failing_twice_is_recorded_failed_and_retried_next_run(env: Env) -> None:
    paths = make_library(env.root, 3)

    class Down(LocalStore):
        def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
            if request.rel_path == paths[0]:
                raise RemoteUnavailableError("503 UNAVAILABLE after retries")
            return super().upload(request, checkpoint)

    engine = SyncEngine(env.config, env.state, Down(env.config.state.dir / "local-store"),
                        clock=env.clock)  # fmt: skip
    first = engine.run(SyncOptions())
    backing_off = env.engine.run(SyncOptions())
    env.clock.advance(env.config.sync.retry_backoff_seconds)
    second = env.engine.run(SyncOptions())

    assert (first.failed, first.exit_code) == (1, 1)
    assert env.state.files.record(paths[0]) is not None
    assert (backing_off.deferred, backing_off.uploaded) == (1, 0)
    assert (second.uploaded, second.failed) == (1, 0)
