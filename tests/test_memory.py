"""Memory stays flat (issue #16): what the daemon keeps between batches returns to its size.

The bounds as properties (hypothesis): a window never holds more than `max_paths` per-path
changes and is empty after `take`; parked work folded from any number of batches stays
within `max_paths` paths and `MAX_RESCAN_DIRS` subtrees. Then a few thousand synthetic
events through the real debouncer and worker, a real engine, SQLite file and local store on
a tmpfs drive: after every drain the tracked structures are back at their baseline, and no
event, batch, queue item, record or upload object is left alive anywhere in the process.
"""

from __future__ import annotations

import gc
import hashlib
import random
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon_fixtures import Drive, wait_for, write_config
from engine_fixtures import make_library
from objlibd import config as config_module
from objlibd.engine.changes import Diff
from objlibd.engine.disk import WalkResult
from objlibd.engine.summary import SyncSummary
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.engine.uploads import Upload
from objlibd.models import (
    Availability,
    Batch,
    DiskEntry,
    EventKind,
    FileRecord,
    RawEvent,
    StateIndex,
    VolumeState,
)
from objlibd.remote.base import RemoteDoc
from objlibd.remote.local import LocalStore
from objlibd.runtime import heap, monitor
from objlibd.runtime.debounce import MAX_RESCAN_DIRS, Debouncer, DebounceWindow, merge_batches
from objlibd.runtime.vitals import Vitals
from objlibd.runtime.work import Work
from objlibd.runtime.worker import Worker
from objlibd.state import sqlitememory
from objlibd.state.store import StateStore

FOLDERS = [f"f{i}" for i in range(20)] + [f"f{i}/g{j}" for i in range(4) for j in range(6)]
paths = st.builds(lambda d, n: f"{d}/n{n}.txt", st.sampled_from(FOLDERS), st.integers(0, 40))
kinds = st.sampled_from([EventKind.CREATED, EventKind.MODIFIED, EventKind.DELETED])
events = st.builds(lambda k, p: RawEvent(k, p, 0.0), kinds, paths) | st.builds(
    lambda p, q: RawEvent(EventKind.MOVED, p, 0.0, dest=q), paths, paths
)


@settings(max_examples=60, deadline=None)
@given(st.lists(events, max_size=300), st.integers(1, 50))
def test_a_window_holds_at_most_max_paths_changes_and_nothing_after_take(batch, max_paths):
    window = DebounceWindow(quiet=1.0, max_wait=5.0, max_paths=max_paths)
    for at, event in enumerate(batch):
        window.add(event, float(at))
        assert window.sizes()["changes"] <= max_paths

    taken = window.take()

    assert window.sizes() == {"changes": 0, "rescan": 0}
    assert len(taken.paths) <= max_paths


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.frozensets(paths, max_size=60), st.frozensets(st.sampled_from(FOLDERS)))),
    st.integers(1, 50),
)
def test_parked_work_stays_bounded_however_many_batches_fold_into_it(batches, max_paths):
    parked = Batch()
    for batch_paths, subtrees in batches:
        parked = merge_batches(parked, Batch(batch_paths, subtrees), max_paths=max_paths)
        assert len(parked.paths) <= max_paths
        assert len(parked.rescan) <= MAX_RESCAN_DIRS


# -- the real debouncer and worker -------------------------------------------------------------

TRACKED = (
    RawEvent, Batch, Work, FileRecord, DiskEntry, StateIndex, Diff, WalkResult, Upload, SyncSummary,
    RemoteDoc,
)  # fmt: skip


def live_objects() -> Counter[str]:
    """Count the live per-event and per-batch objects, wherever something keeps them."""
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, TRACKED))


