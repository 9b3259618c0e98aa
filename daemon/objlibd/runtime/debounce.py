"""Turn a stream of watcher events into bounded batches: a pure window plus a thin thread.

`DebounceWindow` is the pure core: `add(event, now)`, `due(now)`, `take()`. It coalesces per
path while it collects (so memory is bounded by distinct paths, not events):

    earlier \\ new   created    modified   deleted
    (none)          added      modified   deleted
    added           added      added      (cancelled: never existed for us)
    modified        modified   modified   deleted
    deleted         modified   modified   deleted

A file move is a delete of the source plus a create of the destination. A directory created,
deleted or moved turns into a reconcile of that subtree (both ends of a move), because
watchers report directory moves unreliably. More than `max_paths` distinct paths collapse
into reconciles of their parent folders (or the whole library, ""): cost stays bounded and a
lost event cannot matter. The window is due after `quiet` seconds without events, and no later
than `max_wait` seconds after its first event. The engine re-checks every path on disk, and
applies deletes last, so the event kind is only a hint.

`Debouncer` is the thread: it sleeps until the window is due and hands the batch to a sink
(the worker queue) *outside* its lock, so the watcher never waits on the sync.
"""

from __future__ import annotations

import enum
import posixpath
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from objlibd.models import Batch, EventKind, RawEvent

MAX_RESCAN_DIRS = 16  # above this many folders to reconcile, reconcile their common ancestor
LIBRARY = ""  # the subtree that means "the whole library"


class Change(enum.Enum):
    """What a path amounts to after coalescing."""

    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


_CANCEL = None
_MERGE: dict[tuple[Change | None, EventKind], Change | None] = {
    (None, EventKind.CREATED): Change.ADDED,
    (None, EventKind.MODIFIED): Change.MODIFIED,
    (None, EventKind.DELETED): Change.DELETED,
    (Change.ADDED, EventKind.CREATED): Change.ADDED,
    (Change.ADDED, EventKind.MODIFIED): Change.ADDED,
    (Change.ADDED, EventKind.DELETED): _CANCEL,
    (Change.MODIFIED, EventKind.CREATED): Change.MODIFIED,
    (Change.MODIFIED, EventKind.MODIFIED): Change.MODIFIED,
    (Change.MODIFIED, EventKind.DELETED): Change.DELETED,
    (Change.DELETED, EventKind.CREATED): Change.MODIFIED,
    (Change.DELETED, EventKind.MODIFIED): Change.MODIFIED,
    (Change.DELETED, EventKind.DELETED): Change.DELETED,
}


def merge_change(earlier: Change | None, kind: EventKind) -> Change | None:
    """Return what a path amounts to after `kind` follows `earlier` (None: nothing to do)."""
    return _MERGE[(earlier, kind)]


def parent_dir(path: str) -> str:
    """Return the library-relative folder holding `path` ("" for the library root)."""
    return posixpath.dirname(path)


def minimize_subtrees(
    subtrees: Iterable[str], *, max_dirs: int = MAX_RESCAN_DIRS
) -> frozenset[str]:
    """Drop subtrees inside others; collapse to the common ancestor above `max_dirs`."""
    kept: list[str] = []
    for tree in sorted(set(subtrees)):
        if tree == LIBRARY:
            return frozenset({LIBRARY})
        if kept and (tree == kept[-1] or tree.startswith(kept[-1] + "/")):
            continue
        kept.append(tree)
    if len(kept) > max_dirs:
        return frozenset({posixpath.commonpath(kept) if kept else LIBRARY})
    return frozenset(kept)


def _covered(path: str, subtrees: frozenset[str]) -> bool:
    if LIBRARY in subtrees:
        return True
    return any(path == tree or path.startswith(tree + "/") for tree in subtrees)


def shape_batch(
    paths: Iterable[str],
    rescan: Iterable[str],
    *,
    max_paths: int,
    first_event_at: float = 0.0,
    reason: str = "events",
) -> Batch:
    """Build a bounded Batch: too many paths become reconciles of their folders."""
    path_set = set(paths)
    subtrees = set(rescan)
    if len(path_set) > max_paths:
        subtrees.update(parent_dir(p) for p in path_set)
        path_set = set()
        reason = "overflow"
    trees = minimize_subtrees(subtrees)
    kept = frozenset(p for p in path_set if not _covered(p, trees))
    return Batch(paths=kept, rescan=trees, first_event_at=first_event_at, reason=reason)


def merge_batches(a: Batch, b: Batch, *, max_paths: int) -> Batch:
    """Combine two batches (parked work plus new work) into one bounded batch."""
    first = min((t for t in (a.first_event_at, b.first_event_at) if t), default=0.0)
    reason = a.reason if a.reason == b.reason else f"{a.reason}+{b.reason}"
    return shape_batch(
        a.paths | b.paths,
        a.rescan | b.rescan,
        max_paths=max_paths,
        first_event_at=first,
        reason=reason,
    )


