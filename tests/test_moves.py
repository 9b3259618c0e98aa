"""Moves and renames: the pure pairing (tables + a property), then the engine on real files.

Must-shows of issue #13: a 250-file folder renamed in a 1,000-file library is 250 moves in one
sync (250 uploads, 250 deletes, no hold, the store's paths equal to the disk); a copy is not
a move; a move out of the library is missing; a move whose upload fails keeps the old
document until it succeeds.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine_fixtures import Env, make_library
from objlibd.engine.moves import Gone, Move, pair
from objlibd.engine.summary import render
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import RemoteRejectedError
from objlibd.models import DiskEntry, FileStatus
from objlibd.remote.base import Checkpoint, RemoteDoc, UploadRequest
from objlibd.remote.local import LocalStore

# -- the pure pairing ------------------------------------------------------------------------


def g(path: str, size: int, sha: str) -> Gone:
    return Gone(path, size, sha)


def a(path: str, size: int) -> DiskEntry:
    return DiskEntry(path, size, 0)


@pytest.mark.parametrize(
    ("gone", "arrived", "hashes", "expected"),
    [
        # a rename: same size, same content
        (
            [g("A/x.pdf", 5, "h1")],
            [a("B/x.pdf", 5)],
            {"B/x.pdf": "h1"},
            [Move("A/x.pdf", "B/x.pdf")],
        ),
        # same size, other content: no move (an edit elsewhere plus a delete)
        ([g("x.pdf", 5, "h1")], [a("y.pdf", 5)], {"y.pdf": "h2"}, []),
        # other size: never hashed, no move
        ([g("x.pdf", 5, "h1")], [a("y.pdf", 6)], {}, []),
        # nothing disappeared (a copy, or a new file): no move
        ([], [a("copy.pdf", 5)], {}, []),
        # an arrival that could not be hashed is no move
        ([g("x.pdf", 5, "h1")], [a("y.pdf", 5)], {"y.pdf": None}, []),
        # two copies of one content renamed together: the file names pair them
        (
            [g("A/one.txt", 3, "h"), g("A/two.txt", 3, "h")],
            [a("B/two.txt", 3), a("B/one.txt", 3)],
            {"B/one.txt": "h", "B/two.txt": "h"},
            [Move("A/one.txt", "B/one.txt"), Move("A/two.txt", "B/two.txt")],
        ),
        # one content gone once, arrived twice: one move, the other arrival is a new file
        (
            [g("A/x.txt", 3, "h")],
            [a("B/x.txt", 3), a("C/copy.txt", 3)],
            {"B/x.txt": "h", "C/copy.txt": "h"},
            [Move("A/x.txt", "B/x.txt")],
        ),
        # a source with its document pairs before one that never reached the store
        (
            [Gone("A (1)/x.txt", 3, "h", kept=False), g("A/x.txt", 3, "h")],
            [a("A (2)/x.txt", 3)],
            {"A (2)/x.txt": "h"},
            [Move("A/x.txt", "A (2)/x.txt")],
        ),
        # renamed files (names differ): paired in path order
        (
            [g("a.txt", 3, "h"), g("b.txt", 3, "h")],
            [a("c.txt", 3), a("d.txt", 3)],
            {"c.txt": "h", "d.txt": "h"},
            [Move("a.txt", "c.txt"), Move("b.txt", "d.txt")],
        ),
    ],
)
def test_pair_table(
    gone: list[Gone], arrived: list[DiskEntry], hashes: dict[str, str | None], expected: list[Move]
) -> None:
    asked: list[str] = []

    def sha_of(entry: DiskEntry) -> str | None:
        asked.append(entry.path)
        return hashes[entry.path]

    assert pair(gone, arrived, sha_of) == expected
    assert set(asked) <= set(hashes), "only size-matched arrivals are hashed"


contents = st.sampled_from(["h1", "h2", "h3"])
names = st.sampled_from(["a.txt", "b.txt", "c.txt", "A/a.txt", "B/a.txt", "B/b.txt", "C/c.txt"])
sizes = st.integers(0, 3)


@given(
    gone=st.dictionaries(st.text("xyz/", min_size=1, max_size=6), st.tuples(sizes, contents)),
    arrived=st.dictionaries(names, st.tuples(sizes, contents)),
    docless=st.sets(st.text("xyz/", min_size=1, max_size=6)),
)
def test_pair_is_one_to_one_same_content_and_maximal(
    gone: dict[str, tuple[int, str]], arrived: dict[str, tuple[int, str]], docless: set[str]
) -> None:
    sources = [Gone(p, size, sha, kept=p not in docless) for p, (size, sha) in gone.items()]
    entries = [DiskEntry(path, size, 0) for path, (size, _) in arrived.items()]
    asked: list[str] = []

    def sha_of(entry: DiskEntry) -> str:
        asked.append(entry.path)
        return arrived[entry.path][1]

    found = pair(sources, entries, sha_of)

    olds, news = [m.old for m in found], [m.new for m in found]
    assert len(set(olds)) == len(olds) and len(set(news)) == len(news), "one to one"
    for move in found:
        assert gone[move.old] == arrived[move.new], "same size and content"
    gone_sizes = {size for size, _ in gone.values()}
    assert {p for p in asked} == {p for p, (size, _) in arrived.items() if size in gone_sizes}
    left = Counter(v for p, v in gone.items() if p not in olds)
    unpaired = Counter(v for p, v in arrived.items() if p not in news)
    assert not (left.keys() & unpaired.keys()), "a possible move was left unpaired"
    for move in found:  # a source with a document is never passed over for one without
        if move.old in docless:
            assert not [p for p, v in gone.items() if v == gone[move.old]
                        and p not in docless and p not in olds]  # fmt: skip
    assert found == pair(sources, list(reversed(entries)), sha_of), "deterministic"


# -- the engine ------------------------------------------------------------------------------


class RecordingStore(LocalStore):
    """The local store, counting uploads and deletes; it can refuse the uploads of some paths."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        if request.rel_path in self.refuse:
            raise RemoteRejectedError(f"refused {request.rel_path} (test)")
        doc = super().upload(request, checkpoint)
        self.calls.append(("upload", request.rel_path))
        return doc

    def delete(self, doc_id: str) -> None:
        self.calls.append(("delete", doc_id))
        super().delete(doc_id)

    def counts(self) -> Counter[str]:
        return Counter(kind for kind, _ in self.calls)


