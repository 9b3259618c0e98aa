"""The sync engine against the embedded store: detection, upload-first replace, missing, prune."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from engine_fixtures import Env, make_config, make_library, touch_later
from objlibd.engine.hold import mass_reason
from objlibd.engine.missing import limits_of
from objlibd.engine.summary import render
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import StoreMismatchError
from objlibd.models import FileStatus
from objlibd.remote.base import Checkpoint, RemoteDoc, UploadRequest
from objlibd.remote.local import LocalStore
from objlibd.state.store import StateStore


class RecordingStore(LocalStore):
    """The local store, remembering the order of uploads and deletes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        doc = super().upload(request, checkpoint)
        self.calls.append(("upload", request.rel_path))
        return doc

    def delete(self, doc_id: str) -> None:
        self.calls.append(("delete", doc_id))
        super().delete(doc_id)


def test_first_sync_uploads_every_file_with_identity_metadata(env: Env) -> None:
    paths = make_library(env.root, 30)

    summary = env.engine.run(SyncOptions())

    docs = list(env.store.list_docs())
    assert summary.uploaded == 30
    assert summary.failed == 0
    assert sorted(d.path for d in docs) == sorted(paths)
    first = docs[0]
    assert list(first.metadata)[:2] == ["path", "sha256"]
    assert first.metadata["collection"] == first.path.split("/")[0]  # type: ignore[union-attr]
    assert env.state.files.counts_by_status()["uploaded"] == 30


def test_edit_add_delete_replaces_upload_first_and_leaves_the_rest_untouched(
    env: Env, tmp_path: Path
) -> None:
    paths = make_library(env.root, 40)
    env.engine.run(SyncOptions())
    store = RecordingStore(env.config.state.dir / "local-store")
    engine = SyncEngine(env.config, env.state, store, clock=env.clock)
    old_ids = {p: env.state.files.record(p).remote_id for p in paths[:3]}  # type: ignore[union-attr]
    for path in paths[:3]:
        touch_later(env.root / path, f"edited {path}")
    for name in ("new one.txt", "new two.md"):
        (env.root / "Course 1" / name).write_text("fresh", encoding="utf-8")
    (env.root / paths[10]).unlink()

    summary = engine.run(SyncOptions())

    assert (summary.replaced, summary.uploaded, summary.missing) == (3, 2, 1)
    assert summary.unchanged == 40 - 3 - 1
    assert summary.hashed == 5, "unchanged files must not be re-hashed (mtime fast path)"
    for path, old in old_ids.items():
        upload_at = store.calls.index(("upload", path))
        delete_at = store.calls.index(("delete", old))
        assert upload_at < delete_at, "the new version is uploaded before the old is deleted"
        record = env.state.files.record(path)
        assert record is not None
        assert record.remote_id != old
        assert record.orphaned_remote_id is None
    assert env.state.files.record(paths[10]).status is FileStatus.MISSING  # type: ignore[union-attr]
    grouped = env.docs_by_path()
    assert all(len(ids) == 1 for ids in grouped.values())
    assert paths[10] in grouped, "a missing file keeps its document until pruned"


def test_unchanged_mtime_with_same_content_is_not_reuploaded(env: Env) -> None:
    paths = make_library(env.root, 5)
    env.engine.run(SyncOptions())
    target = env.root / paths[0]
    touch_later(target, target.read_text(encoding="utf-8"))

    summary = env.engine.run(SyncOptions())

    assert (summary.uploaded, summary.replaced, summary.hashed) == (0, 0, 1)


def test_dry_run_plans_but_changes_nothing(env: Env) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    touch_later(env.root / paths[0], "changed")
    (env.root / paths[1]).unlink()
    (env.root / "Course 0" / "added.txt").write_text("x", encoding="utf-8")
    before = env.state.files.all_records()

    summary = env.engine.run(SyncOptions(dry_run=True))

    assert summary.planned == {
        "replace": [paths[0]],
        "upload": ["Course 0/added.txt"],
        "mark missing": [paths[1]],
    }
    assert env.state.files.all_records() == before
    assert len(list(env.store.list_docs())) == 10


