"""debounce: the coalescing table, the window's timing with a FakeClock, one real thread."""

from __future__ import annotations

import threading

import pytest

from daemon_fixtures import FakeClock, wait_for
from objlibd.models import Batch, EventKind, RawEvent
from objlibd.runtime.debounce import (
    Change,
    Debouncer,
    DebounceWindow,
    coalesce,
    merge_batches,
    merge_change,
    minimize_subtrees,
    shape_batch,
)

C, M, D, MV = EventKind.CREATED, EventKind.MODIFIED, EventKind.DELETED, EventKind.MOVED


def ev(kind: EventKind, path: str, at: float = 0.0, *, dest: str | None = None, d: bool = False):
    return RawEvent(kind=kind, path=path, at=at, is_directory=d, dest=dest)


@pytest.mark.parametrize(
    ("earlier", "kind", "expected"),
    [
        (None, C, Change.ADDED),
        (None, M, Change.MODIFIED),
        (None, D, Change.DELETED),
        (Change.ADDED, M, Change.ADDED),
        (Change.ADDED, C, Change.ADDED),
        (Change.ADDED, D, None),
        (Change.MODIFIED, M, Change.MODIFIED),
        (Change.MODIFIED, D, Change.DELETED),
        (Change.MODIFIED, C, Change.MODIFIED),
        (Change.DELETED, C, Change.MODIFIED),
        (Change.DELETED, M, Change.MODIFIED),
        (Change.DELETED, D, Change.DELETED),
    ],
)
def test_merge_change_follows_the_table(earlier, kind, expected) -> None:
    assert merge_change(earlier, kind) == expected


@pytest.mark.parametrize(
    ("events", "changes"),
    [
        ([ev(C, "a.pdf"), ev(D, "a.pdf")], {}),
        ([ev(C, "a.pdf"), ev(M, "a.pdf"), ev(M, "a.pdf")], {"a.pdf": Change.ADDED}),
        ([ev(D, "a.pdf"), ev(C, "a.pdf")], {"a.pdf": Change.MODIFIED}),
        (
            [ev(MV, "a.pdf", dest="b.pdf")],
            {"a.pdf": Change.DELETED, "b.pdf": Change.ADDED},
        ),
        (
            [ev(C, "x.tmp.pdf"), ev(MV, "x.tmp.pdf", dest="x.pdf")],
            {"x.pdf": Change.ADDED},
        ),
        ([ev(M, "a.pdf"), ev(D, "a.pdf")], {"a.pdf": Change.DELETED}),
    ],
)
def test_window_coalesces_per_path(events, changes) -> None:
    window = DebounceWindow(quiet=3, max_wait=60, max_paths=500)

    for event in events:
        window.add(event, 0.0)

    assert window.changes() == changes


def test_created_then_deleted_leaves_an_empty_batch() -> None:
    batch = coalesce([ev(C, "a.pdf"), ev(D, "a.pdf")], max_paths=500)

    assert batch.empty


def test_directory_move_becomes_a_reconcile_of_both_subtrees() -> None:
    batch = coalesce(
        [ev(C, "old/x.pdf"), ev(MV, "old", dest="new", d=True), ev(M, "top.pdf")],
        max_paths=500,
    )

    assert batch.rescan == {"old", "new"}
    assert batch.paths == {"top.pdf"}
    assert batch.reason == "directory"


def test_directory_delete_reconciles_its_subtree_and_absorbs_paths_inside() -> None:
    batch = coalesce(
        [ev(D, "a/b/c.pdf"), ev(D, "a/b", d=True), ev(D, "a/b/x", d=True)], max_paths=9
    )

    assert batch.rescan == {"a/b"}
    assert batch.paths == frozenset()


def test_more_than_max_paths_collapse_into_their_folders() -> None:
    events = [ev(C, f"big/f{i}.pdf") for i in range(6)] + [ev(C, "other/x.pdf")]

    batch = coalesce(events, max_paths=5)

    assert batch.paths == frozenset()
    assert batch.rescan == {"big", "other"}
    assert batch.reason == "overflow"


