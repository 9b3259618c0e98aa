"""watcher: the edge filter (pure), a real observer on a real directory, liveness, backoff."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon_fixtures import wait_for
from objlibd.config import LibrarySettings
from objlibd.engine.filters import Filters
from objlibd.models import EventKind, RawEvent
from objlibd.runtime.watcher import (
    LibraryWatcher,
    MountWatch,
    NativeTap,
    Rescan,
    WatchBackoff,
    raw_event,
    relative,
    rescan_for,
)

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

ROOT = "/Volumes/U32 Shadow/Lib"
FILTERS = Filters.from_settings(LibrarySettings())
C, M, D, MV = EventKind.CREATED, EventKind.MODIFIED, EventKind.DELETED, EventKind.MOVED


def cls(event_type: str, src: str, dest: str = "", *, d: bool = False) -> RawEvent | None:
    return raw_event(
        event_type, f"{ROOT}/{src}" if src else ROOT, f"{ROOT}/{dest}" if dest else "",
        is_directory=d, root=ROOT, filters=FILTERS, at=1.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("created", "a b/x.pdf"), RawEvent(C, "a b/x.pdf", 1.0)),
        (("modified", "x.pdf"), RawEvent(M, "x.pdf", 1.0)),
        (("closed", "x.pdf"), RawEvent(M, "x.pdf", 1.0)),
        (("deleted", "x.pdf"), RawEvent(D, "x.pdf", 1.0)),
        (("opened", "x.pdf"), None),
        (("closed_no_write", "x.pdf"), None),
        (("attrib", "x.pdf"), None),
        (("created", ".hidden.pdf"), None),
        (("created", "x.pdf.part"), None),
        (("created", "~$draft.docx"), None),
        (("created", "notes.xyz"), None),
        (("created", ".Trashes/x.pdf"), None),
        (("created", ".objlibd-library"), None),
        (("moved", "a.pdf", "b.pdf"), RawEvent(MV, "a.pdf", 1.0, dest="b.pdf")),
        (("moved", "a.pdf.tmp", "a.pdf"), RawEvent(C, "a.pdf", 1.0)),
        (("moved", "a.pdf", ".Trashes/a.pdf"), RawEvent(D, "a.pdf", 1.0)),
        (("moved", "a.tmp", "b.tmp"), None),
    ],
)
def test_classify_files(args: tuple[str, ...], expected: RawEvent | None) -> None:
    assert cls(*args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("modified", "sub"), None),
        (("created", "sub"), RawEvent(C, "sub", 1.0, is_directory=True)),
        (("deleted", "sub"), RawEvent(D, "sub", 1.0, is_directory=True)),
        (("moved", "a", "b"), RawEvent(MV, "a", 1.0, is_directory=True, dest="b")),
        (("created", ".fseventsd"), None),
        (("deleted", ""), RawEvent(D, "", 1.0, is_directory=True)),
    ],
)
def test_classify_directories(args: tuple[str, ...], expected: RawEvent | None) -> None:
    assert cls(*args, d=True) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [(ROOT, ""), (f"{ROOT}/a/b.pdf", "a/b.pdf"), ("/Volumes/U32 Shadow/Library2/x", None)],
)
def test_relative(path: str, expected: str | None) -> None:
    assert relative(path, ROOT) == expected


def test_backoff_doubles_to_the_cap_and_resets_when_healthy() -> None:
    backoff = WatchBackoff(base=1, cap=5, healthy_after=60)

    delays = [backoff.on_failure(100.0) - 100.0 for _ in range(5)]
    assert delays == [1, 2, 4, 5, 5]
    assert not backoff.may_retry(104.0)
    assert backoff.may_retry(105.0)

    backoff.on_alive(200.0)
    backoff.on_alive(259.0)
    assert backoff.failures == 5
    backoff.on_alive(260.0)
    assert backoff.failures == 0


class Sink:
    def __init__(self) -> None:
        self.events: list[RawEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: RawEvent) -> None:
        with self._lock:
            self.events.append(event)

    def paths(self) -> set[str]:
        with self._lock:
            return {e.path for e in self.events} | {e.dest for e in self.events if e.dest}


def test_real_observer_reports_library_changes_and_drops_noise(tmp_path: Path) -> None:
    sink = Sink()
    watcher = LibraryWatcher(tmp_path, FILTERS, sink)
    watcher.start()
    try:
        (tmp_path / "sub dir").mkdir()
        (tmp_path / "sub dir" / "a.pdf").write_bytes(b"a")
        (tmp_path / ".hidden.pdf").write_bytes(b"h")
        (tmp_path / "b.txt.tmp").write_bytes(b"t")
        (tmp_path / "b.txt.tmp").rename(tmp_path / "b.txt")
        (tmp_path / "junk.xyz").write_bytes(b"j")
        assert wait_for(lambda: {"sub dir/a.pdf", "b.txt"} <= sink.paths(), 5), sink.events
        assert watcher.alive()
    finally:
        watcher.stop()

    assert sink.paths() <= {"sub dir", "sub dir/a.pdf", "b.txt"}
    assert not watcher.alive()


def test_a_killed_emitter_is_noticed_and_a_fresh_start_watches_again(tmp_path: Path) -> None:
    sink = Sink()
    watcher = LibraryWatcher(tmp_path, FILTERS, sink)
    watcher.start()
    try:
        watcher.kill_emitters()
        assert wait_for(lambda: not watcher.alive(), 5)

        watcher.start()  # what the service does on a dead watch

        assert watcher.alive()
        (tmp_path / "after.pdf").write_bytes(b"x")
        assert wait_for(lambda: "after.pdf" in sink.paths(), 5)
    finally:
        watcher.stop()


def test_start_on_a_missing_root_raises_and_leaves_nothing_running(tmp_path: Path) -> None:
    watcher = LibraryWatcher(tmp_path / "gone", FILTERS, Sink())

    with pytest.raises(OSError, match="No such file"):
        watcher.start()

    assert not watcher.running


def test_overflow_log_line_calls_back_while_watching(tmp_path: Path) -> None:
    overflows: list[int] = []
    watcher = LibraryWatcher(tmp_path, FILTERS, Sink(), on_overflow=lambda: overflows.append(1))
    watcher.start()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
    finally:
        watcher.stop()
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")

    assert overflows == [1]


def test_mount_watch_wakes_on_changes_in_the_parent(tmp_path: Path) -> None:
    woke = threading.Event()
    watch = MountWatch(tmp_path, woke.set)

    assert watch.start()
    try:
        (tmp_path / "U32 Shadow").mkdir()
        assert woke.wait(5)
    finally:
        watch.stop()


def test_mount_watch_without_a_parent_does_nothing(tmp_path: Path) -> None:
    assert not MountWatch(tmp_path / "none", lambda: None).start()


def test_reading_the_library_does_not_wake_the_observer(tmp_path: Path) -> None:
    """The daemon's own hashing and listing must not feed its watcher (opens, reads, closes)."""
    sink = Sink()
    watcher = LibraryWatcher(tmp_path, FILTERS, sink)
    (tmp_path / "a.pdf").write_bytes(b"a")
    watcher.start()
    try:
        before = watcher.events_seen
        for _ in range(20):
            (tmp_path / "a.pdf").read_bytes()
            list(os.scandir(tmp_path))
        (tmp_path / "b.pdf").write_bytes(b"b")  # a real change, as the end marker
        assert wait_for(lambda: "b.pdf" in sink.paths(), 5), sink.events
        seen = watcher.events_seen - before
    finally:
        watcher.stop()

    assert seen <= 4, f"{seen} events for 20 reads and one write"