@dataclass
class DebounceWindow:
    """Collects events until they are due; pure (time is passed in)."""

    quiet: float
    max_wait: float
    max_paths: int
    # Bounded: at most max_paths + 1 entries (then they collapse into `_rescan`); both are
    # replaced by empty ones in `take`, so nothing outlives its batch.
    _changes: dict[str, Change] = field(default_factory=dict)
    # Bounded by the folders touched in one window (overflow adds parents, not paths).
    _rescan: set[str] = field(default_factory=set)
    _overflow: bool = False
    _first: float | None = None
    _last: float | None = None
    _first_wall: float = 0.0

    def add(self, event: RawEvent, now: float) -> None:
        """Record one event seen at `now`."""
        if self._first is None:
            self._first = now
            self._first_wall = event.at
        self._last = now
        if event.is_directory:
            self._add_directory(event)
        elif event.kind is EventKind.MOVED:
            self._touch(event.path, EventKind.DELETED)
            if event.dest is not None:
                self._touch(event.dest, EventKind.CREATED)
        else:
            self._touch(event.path, event.kind)

    def _add_directory(self, event: RawEvent) -> None:
        self._rescan.add(event.path)
        if event.kind is EventKind.MOVED and event.dest is not None:
            self._rescan.add(event.dest)

    def _touch(self, path: str, kind: EventKind) -> None:
        if self._overflow:
            self._rescan.add(parent_dir(path))
            return
        merged = merge_change(self._changes.get(path), kind)
        if merged is None:
            self._changes.pop(path, None)
        else:
            self._changes[path] = merged
        if len(self._changes) > self.max_paths:
            self._overflow = True
            self._rescan.update(parent_dir(p) for p in self._changes)
            self._changes.clear()

    def deadline(self) -> float | None:
        """Return when the window becomes due (None while empty)."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_wait)

    def due(self, now: float) -> bool:
        """Return True when the window has events and is quiet or old enough."""
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    @property
    def pending_paths(self) -> int:
        """Return how many distinct paths and subtrees wait in the window."""
        return len(self._changes) + len(self._rescan)

    def changes(self) -> dict[str, Change]:
        """Return a copy of the coalesced per-path changes (for tests and logs)."""
        return dict(self._changes)

    def sizes(self) -> dict[str, int]:
        """Return the sizes of the window's collections (both empty again after `take`)."""
        return {"changes": len(self._changes), "rescan": len(self._rescan)}

    def take(self) -> Batch:
        """Return the pending work as a Batch and start a new window."""
        batch = shape_batch(
            self._changes,
            self._rescan,
            max_paths=self.max_paths,
            first_event_at=self._first_wall,
            reason="overflow" if self._overflow else ("directory" if self._rescan else "events"),
        )
        self._changes = {}
        self._rescan = set()
        self._overflow = False
        self._first = self._last = None
        self._first_wall = 0.0
        return batch


def coalesce(events: Iterable[RawEvent], *, max_paths: int) -> Batch:
    """Reduce `events` to one Batch, as a window that is due would."""
    window = DebounceWindow(quiet=0.0, max_wait=0.0, max_paths=max_paths)
    for event in events:
        window.add(event, event.at)
    return window.take()


class Debouncer:
    """The thread around a DebounceWindow: events in, due batches out to `sink`."""

    def __init__(
        self,
        window: DebounceWindow,
        sink: Callable[[Batch], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._sink = sink
        self._clock = clock
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="objlibd-debounce", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def put(self, event: RawEvent) -> None:
        """Add an event (called from the watcher's thread; never blocks on the sink)."""
        with self._cond:
            self._window.add(event, self._clock())
            self._cond.notify()

    @property
    def pending_paths(self) -> int:
        """Return how many paths wait in the window."""
        with self._cond:
            return self._window.pending_paths

    def sizes(self) -> dict[str, int]:
        """Return the window's collection sizes (for `Daemon.sizes`)."""
        with self._cond:
            return self._window.sizes()

    def flush(self) -> Batch:
        """Take whatever is pending now (empty Batch when nothing is)."""
        with self._cond:
            return self._window.take()

    def stop(self, *, flush: bool = True, timeout: float = 5.0) -> None:
        """Stop the thread; with `flush`, hand pending work to the sink first."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if flush:
            batch = self.flush()
            if not batch.empty:
                self._sink(batch)

    def _run(self) -> None:
        while self._pass_on():
            pass

    def _pass_on(self) -> bool:
        """Hand the next due batch to the sink; return False once stopping.

        A method of its own so the batch handed on is not kept alive while the thread waits.
        """
        batch = self._wait_for_due()
        if batch is None:
            return False
        if not batch.empty:
            self._sink(batch)
        return True

    def _wait_for_due(self) -> Batch | None:
        with self._cond:
            while not self._stopping:
                now = self._clock()
                deadline = self._window.deadline()
                if deadline is not None and now >= deadline:
                    return self._window.take()
                self._cond.wait(None if deadline is None else deadline - now)
            return None