def test_overflow_at_the_library_root_reconciles_the_library() -> None:
    batch = coalesce([ev(C, f"f{i}.pdf") for i in range(10)], max_paths=3)

    assert batch.rescan == {""}


def test_overflow_keeps_tracking_folders_of_later_events() -> None:
    window = DebounceWindow(quiet=3, max_wait=60, max_paths=2)
    for i in range(3):
        window.add(ev(C, f"a/{i}.pdf"), 0)

    window.add(ev(C, "b/late.pdf"), 1)

    assert window.take().rescan == {"a", "b"}


@pytest.mark.parametrize(
    ("trees", "expected"),
    [
        (["a", "a/b", "c"], {"a", "c"}),
        (["a/b", "", "c"], {""}),
        (["ab", "a"], {"a", "ab"}),
        ([f"x/d{i}" for i in range(20)], {"x"}),
        ([f"d{i}" for i in range(20)], {""}),
    ],
)
def test_minimize_subtrees(trees, expected) -> None:
    assert minimize_subtrees(trees) == expected


def test_merge_batches_unions_and_stays_bounded() -> None:
    a = Batch(paths=frozenset({"a/1.pdf"}), first_event_at=5.0)
    b = Batch(paths=frozenset({"a/2.pdf", "b/3.pdf"}), first_event_at=3.0)

    merged = merge_batches(a, b, max_paths=2)

    assert merged.rescan == {"a", "b"}
    assert merged.first_event_at == 3.0


def test_shape_batch_drops_paths_inside_rescanned_subtrees() -> None:
    batch = shape_batch({"a/x.pdf", "b.pdf"}, {"a"}, max_paths=10)

    assert batch.paths == {"b.pdf"}


@pytest.mark.parametrize(
    ("times", "now", "due"),
    [
        ([0.0], 2.9, False),
        ([0.0], 3.0, True),
        ([0.0, 2.0], 4.0, False),
        ([0.0, 2.0], 5.0, True),
        ([float(t) for t in range(0, 62, 2)], 59.9, False),
        ([float(t) for t in range(0, 62, 2)], 60.0, True),
        ([], 100.0, False),
    ],
)
def test_window_is_due_after_quiet_or_max_wait(times, now, due) -> None:
    window = DebounceWindow(quiet=3, max_wait=60, max_paths=500)
    for t in times:
        window.add(ev(M, "a.pdf"), t)

    assert window.due(now) is due


def test_take_starts_a_new_window(fake_clock: FakeClock) -> None:
    window = DebounceWindow(quiet=3, max_wait=60, max_paths=500)
    window.add(ev(C, "a.pdf", at=123.0), fake_clock())

    batch = window.take()

    assert batch.paths == {"a.pdf"}
    assert batch.first_event_at == 123.0
    assert window.deadline() is None
    assert window.pending_paths == 0


@pytest.mark.usefixtures("no_thread_leaks")
def test_debouncer_thread_hands_one_batch_after_the_quiet_window() -> None:
    batches: list[Batch] = []
    got = threading.Event()

    def sink(batch: Batch) -> None:
        batches.append(batch)
        got.set()

    debouncer = Debouncer(DebounceWindow(quiet=0.1, max_wait=5, max_paths=500), sink)
    debouncer.start()
    try:
        for i in range(50):
            debouncer.put(ev(C, f"f{i}.pdf"))
        assert got.wait(5)
    finally:
        debouncer.stop()

    assert len(batches) == 1
    assert len(batches[0].paths) == 50


@pytest.mark.usefixtures("no_thread_leaks")
def test_debouncer_stop_flushes_pending_work_to_the_sink() -> None:
    batches: list[Batch] = []
    debouncer = Debouncer(DebounceWindow(quiet=60, max_wait=60, max_paths=500), batches.append)
    debouncer.start()
    debouncer.put(ev(M, "a.pdf"))

    debouncer.stop(flush=True)

    assert wait_for(lambda: batches, 1)
    assert batches[0].paths == {"a.pdf"}