class Rig:
    """The daemon's event path without the watcher: debouncer → worker → engine → store."""

    def __init__(self, tmp_path: Path, drive: Drive) -> None:
        conf = write_config(
            tmp_path / "c.toml", drive.mount_point, tmp_path / "state", tmp_path / "logs",
            quiet=0.05, max_wait=0.5, level="warning", sync_extra="batch_max_paths = 150\nmass_missing_percent = 100",
        )  # fmt: skip
        self.config = config_module.load(conf)
        self.root = drive.root
        self.stop = threading.Event()
        self.state = StateStore.open(self.config.db_path)
        self.store = LocalStore(self.config.state.dir / "local-store")
        self.engine = SyncEngine(self.config, self.state, self.store, stop=self.stop)
        self.worker = Worker(self.config, self.state, self.engine, self.stop, dict)
        window = DebounceWindow(quiet=0.05, max_wait=0.5, max_paths=150)
        self.debouncer = Debouncer(window, lambda batch: self.worker.submit(Work.of(batch)))

    def start(self) -> None:
        self.engine.run(SyncOptions(trigger="seed"))  # uploads the library, writes the marker
        self.worker.set_volume(self.engine.probe())
        assert self.worker.status.volume.available, self.worker.status.volume
        self.worker.start()
        self.debouncer.start()

    def close(self) -> None:
        self.debouncer.stop(flush=False)
        self.stop.set()
        self.worker.finish(10)
        self.state.close()

    def sizes(self) -> dict[str, object]:
        return {"debounce": self.debouncer.sizes(), "worker": self.worker.sizes()}

    def store_matches_disk(self) -> bool:
        disk = {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in self.root.rglob("*.txt")
        }
        docs: dict[str, list[str]] = {}
        for doc in self.store.list_docs():
            docs.setdefault(doc.path or "", []).append(doc.sha256 or "")
        return all(docs.get(path) == [sha] for path, sha in disk.items())

    def drained(self) -> bool:
        idle = self.worker.status.current is None and self.sizes() == EMPTY
        return idle and self.store_matches_disk()


EMPTY = {
    "debounce": {"changes": 0, "rescan": 0},
    "worker": {"queue": 0, "queued_paths": 0, "parked_paths": 0, "parked_subtrees": 0,
               "pending_jobs": 0},
}  # fmt: skip


def churn(rig: Rig, rng: random.Random, count: int, serial: int) -> None:
    """`count` synthetic events; about one in five also changes the file on disk."""
    for index in range(count):
        folder = f"Part {rng.randrange(6)}"
        path = f"{folder}/Lecture {rng.randrange(60):03d}.txt"
        target = rig.root / path
        kind = rng.choice([EventKind.MODIFIED, EventKind.MODIFIED, EventKind.CREATED])
        if rng.random() < 0.2:
            if target.exists() and rng.random() < 0.3:
                target.unlink()
                kind = EventKind.DELETED
            else:
                target.parent.mkdir(exist_ok=True)
                target.write_text(f"round {serial} event {index} {rng.random()}\n")
        rig.debouncer.put(RawEvent(kind, path, 0.0))


@pytest.mark.mount
@pytest.mark.usefixtures("no_thread_leaks")
def test_tracked_structures_return_to_their_size_after_the_batches_drain(
    tmp_path: Path, drive: Drive
) -> None:
    for part in range(6):
        (drive.root / f"Part {part}").mkdir()
        for n in range(0, 60, 3):
            (drive.root / f"Part {part}" / f"Lecture {n:03d}.txt").write_text(f"seed {part} {n}\n")
    rig = Rig(tmp_path, drive)
    rng = random.Random(16)
    try:
        rig.start()
        assert wait_for(rig.drained, 20)
        baseline = live_objects()
        sent = 0
        for burst in range(8):
            if burst == 3:  # the drive goes away for one burst: its work is parked, not lost
                rig.worker.set_volume(VolumeState(Availability.UNAVAILABLE, "drive gone"))
                churn(rig, rng, 400, burst)
                assert wait_for(lambda: rig.worker.parked_paths > 0, 20)
                parked = rig.worker.sizes()
                assert (
                    parked["parked_paths"] <= 150 and parked["parked_subtrees"] <= MAX_RESCAN_DIRS
                )
                rig.worker.set_volume(rig.engine.probe())
            count = 700 if burst == 5 else 300  # 700 events: more than 150 paths, an overflow
            churn(rig, rng, count, burst)
            sent += count + (400 if burst == 3 else 0)
            assert wait_for(rig.drained, 60), rig.sizes()
            assert rig.sizes() == EMPTY
            assert live_objects() == baseline, f"after burst {burst}"
        assert sent >= 3000
    finally:
        rig.close()


