"""The only watchdog import: a library watch that feeds RawEvents to the debouncer.

Watchdog fails quietly in three ways this module guards against (see the watch notes):
- an emitter thread can die (unhandled exception, root gone) while the observer looks alive:
  `alive()` checks the observer *and* every emitter, and the service rebuilds on failure;
- re-scheduling the same path on an observer whose emitter died creates nothing new: every
  start builds a fresh Observer;
- an inotify queue overflow only produces a log line: `OverflowListener` turns that line into
  a callback so the service can reconcile;
- watchdog's FSEvents emitter ignores the flags that say events were lost (`MustScanSubDirs`,
  `UserDropped`, `KernelDropped`, `EventIdsWrapped`): on macOS the observer is built with an
  emitter that first shows each native event to `rescan_for` (pure), and the service
  reconciles the subtree or the library it names, as for an inotify overflow.

Events are cut down at the edge: excluded names (hidden, temp, marker), ineligible
extensions, opens/closes without writes, attribute changes and directory "modified" noise
never leave this module. `raw_event` is the pure part.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from objlibd.engine.filters import Filters
from objlibd.models import EventKind, RawEvent

log = structlog.get_logger("objlibd.watcher")

_KINDS = {
    "created": EventKind.CREATED,
    "modified": EventKind.MODIFIED,
    "closed": EventKind.MODIFIED,  # closed after writing: the content is final now
    "deleted": EventKind.DELETED,
    "moved": EventKind.MOVED,
}
_DIR_KINDS = frozenset({"created", "deleted", "moved"})
# The events `raw_event` can use; watchdog turns this into the kernel's watch mask, so opens,
# reads and read-only closes (the daemon's own hashing and uploads, every folder listing of a
# walk) never even wake the observer thread.
WATCHED_EVENTS = [
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileClosedEvent,
    FileDeletedEvent, DirDeletedEvent, FileMovedEvent, DirMovedEvent,
]  # fmt: skip
OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


def relative(path: str, root: str) -> str | None:
    """Return `path` relative to `root` in POSIX form ("" for the root), None if outside."""
    if path == root:
        return ""
    prefix = root.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return None
    rel = path[len(prefix) :]
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _wanted(rel: str | None, filters: Filters, *, is_directory: bool) -> bool:
    if rel is None:
        return False
    if rel == "":
        return is_directory
    if filters.path_excluded(rel):
        return False
    return is_directory or filters.eligible(rel.rsplit("/", 1)[-1])


def raw_event(
    event_type: str,
    src: str,
    dest: str,
    *,
    is_directory: bool,
    root: str,
    filters: Filters,
    at: float,
) -> RawEvent | None:
    """Turn one watchdog event into a RawEvent, or None when it cannot matter."""
    kind = _KINDS.get(event_type)
    if kind is None or (is_directory and event_type not in _DIR_KINDS):
        return None
    rel = relative(src, root)
    src_ok = _wanted(rel, filters, is_directory=is_directory)
    if kind is not EventKind.MOVED:
        return RawEvent(kind, rel, at, is_directory) if src_ok and rel is not None else None
    rel_dest = relative(dest, root)
    dest_ok = _wanted(rel_dest, filters, is_directory=is_directory)
    if src_ok and dest_ok and rel is not None:
        return RawEvent(EventKind.MOVED, rel, at, is_directory, dest=rel_dest)
    if src_ok and rel is not None:
        return RawEvent(EventKind.DELETED, rel, at, is_directory)
    if dest_ok and rel_dest is not None:
        return RawEvent(EventKind.CREATED, rel_dest, at, is_directory)
    return None


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class NativeFlags(Protocol):
    """What `rescan_for` reads of watchdog's native FSEvents event (`_fsevents.NativeEvent`)."""

    @property
    def path(self) -> str: ...
    @property
    def must_scan_subdirs(self) -> bool: ...
    @property
    def is_user_dropped(self) -> bool: ...
    @property
    def is_kernel_dropped(self) -> bool: ...
    @property
    def is_event_ids_wrapped(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Rescan:
    """A reconcile the OS asked for: of `subtree` ("" = the library), and why."""

    subtree: str
    reason: str


def rescan_for(event: NativeFlags, root: str) -> Rescan | None:
    """Return the reconcile a native FSEvents event asks for, None for an ordinary event.

    Events were dropped (in the kernel or in our process) or the event ids wrapped: anything
    anywhere may be missed, so the whole library. `MustScanSubDirs` alone names the folder
    whose subtree was coalesced: that subtree (the library when it is outside the root).
    """
    if event.is_user_dropped or event.is_kernel_dropped:
        return Rescan("", "fsevents_dropped")
    if event.is_event_ids_wrapped:
        return Rescan("", "fsevents_ids_wrapped")
    if event.must_scan_subdirs:
        rel = relative(os.fsdecode(event.path).rstrip("/") or "/", root.rstrip("/"))
        return Rescan(rel or "", "fsevents_must_scan")
    return None


class NativeTap:
    """Mixin for watchdog's FSEvents emitter: show native events to `tap` before handling.

    watchdog's `queue_events` consumes the list, so the tap sees it first; a failing tap is
    logged and never kills the emitter thread.
    """

    def __init__(self, *args: Any, tap: Callable[[list[Any]], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tap = tap

    def queue_events(self, timeout: float, events: list[Any]) -> None:
        """Tap, then hand the events to watchdog's emitter."""
        try:
            self._tap(list(events))
        except Exception:  # the watch must survive a bug in the tap
            log.exception("watcher.tap_failed")
        super().queue_events(timeout, events)  # type: ignore[misc]


def _macos_observer(tap: Callable[[list[Any]], None]) -> BaseObserver:
    """Return an FSEvents observer whose emitter taps the native events (macOS only)."""
    from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT
    from watchdog.observers.fsevents import FSEventsEmitter, FSEventsObserver

    class TappedEmitter(NativeTap, FSEventsEmitter):  # type: ignore[misc]  # list of events
        pass

    class TappedObserver(FSEventsObserver):
        def __init__(self) -> None:  # FSEventsObserver's own __init__ fixes the emitter class
            BaseObserver.__init__(self, TappedEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, tap=tap)

    return TappedObserver()


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: LibraryWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher.handle(
            event.event_type, _text(event.src_path), _text(event.dest_path), event.is_directory
        )


class OverflowListener(logging.Handler):
    """Calls `callback` when watchdog logs that the kernel dropped events."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._callback()


class LibraryWatcher:
    """A recursive watch on the library root, rebuilt fresh on every start."""

    def __init__(
        self,
        root: Path,
        filters: Filters,
        sink: Callable[[RawEvent], None],
        *,
        on_overflow: Callable[[], None] = lambda: None,
        on_rescan: Callable[[Rescan], None] = lambda _rescan: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._root_text = str(root)
        self._filters = filters
        self._sink = sink
        self._on_rescan = on_rescan
        self._clock = clock
        self._observer: BaseObserver | None = None
        self._overflow = OverflowListener(on_overflow)
        self.events_seen = 0

    def handle(self, event_type: str, src: str, dest: str, is_directory: bool) -> None:
        """Filter and forward one event (runs on the observer's thread)."""
        self.events_seen += 1
        raw = raw_event(
            event_type, src, dest, is_directory=is_directory, root=self._root_text,
            filters=self._filters, at=self._clock(),
        )  # fmt: skip
        if raw is not None:
            self._sink(raw)

    def native(self, events: Iterable[NativeFlags]) -> None:
        """Look at FSEvents' native events (emitter thread): ask for the reconciles they need."""
        wanted = {found for event in events if (found := rescan_for(event, self._root_text))}
        if any(found.subtree == "" for found in wanted):
            wanted = {next(found for found in wanted if found.subtree == "")}
        for found in sorted(wanted, key=lambda r: (r.subtree, r.reason)):
            self._on_rescan(found)

    def start(self, root: Path | None = None) -> None:
        """Start watching (`root`, else the last one) with a fresh Observer.

        Raises OSError if the root cannot be watched.
        """
        self.stop()
        if root is not None:
            self.root, self._root_text = root, str(root)
        observer = _macos_observer(self.native) if sys.platform == "darwin" else Observer()
        observer.name = "objlibd-observer"
        observer.schedule(
            _Handler(self), self._root_text, recursive=True, event_filter=WATCHED_EVENTS
        )
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self._overflow)
        try:
            observer.start()
        except BaseException:
            self._detach_overflow()
            observer.stop()
            raise
        self._observer = observer

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching (idempotent)."""
        observer, self._observer = self._observer, None
        self._detach_overflow()
        if observer is None:
            return
        observer.stop()
        if observer.is_alive():
            observer.join(timeout)
        for emitter in list(observer.emitters):
            if emitter.is_alive():
                emitter.join(timeout)

    def _detach_overflow(self) -> None:
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._overflow)

    @property
    def running(self) -> bool:
        """Return True between start() and stop() (alive or not)."""
        return self._observer is not None

    def alive(self) -> bool:
        """Return True when the observer and every emitter thread are running."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        emitters = list(observer.emitters)
        return bool(emitters) and all(emitter.is_alive() for emitter in emitters)

    def kill_emitters(self) -> None:
        """Stop the emitter threads behind the observer's back (fault injection for tests)."""
        observer = self._observer
        if observer is not None:
            for emitter in list(observer.emitters):
                emitter.stop()


class _WakeHandler(FileSystemEventHandler):
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._wake()


class MountWatch:
    """A cheap non-recursive watch on the mount point's parent to notice mounts early.

    Where the OS reports nothing (Linux mounts over an existing directory), the service's
    poll still finds the change within its interval; this only shortens the wait.
    """

    def __init__(self, parent: Path, wake: Callable[[], None]) -> None:
        self._parent = parent
        self._wake = wake
        self._observer: BaseObserver | None = None

    def start(self) -> bool:
        """Start if the parent exists; return whether it is watched."""
        if not self._parent.is_dir():
            return False
        handler = _WakeHandler(self._wake)
        observer = Observer()
        observer.name = "objlibd-mount-observer"
        observer.schedule(handler, str(self._parent), recursive=False)
        try:
            observer.start()
        except OSError:
            return False
        self._observer = observer
        return True

    def stop(self) -> None:
        """Stop (idempotent)."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(5.0)


@dataclass
class WatchBackoff:
    """When to rebuild a failed watch: 1 s, 2 s, 4 s ... up to `cap`; reset once healthy."""

    base: float = 1.0
    cap: float = 300.0
    healthy_after: float = 60.0
    failures: int = 0
    retry_at: float = 0.0
    alive_since: float | None = None

    def on_failure(self, now: float) -> float:
        """Record a failure (dead watch or failed start); return when to try again."""
        self.failures += 1
        self.alive_since = None
        self.retry_at = now + min(self.base * 2 ** (self.failures - 1), self.cap)
        return self.retry_at

    def may_retry(self, now: float) -> bool:
        """Return True when a rebuild may be attempted."""
        return now >= self.retry_at

    def on_alive(self, now: float) -> None:
        """Record a healthy check; forget past failures after `healthy_after` seconds."""
        if self.alive_since is None:
            self.alive_since = now
        elif now - self.alive_since >= self.healthy_after:
            self.failures = 0