# -- FSEvents flags (synthetic native events: FSEvents itself exists only on macOS) -----------

# Apple's FSEventStreamEventFlags (FSEvents.h), the bits behind watchdog's NativeEvent properties.
MUST_SCAN, USER_DROPPED, KERNEL_DROPPED, IDS_WRAPPED = 0x1, 0x2, 0x4, 0x8
ITEM_CREATED, ITEM_RENAMED, ITEM_IS_FILE = 0x100, 0x800, 0x10000


@dataclass(frozen=True)
class SyntheticNative:
    """Shaped like watchdog's `_watchdog_fsevents.NativeEvent`: a path, flags, properties."""

    path: str
    flags: int

    @property
    def must_scan_subdirs(self) -> bool:
        return bool(self.flags & MUST_SCAN)

    @property
    def is_user_dropped(self) -> bool:
        return bool(self.flags & USER_DROPPED)

    @property
    def is_kernel_dropped(self) -> bool:
        return bool(self.flags & KERNEL_DROPPED)

    @property
    def is_event_ids_wrapped(self) -> bool:
        return bool(self.flags & IDS_WRAPPED)


@pytest.mark.parametrize(
    ("path", "flags", "expected"),
    [
        (f"{ROOT}/a/x.pdf", ITEM_CREATED | ITEM_IS_FILE, None),
        (f"{ROOT}/a/x.pdf", ITEM_RENAMED | ITEM_IS_FILE, None),
        (f"{ROOT}/Course 1/", MUST_SCAN, Rescan("Course 1", "fsevents_must_scan")),
        (f"{ROOT}/Course 1", MUST_SCAN, Rescan("Course 1", "fsevents_must_scan")),
        (f"{ROOT}/", MUST_SCAN, Rescan("", "fsevents_must_scan")),
        ("/Volumes/", MUST_SCAN, Rescan("", "fsevents_must_scan")),  # above the root
        ("/", MUST_SCAN | USER_DROPPED, Rescan("", "fsevents_dropped")),
        ("/", MUST_SCAN | KERNEL_DROPPED, Rescan("", "fsevents_dropped")),
        (f"{ROOT}/a", MUST_SCAN | KERNEL_DROPPED, Rescan("", "fsevents_dropped")),
        ("/", IDS_WRAPPED, Rescan("", "fsevents_ids_wrapped")),
    ],
)
def test_fsevents_flags_that_lose_events_ask_for_a_reconcile(
    path: str, flags: int, expected: Rescan | None
) -> None:
    assert rescan_for(SyntheticNative(path, flags), ROOT) == expected