def test_a_heap_request_writes_the_report_once(tmp_path: Path) -> None:
    heap.request(tmp_path, "warm up")

    written = heap.answer_request(tmp_path, lambda: {"worker": {"queue": 0}})

    assert written == tmp_path / "heap-warmup.json"
    report = written.read_text()
    assert '"queue": 0' in report and '"rss_bytes"' in report
    assert heap.answer_request(tmp_path, dict) is None  # the request was consumed


def test_lookups_of_every_batch_size_keep_few_prepared_statements(tmp_path: Path) -> None:
    """Each distinct SQL text is a statement the connection caches (128, LRU). A lookup whose
    text followed its batch's size slowly filled that cache: 8.5 MB here, and SQLite's heap in
    an 80-minute soak grew 3.4 -> 10.8 MiB. Every list lookup is padded: a few shapes, cached
    once, whatever sizes come after."""
    state = StateStore.open(tmp_path / "state.db")

    def batches(sizes: Iterable[int]) -> int:
        for size in sizes:  # one daemon batch of each size, through every list lookup
            wanted = [f"Part/Lecture {n}.txt" for n in range(size)]
            state.files.records(wanted)
            state.walk.index(wanted)
            state.files.with_contents(f"{n:064x}" for n in range(size))  # move detection
            state.failures.retry(wanted)
        heap = sqlitememory.sqlite_heap()
        assert heap is not None
        return heap["bytes"]

    try:
        state.files.records(["warm"])
        if sqlitememory.sqlite_heap() is None:
            pytest.skip("this SQLite does not expose sqlite3_memory_used")
        before = batches([])
        first = batches(range(1, 300))
        again = batches(random.Random(7).sample(range(1, 1200), 300))
        assert first - before < 1 << 20  # ~0.45 MB: 6 statements x 7 shapes
        assert again - first < 64 << 10  # nothing new: the shapes were all cached
    finally:
        state.close()


def test_released_page_caches_go_back_after_a_batch_touched_the_whole_db(tmp_path: Path) -> None:
    """A resident daemon does not keep every page it ever read: after work, the state DB's
    page cache is dropped (`release_memory`), so SQLite's heap follows one batch, not hours."""
    state = StateStore.open(tmp_path / "state.db")
    try:
        before = sqlitememory.sqlite_heap()
        if before is None:
            pytest.skip("this SQLite does not expose sqlite3_memory_used")
        paths = [f"Part {n // 100}/Lecture {n} {'x' * 200}.txt" for n in range(4000)]
        for path in paths:  # a DB of a few MiB: more than its page cache holds
            state.files.record_skipped(path, "too large", 1, 1)
        state.files.records(paths)  # a full diff reads every page
        full, held = sqlitememory.sqlite_heap(), state.db.held_memory()
        state.db.release_memory()
        released, kept = sqlitememory.sqlite_heap(), state.db.held_memory()
        assert full is not None and released is not None
        assert released["bytes"] < full["bytes"]
        if held is not None and kept is not None:  # CPython: the connection's own count
            assert held["cache"] > 1 << 20 > kept["cache"]
            assert kept["statements"] > 0  # the cached statements stay
    finally:
        state.close()


