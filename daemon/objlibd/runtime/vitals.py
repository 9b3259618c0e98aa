"""What the daemon adds to its heartbeat for the health model, and the verdict on each beat.

`StoreNotes` (worker thread) remembers what the sync summaries say about the store: that it is
full (until an upload goes through again) and its own document counts, read at most once a
minute after a batch changed them. `Vitals` (monitor thread) adds the live facts only the
daemon knows to each heartbeat: since when the volume is in its state, the running phase
(hash, upload) for rate and ETA, whether the store answers, whether the config file changed
since the start, and since when each problem stands. Then it runs the health model on the
beat (`status.assemble`, the same function `objlibd status` runs) and hands the problems to
the notifier.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import structlog

from objlibd.config import Config
from objlibd.engine import progress
from objlibd.engine.summary import SyncSummary
from objlibd.errors import ObjlibdError
from objlibd.remote.base import RemoteStore
from objlibd.runtime import notify
from objlibd.status import files
from objlibd.status import view as status

log = structlog.get_logger("objlibd.vitals")

STATS_EVERY = 60.0  # seconds between two reads of the store's own counts


class StoreNotes:
    """A full store and the store's own counts, from the summaries of the worker's runs."""

    def __init__(self, store: RemoteStore, *, clock: Any = time.monotonic) -> None:
        self.store = store
        self.full: dict[str, str] | None = None  # message, since: uploads stopped
        self.stats: dict[str, Any] | None = None
        self._clock = clock
        self._due = 0.0
        self._stale = True

    def note(self, summary: SyncSummary) -> None:
        """Take a finished run's summary (worker thread)."""
        if summary.store_full:
            since = (self.full or {}).get("since") or files.iso(time.time())
            self.full = {"message": summary.store_full, "since": since}
        elif summary.uploaded or summary.replaced:
            self.full = None  # uploads go through again
        changed = (summary.uploaded, summary.replaced, summary.adopted, summary.pruned,
                   summary.orphans_deleted, summary.lost)  # fmt: skip
        self._stale = self._stale or any(changed)
        if self._stale and self._clock() >= self._due:
            self._due = self._clock() + STATS_EVERY
            try:
                found = self.store.stats()
            except ObjlibdError as err:
                log.info("store.stats_failed", error=err.message)
                return
            self._stale = False
            if found is not None:
                self.stats = {**found, "at": files.iso(time.time())}


class Vitals:
    """The daemon's part of the heartbeat for the health model, and the notifier."""

    def __init__(self, config: Config, *, runner: notify.Runner = notify.run_command) -> None:
        self.config = config
        self.volume_since = time.time()
        self.phase = progress.Phase()
        self._phase_owner: object = None
        self._config_stamp = _stamp(config.source)
        self.notifier = notify.Notifier(
            config.notify, config.state.dir, runner=runner,
            grace=max(1.0, 3 * config.sync.heartbeat_seconds),
        )  # fmt: skip

    def on_progress(self, owner: object, phase: str, done: int, total: int) -> None:
        """Record the engine's progress for the work item `owner` (worker thread)."""
        if owner is not self._phase_owner:
            self.phase, self._phase_owner = progress.Phase(), owner
        self.phase.update(phase, done, total, time.time())

    def add(
        self, beat: dict[str, Any], *, busy: bool, notes: StoreNotes, now: float
    ) -> dict[str, Any]:
        """Add the live facts to `beat` (its `volume`, `remote` and `db` already in)."""
        remote = beat.get("remote") or {}
        failing = remote.get("failing_for_s")
        beat["volume"]["since"] = files.iso(self.volume_since)
        beat["progress"] = self.phase.as_dict(now) if busy else None
        beat["store"] = {
            "failing_since": now - float(failing) if isinstance(failing, int | float) else None,
            "error": remote.get("last_error"), "full": notes.full, "stats": notes.stats,
        }  # fmt: skip
        beat["settings"] = files.settings_of(self.config)
        beat["config_changed"] = _stamp(self.config.source) != self._config_stamp
        beat["seen"] = self._seen()
        return beat

    def judge(self, beat: dict[str, Any], now: float) -> None:
        """Run the health model on `beat`; notify what appeared or cleared; note the since-times."""
        try:
            snap = status.assemble(
                beat, beat["db"], now, settings=beat["settings"], volume=beat["volume"],
                pause=files.read_pause(self.config.state.dir),
            )  # fmt: skip
            self.notifier.observe(snap["problems"], now)
        except Exception:  # notifications must never take the daemon down
            log.exception("notify.crashed")
        beat["seen"] = self._seen()

    def _seen(self) -> dict[str, str]:
        return {code: files.iso(at) for code, at in self.notifier.seen.items()}


def _stamp(path: Path | None) -> int | None:
    """Return the config file's checksum: it changed when this does (an undo changes it back)."""
    if path is None:
        return None
    try:
        return zlib.crc32(path.read_bytes())
    except OSError:
        return None
