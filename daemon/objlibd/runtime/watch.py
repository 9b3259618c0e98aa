"""The library watch's lifecycle: start it on the located root, keep it alive, stand in for it.

The monitor checks the watch every second while the volume is available: a dead one is
stopped, then rebuilt with backoff (`WatchBackoff`) and followed by a reconcile, since events
were lost meanwhile. A watch that cannot start at all is replaced by a reconcile every
`max_wait_seconds` (`problem` says so in the heartbeat). The OS's own word that events were
lost (an inotify overflow, FSEvents flags) becomes a reconcile of the library or the subtree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

from objlibd.config import Config
from objlibd.engine.filters import Filters
from objlibd.models import RawEvent
from objlibd.runtime.watcher import LibraryWatcher, Rescan, WatchBackoff
from objlibd.runtime.work import Work

log = structlog.get_logger("objlibd.service")


class WatchKeeper:
    """The LibraryWatcher, its backoff and its fallback; work goes to `submit`."""

    def __init__(
        self,
        config: Config,
        put: Callable[[RawEvent], None],
        submit: Callable[[Work], None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every = config.sync.max_wait_seconds
        self._submit = submit
        self._monotonic = monotonic
        self.watcher = LibraryWatcher(
            config.library.root,
            Filters.from_settings(config.library),
            put,
            on_overflow=self.on_overflow,
            on_rescan=self.on_rescan,
        )
        self._backoff = WatchBackoff()
        self.rebuilds = 0
        self.problem: str | None = None  # the watch cannot start: reconciling instead
        self._next_fallback = 0.0

    def on_overflow(self) -> None:
        """The OS queue overflowed: reconcile the library."""
        log.warning("watcher.overflow", action="reconcile the library")
        self._submit(Work.reconcile("overflow"))

    def on_rescan(self, rescan: Rescan) -> None:
        """The OS says events were lost (FSEvents flags): reconcile where it says ("" = all)."""
        log.warning("watcher.events_lost", reason=rescan.reason, subtree=rescan.subtree)
        self._submit(Work.rescan(rescan.subtree, rescan.reason))

    def mounted(self, root: Path) -> None:
        """A (re)mounted drive: a fresh backoff, and a watch on its library root."""
        self._backoff = WatchBackoff()
        self.start(root, reason="mount")

    def unavailable(self) -> None:
        """Nothing to watch now; the next mount tries afresh."""
        self.watcher.stop()
        self.problem = None

    def start(self, root: Path, *, reason: str) -> bool:
        """Start watching `root`; on failure reconcile on a timer instead (False)."""
        try:
            self.watcher.start(root)
        except Exception as err:  # noqa: BLE001 - any failure: reconcile on a timer instead
            now = self._monotonic()
            retry = self._backoff.on_failure(now) - now
            why = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
            self.problem = (
                f"the file watch cannot start ({why[:200]}); the library is reconciled "
                f"every {self._every:g} s instead"
            )
            self._next_fallback = now + self._every  # the mount's own reconcile runs first
            log.warning(
                "watcher.start_failed", error=why, retry_in_s=round(retry, 1),
                fallback=f"reconcile every {self._every:g} s",
            )  # fmt: skip
            return False
        self.problem = None
        log.info("watcher.started", root=str(self.watcher.root), reason=reason)
        return True

    def check(self, now: float, root: Callable[[], Path]) -> None:
        """Keep the watch alive: stop a dead one, rebuild it with backoff, or stand in for it."""
        if self.watcher.alive():
            self._backoff.on_alive(now)
            return
        if self.watcher.running:
            self.watcher.stop()
            retry = self._backoff.on_failure(now) - now
            log.warning("watcher.died", retry_in_s=round(retry, 1), failures=self._backoff.failures)
            return
        if self._backoff.may_retry(now) and self.start(root(), reason="rebuild"):
            self.rebuilds += 1
            log.warning("watcher.rebuilt", rebuilds=self.rebuilds, action="reconcile the library")
            self._submit(Work.reconcile("watch_rebuilt"))
        elif self.problem is not None and now >= self._next_fallback:
            self._next_fallback = now + self._every
            self._submit(Work.reconcile("watch_fallback"))