def test_the_heap_report_counts_sqlite_and_malloc_where_the_platform_has_them() -> None:
    facts = heap.report({"worker": {}})

    assert facts["rss_bytes"] is None or facts["rss_bytes"] > 0
    if sys.platform.startswith("linux"):  # glibc here; macOS leaves these out
        assert heap.trim() is True
        assert heap.tune_malloc() is True  # two arenas, a fixed mmap threshold
        assert facts["malloc"]["arena_bytes"] >= facts["malloc"]["in_use_bytes"] > 0
        assert facts["sqlite"]["bytes"] >= 0
        pymalloc = facts["pymalloc"]  # CPython's own allocator, read from its stats
        assert pymalloc["arenas"] * 2**20 >= pymalloc["in_use_bytes"] > 0
    else:
        assert heap.trim() is False
        assert heap.tune_malloc() is False


def test_pruned_files_cost_a_reconcile_no_memory_and_come_back_as_new(env) -> None:
    paths = make_library(env.root, 12)
    env.engine.run(SyncOptions())
    for path in paths[:5]:
        (env.root / path).unlink()
    env.engine.run(SyncOptions())
    env.clock.advance_days(8)
    assert env.engine.run(SyncOptions(prune_missing=True)).pruned == 5

    assert len(env.state.walk.index()) == 7  # the five tombstones stay on disk only
    env.engine.run(SyncOptions())  # quiet: saves the walk cache
    cached = env.state.walk.cached_walk()
    assert cached is not None and cached.unsettled == {}

    (env.root / paths[0]).write_text("back again")
    summary = env.engine.run(SyncOptions())

    assert summary.uploaded == 1
    assert env.docs_by_path()[paths[0]] and len(env.docs_by_path()[paths[0]]) == 1


@pytest.mark.parametrize(
    ("last", "generation", "now", "due"),
    [
        ((0, 0.0), 0, 100.0, False),  # idle since the start: nothing new to give back
        ((0, 0.0), 1, 100.0, True),  # the worker wrote
        ((1, 95.0), 2, 100.0, False),  # wrote again, but the last release was 5 s ago
        ((1, 90.0), 2, 100.0, True),  # ... and 10 s ago
        ((2, 50.0), 2, 100.0, False),  # nothing written since the last release
    ],
)
def test_memory_is_given_back_only_after_work_and_at_most_every_ten_seconds(
    last: tuple[int, float], generation: int, now: float, due: bool
) -> None:
    assert monitor.release_due(last, generation, now) is due


def test_the_daemon_gives_back_its_page_caches_and_the_reader_keeps_a_small_one(
    tmp_path: Path, drive: Drive
) -> None:
    """The daemon's own connections (writer, status reader): a job that read every row leaves
    the writer's cache full until `release_memory`; the reader's never passes 512 KiB."""
    conf = write_config(tmp_path / "c.toml", drive.mount_point, tmp_path / "s", tmp_path / "l")
    config = config_module.load(conf)
    parts = monitor.Monitor(config, threading.Event(), Vitals(config))
    try:
        paths = [f"Part {n // 100}/Lecture {n} {'x' * 200}.txt" for n in range(4000)]
        for path in paths:  # a DB of a few MiB: more than either cache holds
            parts.state.files.record_skipped(path, "too large", 1, 1)
        parts.state.files.records(paths)  # a full reconcile reads every page
        parts.reader.files.records(paths)
        writer, reader = parts.state.db.held_memory(), parts.reader.db.held_memory()
        if writer is None or reader is None:
            pytest.skip("this Python does not let us count a connection's memory")
        assert writer["cache"] > 1 << 20
        assert reader["cache"] < 600 << 10  # 128 pages of 4 KiB and their headers (not 2 MiB)
        parts.release_memory()
        after = parts.state.db.held_memory()
        assert after is not None and after["cache"] < 64 << 10
    finally:
        parts.store.close()
        parts.state.close()
        parts.reader.close()