def test_the_watcher_turns_native_flags_into_one_reconcile_each(tmp_path: Path) -> None:
    asked: list[Rescan] = []
    watcher = LibraryWatcher(Path(ROOT), FILTERS, lambda _e: None, on_rescan=asked.append)

    watcher.native([SyntheticNative(f"{ROOT}/b", MUST_SCAN), SyntheticNative(f"{ROOT}/a", 0),
                    SyntheticNative(f"{ROOT}/b/", MUST_SCAN)])  # fmt: skip
    watcher.native([SyntheticNative(f"{ROOT}/b", MUST_SCAN),
                    SyntheticNative("/", KERNEL_DROPPED | MUST_SCAN)])  # fmt: skip

    assert asked == [Rescan("b", "fsevents_must_scan"), Rescan("", "fsevents_dropped")]


class StandInEmitter:
    """What NativeTap needs of watchdog's FSEventsEmitter (which cannot load off macOS)."""

    def __init__(self, queue: list[object], *, latency: float = 0.01) -> None:
        self.queue = queue
        self.latency = latency

    def queue_events(self, timeout: float, events: list[object]) -> None:
        while events:  # consumes the list, as watchdog's emitter does
            self.queue.append(events.pop(0))


class TappedStandIn(NativeTap, StandInEmitter):
    pass


def test_the_tap_sees_native_events_before_the_emitter_and_survives_its_own_failure() -> None:
    seen: list[list[object]] = []
    queued: list[object] = []
    emitter = TappedStandIn(queued, tap=seen.append, latency=0.5)
    events: list[object] = [SyntheticNative("/x", MUST_SCAN), SyntheticNative("/y", 0)]

    emitter.queue_events(1.0, events)
    broken = TappedStandIn(queued, tap=lambda _events: 1 / 0)
    broken.queue_events(1.0, [SyntheticNative("/z", 0)])

    assert seen == [[SyntheticNative("/x", MUST_SCAN), SyntheticNative("/y", 0)]]
    assert [e.path for e in queued] == ["/x", "/y", "/z"]  # type: ignore[attr-defined]
    assert emitter.latency == 0.5