def test_missing_files_are_pruned_after_the_configured_days(env: Env) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    (env.root / paths[0]).unlink()
    env.engine.run(SyncOptions())
    doc = env.state.files.record(paths[0]).remote_id  # type: ignore[union-attr]

    env.clock.advance_days(6)
    early = env.engine.run(SyncOptions(prune_missing=True))
    env.clock.advance_days(2)
    late = env.engine.run(SyncOptions(prune_missing=True))

    assert early.pruned == 0
    assert late.pruned == 1
    assert env.state.files.record(paths[0]).status is FileStatus.DELETED  # type: ignore[union-attr]
    assert doc not in {d.doc_id for d in env.store.list_docs()}


def test_a_missing_file_that_returns_is_restored_without_upload(env: Env) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    saved = (env.root / paths[0]).read_bytes()
    (env.root / paths[0]).unlink()
    env.engine.run(SyncOptions())
    (env.root / paths[0]).write_bytes(saved)

    summary = env.engine.run(SyncOptions())

    assert (summary.restored, summary.uploaded) == (1, 0)
    assert env.state.files.record(paths[0]).status is FileStatus.UPLOADED  # type: ignore[union-attr]


def test_mass_disappearance_is_held_until_confirmed(env: Env) -> None:
    paths = make_library(env.root, 40)
    env.engine.run(SyncOptions())
    for path in paths[:20]:
        (env.root / path).unlink()

    held = env.engine.run(SyncOptions())

    assert held.held == 20
    assert held.missing == 0
    assert env.state.files.counts_by_status()["missing"] == 0
    assert "50 %" in (held.hold_reason or "")

    confirmed = env.engine.confirm_missing()

    assert confirmed.missing == 20
    assert env.state.values.get_json("hold") is None
    assert env.state.jobs.decisions()[0][0] == "confirm_missing"


@pytest.mark.parametrize(
    ("count", "tracked", "held"),
    [(1, 3, False), (5, 10, False), (6, 10, True), (6, 100, False), (201, 10_000, True),
     (21, 100, True), (20, 100, False)],
)  # fmt: skip
def test_mass_missing_limits(env: Env, count: int, tracked: int, held: bool) -> None:
    assert (mass_reason(count, tracked, limits_of(env.config)) is not None) == held


def test_orphan_sweep_deletes_unreferenced_documents_but_adopts_nothing_in_flight(
    env: Env,
) -> None:
    make_library(env.root, 5)
    env.engine.run(SyncOptions())
    stray = env.store.upload(
        UploadRequest(env.root / "Course 0/Lecture 0000.txt", "elsewhere.txt", "0" * 64, 1,
                      "text/plain", (("path", "elsewhere.txt"), ("sha256", "0" * 64))),
    )  # fmt: skip

    summary = env.engine.cleanup_orphans()

    assert summary.orphans_deleted == 1
    assert stray.doc_id not in {d.doc_id for d in env.store.list_docs()}
    assert len(list(env.store.list_docs())) == 5


def test_orphan_sweep_refuses_when_the_state_db_knows_no_library(env: Env) -> None:
    env.store.ensure_store("test-library")
    env.store.upload(
        UploadRequest(Path(__file__), "x.txt", "1" * 64, 1, "text/plain", (("path", "x.txt"),))
    )
    (env.root / "a.txt").write_text("a", encoding="utf-8")

    summary = env.engine.cleanup_orphans()

    assert summary.orphans_deleted == 0
    assert len(list(env.store.list_docs())) == 1


def test_the_first_sync_to_finish_runs_the_orphan_sweep_it_was_asked_for(env: Env) -> None:
    """Earlier runs were all killed: one imported content the file no longer has."""
    make_library(env.root, 5)
    stale = "f" * 64
    env.state.files.begin_upload("Course 0/Lecture 0000.txt", stale, 1, 1)
    env.store.ensure_store(env.config.store.name)
    leftover = env.store.upload(
        UploadRequest(env.root / "Course 0/Lecture 0000.txt", "Course 0/Lecture 0000.txt", stale,
                      1, "text/plain", (("path", "Course 0/Lecture 0000.txt"), ("sha256", stale))),
    )  # fmt: skip

    summary = env.engine.run(SyncOptions(cleanup_orphans=True))

    assert (summary.uploaded, summary.orphans_deleted) == (5, 1)
    docs = {d.doc_id for d in env.store.list_docs()}
    assert leftover.doc_id not in docs
    assert len(docs) == 5