@pytest.fixture
def rec(env: Env) -> RecordingStore:
    """Swap the env's store for a recording one (before the first sync)."""
    store = RecordingStore(env.config.state.dir / "local-store")
    env.store = store
    env.engine = SyncEngine(env.config, env.state, store, clock=env.clock)
    return store


def store_paths(env: Env) -> list[str]:
    docs = env.docs_by_path()
    assert all(len(ids) == 1 for ids in docs.values()), docs
    return sorted(docs)


def disk_paths(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.txt"))


def test_renaming_a_250_file_folder_is_250_moves_in_one_sync(env: Env, rec: RecordingStore) -> None:
    """Must-show 1, one-shot: 1,000 documents, paths equal to the disk, no hold."""
    make_library(env.root, 1000)  # 5 folders of 200 files
    for index, extra in enumerate(sorted((env.root / "Course 4").iterdir())[:50]):
        extra.unlink()  # make one folder 250 files, the library still 1,000
        (env.root / "Course 2" / f"Extra {index:02d}.txt").write_text(f"extra {index}\n")
    env.engine.run(SyncOptions())
    rec.calls.clear()
    (env.root / "Course 2").rename(env.root / "Course 2 (renamed)")

    summary = env.engine.run(SyncOptions())

    assert (summary.moved, summary.uploaded, summary.missing, summary.held) == (250, 0, 0, 0)
    assert summary.hold_reason is None
    assert rec.counts() == {"upload": 250, "delete": 250}
    assert store_paths(env) == disk_paths(env.root)
    assert len(store_paths(env)) == 1000
    counts = env.state.files.counts_by_status()
    assert (counts["uploaded"], counts["missing"], counts["deleted"]) == (1000, 0, 250)
    assert env.state.files.orphan_count() == 0
    assert "moved" in render(summary)
    assert env.state.jobs.recent()[0].counts["moved"] == 250, "the jobs table (activity) has it"


def test_every_move_uploads_the_new_path_before_deleting_the_old_document(
    env: Env, rec: RecordingStore
) -> None:
    make_library(env.root, 10)
    env.engine.run(SyncOptions())
    old = {p: env.state.files.record(p).remote_id for p in disk_paths(env.root)}  # type: ignore[union-attr]
    rec.calls.clear()
    (env.root / "Course 1").rename(env.root / "Course One")

    env.engine.run(SyncOptions())

    for path, doc in old.items():
        if path.startswith("Course 1/"):
            new = path.replace("Course 1/", "Course One/")
            assert rec.calls.index(("upload", new)) < rec.calls.index(("delete", doc or ""))


def test_a_copy_is_not_a_move(env: Env, rec: RecordingStore) -> None:
    make_library(env.root, 10)
    env.engine.run(SyncOptions())
    shutil.copytree(env.root / "Course 1", env.root / "Course 1 copy")

    summary = env.engine.run(SyncOptions())

    assert (summary.moved, summary.uploaded, rec.counts()["delete"]) == (0, 2, 0)
    assert store_paths(env) == disk_paths(env.root)
    assert len(env.state.files.duplicates()) == 2, "same content under two paths, both indexed"


def test_a_move_out_of_the_library_is_missing_and_keeps_its_document(
    env: Env, rec: RecordingStore, tmp_path: Path
) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    (env.root / paths[0]).rename(tmp_path / "outside.txt")

    summary = env.engine.run(SyncOptions())

    assert (summary.moved, summary.missing, rec.counts()["delete"]) == (0, 1, 0)
    assert env.state.files.record(paths[0]).status is FileStatus.MISSING  # type: ignore[union-attr]
    assert paths[0] in env.docs_by_path()


def test_a_move_whose_upload_fails_keeps_the_old_document_until_it_succeeds(
    env: Env, rec: RecordingStore
) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    moved = paths[1].replace("Lecture", "Renamed")
    (env.root / paths[1]).rename(env.root / moved)
    rec.refuse.add(moved)

    failed = env.engine.run(SyncOptions())

    assert (failed.failed, failed.moved, failed.missing) == (1, 0, 0)
    assert env.state.files.record(paths[1]).status is FileStatus.UPLOADED  # type: ignore[union-attr]
    assert paths[1] in env.docs_by_path(), "the old document stays while the move is pending"
    assert moved not in env.docs_by_path()

    rec.refuse.clear()
    done = env.engine.run(SyncOptions())

    assert (done.moved, done.missing) == (1, 0)
    assert store_paths(env) == disk_paths(env.root)


def test_a_move_out_and_back_in_under_a_new_name_moves_the_missing_file(
    env: Env, rec: RecordingStore, tmp_path: Path
) -> None:
    """Two batches (the watcher saw a delete, later a create): the missing row is the source."""
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    (env.root / paths[2]).rename(tmp_path / "parked.txt")
    first = env.engine.run_paths([paths[2]])
    back = "Course 9/Back again.txt"
    (env.root / "Course 9").mkdir()
    (tmp_path / "parked.txt").rename(env.root / back)

    second = env.engine.run_paths([back])

    assert (first.missing, second.moved, second.uploaded) == (1, 1, 0)
    assert env.state.files.record(paths[2]).status is FileStatus.DELETED  # type: ignore[union-attr]
    assert store_paths(env) == disk_paths(env.root)


def test_a_batch_that_sees_only_the_new_path_finds_the_old_one_by_content(
    env: Env, rec: RecordingStore
) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    new = "Elsewhere/Lecture moved.txt"
    (env.root / "Elsewhere").mkdir()
    (env.root / paths[5]).rename(env.root / new)
    shutil.copy(env.root / paths[6], env.root / "Elsewhere/a copy.txt")  # present: no move

    summary = env.engine.run_paths([new, "Elsewhere/a copy.txt"])

    assert (summary.moved, summary.uploaded, summary.missing) == (1, 1, 0)
    assert store_paths(env) == disk_paths(env.root)


def test_a_file_moved_over_another_replaces_it_and_retires_its_old_path(
    env: Env, rec: RecordingStore
) -> None:
    paths = make_library(env.root, 10)
    env.engine.run(SyncOptions())
    (env.root / paths[3]).replace(env.root / paths[4])  # mv a b: b's old content is gone too

    summary = env.engine.run(SyncOptions())

    assert (summary.moved, summary.missing, rec.counts()["delete"]) == (1, 0, 2)
    assert store_paths(env) == disk_paths(env.root)


def test_a_dry_run_plans_the_moves_and_changes_nothing(env: Env, rec: RecordingStore) -> None:
    make_library(env.root, 10)
    env.engine.run(SyncOptions())
    rec.calls.clear()
    (env.root / "Course 3").rename(env.root / "Course Three")

    summary = env.engine.run(SyncOptions(dry_run=True))

    assert sorted(summary.planned) == ["move"]
    assert len(summary.planned["move"]) == 2
    assert rec.calls == []
    assert env.state.files.counts_by_status()["deleted"] == 0


def test_moves_never_count_toward_the_mass_missing_limits(env: Env, rec: RecordingStore) -> None:
    """A batch that sees a renamed folder (both subtrees) and a few real deletions."""
    paths = make_library(env.root, 100)
    env.reconfigure(mass_missing_files=10, mass_missing_percent=5.0, mass_missing_min_files=3)
    env.engine = SyncEngine(env.config, env.state, rec, clock=env.clock)
    env.engine.run(SyncOptions())
    (env.root / "Course 0").rename(env.root / "Course Zero")  # 20 files: over both limits
    deleted = [p for p in paths if p.startswith("Course 1/")][:2]
    for path in deleted:
        (env.root / path).unlink()

    summary = env.engine.run_paths(deleted, subtrees=["Course 0", "Course Zero"])

    assert (summary.moved, summary.missing, summary.held) == (20, 2, 0)
    assert env.state.values.get_config("hold") is None