def test_fresh_state_db_adopts_documents_already_in_the_store(env: Env, tmp_path: Path) -> None:
    paths = make_library(env.root, 12)
    env.engine.run(SyncOptions())
    env.state.close()
    env.config.db_path.unlink()
    from objlibd.state.store import StateStore

    env.state = StateStore.open(env.config.db_path)
    env.reconfigure()
    (env.root / ".objlibd-library").unlink()

    summary = env.engine.run(SyncOptions())

    assert summary.adopted == 12
    assert summary.uploaded == 0
    assert sorted(env.docs_by_path()) == sorted(paths)


def test_store_mismatch_aborts_with_exit_code_2(env: Env) -> None:
    make_library(env.root, 2)
    env.engine.run(SyncOptions())

    env.config = replace(env.config, store=replace(env.config.store, name="another"))
    engine = SyncEngine(env.config, env.state, env.store, clock=env.clock)

    with pytest.raises(StoreMismatchError) as caught:
        engine.run(SyncOptions())

    assert caught.value.exit_code == 2
    assert '"test-library"' in caught.value.message


def test_identical_content_under_two_paths_is_reported(env: Env) -> None:
    (env.root / "a.txt").write_text("same", encoding="utf-8")
    (env.root / "b.txt").write_text("same", encoding="utf-8")
    (env.root / "c.txt").write_text("other", encoding="utf-8")

    summary = env.engine.run(SyncOptions())

    [(digest, paths)] = env.state.files.duplicates()
    assert paths == ["a.txt", "b.txt"]
    assert len(digest) == 64
    assert summary.duplicates == [(digest, ["a.txt", "b.txt"])]
    assert "a.txt  =  b.txt" in render(summary)


def test_skip_enrichment_sends_only_identity_keys(env: Env) -> None:
    make_library(env.root, 2)

    env.engine.run(SyncOptions(skip_enrichment=True))

    assert {tuple(d.metadata) for d in env.store.list_docs()} == {("path", "sha256")}


def test_force_reuploads_documents_made_under_other_rules(env: Env) -> None:
    make_library(env.root, 3)
    env.engine.run(SyncOptions(skip_enrichment=True))

    plain = env.engine.run(SyncOptions())
    forced = env.engine.run(SyncOptions(force=True))

    assert plain.replaced == 0
    assert forced.replaced == 3
    assert forced.hashed == 3


def test_incremental_run_touches_only_the_given_paths(env: Env) -> None:
    paths = make_library(env.root, 50)
    env.engine.run(SyncOptions())
    touch_later(env.root / paths[3], "edit")
    (env.root / paths[4]).unlink()
    (env.root / "Course 2" / "added.txt").write_text("new", encoding="utf-8")

    summary = env.engine.run_paths([paths[3], paths[4], "Course 2/added.txt", "ignored.tmp"])

    assert (summary.replaced, summary.missing, summary.uploaded) == (1, 1, 1)
    assert summary.hashed == 2
    assert summary.unchanged == 0, "nothing outside the batch was looked at"


def test_incremental_subtree_reconcile_finds_a_moved_folder(env: Env) -> None:
    make_library(env.root, 10)
    env.engine.run(SyncOptions())
    (env.root / "Course 1").rename(env.root / "Course One")

    summary = env.engine.run_paths([], subtrees=["Course 1", "Course One"])

    assert (summary.moved, summary.uploaded, summary.missing) == (2, 0, 0)
    assert sorted(env.docs_by_path()) == sorted(env.state.walk.index().settled)


def test_every_run_is_recorded_as_a_job(env: Env) -> None:
    make_library(env.root, 3)

    env.engine.run(SyncOptions())
    env.engine.run_paths(["Course 0/Lecture 0000.txt"])

    jobs = env.state.jobs.recent()
    assert [(j.kind, j.status) for j in jobs] == [("batch", "completed"), ("sync", "completed")]
    assert jobs[1].counts["uploaded"] == 3
    assert jobs[1].finished_at is not None
    assert (jobs[1].done, jobs[1].total) == (3, 3), "progress of the uploads"


def test_orphan_cleanup_relinks_files_whose_document_vanished_from_the_store(env: Env) -> None:
    paths = make_library(env.root, 6)
    env.engine.run(SyncOptions())
    gone = env.state.files.record(paths[2]).remote_id  # type: ignore[union-attr]
    env.store.delete(gone or "")  # deleted behind objlibd's back (e.g. in the console)

    cleanup = env.engine.cleanup_orphans()
    again = env.engine.run(SyncOptions())

    assert cleanup.lost == 1
    assert again.uploaded == 1
    assert sorted(env.docs_by_path()) == sorted(paths)


# -- the walk cache: a quiet reconcile skips the per-file index, never a decision ---------------


def mutate(root: Path, rng: random.Random, step: int) -> None:
    """One random change of the kind a library sees: edit, touch, add, delete, rename."""
    files = sorted(p for p in root.rglob("*.txt") if p.is_file())
    kind = rng.choice(["edit", "touch", "add", "delete", "rename", "junk", "folder", "none"])
    target = rng.choice(files) if files else None
    if kind == "edit" and target:
        touch_later(target, f"edited at step {step}\n")
    elif kind == "touch" and target:  # same bytes, new mtime: hashed, found unchanged
        mtime = target.stat().st_mtime_ns + 3_000_000_000
        os.utime(target, ns=(mtime, mtime))
    elif kind == "delete" and target:
        target.unlink()
    elif kind == "rename" and target:
        target.rename(target.with_name(f"Renamed {step}.txt"))
    elif kind == "junk":
        (root / f"scratch {step}.tmp").write_text("never synced")
    elif kind == "folder":
        (root / f"New {step}").mkdir()
        (root / f"New {step}" / "a.txt").write_text(f"new folder {step}\n")
    elif kind != "none" or not files:
        (root / f"Course {step % 3}").mkdir(exist_ok=True)
        (root / f"Course {step % 3}" / f"Added {step}.txt").write_text(f"added {step}\n")


def test_a_reconcile_from_the_walk_cache_decides_what_a_full_index_read_would(
    env: Env, tmp_path: Path
) -> None:
    """Twin libraries, changed alike: one engine may use the walk cache, the other never."""
    make_library(env.root, 40)
    env.reconfigure(mass_missing_percent=100, mass_missing_files=1000)
    twin_root = tmp_path / "twin library"
    shutil.copytree(env.root, twin_root)
    twin_config = make_config(twin_root, tmp_path / "twin state",
                              mass_missing_percent=100, mass_missing_files=1000)  # fmt: skip
    twin_state = StateStore.open(twin_config.db_path)
    twin = SyncEngine(twin_config, twin_state, LocalStore(tmp_path / "twin store"), clock=env.clock)
    rng, twin_rng = random.Random(2026), random.Random(2026)
    served_from_cache = 0

    for step in range(40):
        if step % 2:
            mutate(env.root, rng, step)
            mutate(twin_root, twin_rng, step)
        served_from_cache += env.state.walk.cached_walk() is not None
        twin_state.walk.forget_walk()

        got, expected = env.engine.run(SyncOptions()), twin.run(SyncOptions())

        assert (got.counts(), got.hashed) == (expected.counts(), expected.hashed), step
        assert env.state.files.counts_by_status() == twin_state.files.counts_by_status(), step
    assert served_from_cache >= 10
    twin_state.close()


def test_a_document_file_a_power_cut_left_empty_counts_as_never_written(env: Env) -> None:
    paths = make_library(env.root, 3)
    env.engine.run(SyncOptions())
    docs = sorted((env.config.state.dir / "local-store").rglob("docs/*.json"))
    docs[0].write_bytes(b"")  # what a power cut can leave of an unsynced document file

    cleanup = env.engine.cleanup_orphans()
    again = env.engine.run(SyncOptions())

    assert (cleanup.lost, again.uploaded) == (1, 1)
    assert sorted(env.docs_by_path()) == sorted(paths)


def test_a_sync_on_a_terminal_draws_one_progress_line_per_phase(env: Env) -> None:
    from io import StringIO

    from objlibd.cli.progressbar import ProgressBar

    make_library(env.root, 4)
    stream = StringIO()
    bar = ProgressBar(stream)
    env.engine.progress = bar

    env.engine.run(SyncOptions())
    bar.end()

    drawn = stream.getvalue()
    assert drawn.endswith("\n") and "\n" not in drawn[:-1]  # rewritten in place with \r
    assert f"  hash [{'#' * 30}] 4/4" in drawn
    assert f"upload [{'#' * 30}] 4/4" in drawn
    quiet = StringIO()
    ProgressBar(quiet).end()
    assert quiet.getvalue() == ""  # nothing drawn, nothing to end
