"""The running daemon's parts and the main thread's monitor loop over them.

Built once the pidfile is claimed (`Daemon.run`): the state DB (a writer for the worker, a
reader for the heartbeat), the store, the engine, the worker, the scheduler, the debouncer,
the watch and the mount-point watch. Every 0.5 s tick it: notices a suspend (`suspend`:
re-probe, rebuild the watch, reconcile); probes the volume every `volume_poll_seconds`
(`drive`); checks the watch every second (`watch`); picks up the CLI's requests (`requests`);
rewrites the heartbeat (`heartbeat`, facts from `vitals`); retries work parked on a store that
stopped answering; and trims malloc's heap after the worker wrote something.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from objlibd import __version__
from objlibd.config import Config
from objlibd.engine import volume
from objlibd.errors import ObjlibdError
from objlibd.models import VolumeState
from objlibd.runtime import heap, heartbeat
from objlibd.runtime.debounce import Debouncer, DebounceWindow
from objlibd.runtime.drive import DriveTracker
from objlibd.runtime.requests import OperatorRequests
from objlibd.runtime.scheduler import JobScheduler
from objlibd.runtime.suspend import SleepWatch
from objlibd.runtime.vitals import Vitals
from objlibd.runtime.watch import WatchKeeper
from objlibd.runtime.watcher import MountWatch
from objlibd.runtime.work import Work
from objlibd.runtime.worker import Worker
from objlibd.state import keys
from objlibd.state.database import DatabaseError
from objlibd.state.store import StateStore
from objlibd.status import files
from objlibd.status import view as status

log = structlog.get_logger("objlibd.service")

STOP_BUDGET = 8.0  # seconds from SIGTERM to exit; launchd waits longer, people do not
WATCH_CHECK = 1.0
STORE_RETRY = 60.0  # seconds between two tries of work parked on a store that did not answer
TRIM_EVERY = 10.0  # seconds between two releases of memory, and only after the worker wrote


def release_due(last: tuple[int, float], generation: int, now: float) -> bool:
    """Is memory to be given back now? Only after work (the worker's `generation` moved since
    the `last` release: an idle daemon holds nothing new) and at most every TRIM_EVERY."""
    last_generation, last_at = last
    return generation != last_generation and now - last_at >= TRIM_EVERY


class Monitor:
    """The daemon's parts, started and stopped together, and the loop that watches over them."""

    def __init__(
        self,
        config: Config,
        stop: threading.Event,
        vitals: Vitals,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        import psutil  # type: ignore[import-untyped]  # no stubs in the dev env

        from objlibd.engine.sync import SyncEngine, open_store_for

        self.config, self.stop, self.vitals = config, stop, vitals
        self._wall, self._monotonic = wall, monotonic
        self._sleep = SleepWatch()
        self._started = time.time()
        self._next_probe = self._next_watch = self._next_beat = self._next_store_retry = 0.0
        self._process = psutil.Process()
        self._db_facts: dict[str, Any] = {}  # replaced on refresh: counts, 5 errors, the hold
        self._db_key = (-1, -1)  # (worker generation, the reader's data_version)
        self._trim_key = (0, 0.0)  # (worker generation, monotonic time) of the last trim
        self._tick_error: str | None = None
        self._heartbeat = heartbeat.Heartbeat(config.state.dir / files.HEARTBEAT_NAME)
        # Two SQLite connections, each bounded by its page cache (the writer SQLite's default
        # ~2 MiB, the reader 512 KiB; both dropped after work) and its cached statements (a
        # few dozen: state.part.in_lists pads every list lookup to one of 7 shapes).
        self.state = StateStore.open(config.db_path, repair=True)
        if self.state.db.rebuilt is not None:
            log.warning(
                "state.damaged", action="moved aside, started fresh", **self.state.db.rebuilt
            )
        self.reader = StateStore.open(config.db_path, readonly=True)
        self.drive = DriveTracker(
            config.library, lambda: self.reader.values.get_config(keys.LIBRARY_ID)
        )
        self.store = open_store_for(config, self.state, stop=stop)
        engine = SyncEngine(
            config, self.state, self.store, stop=stop,
            progress=lambda *step: vitals.on_progress(self.worker.status.current, *step),
        )  # fmt: skip
        self.scheduler = JobScheduler(
            config.jobs, lambda name: self.worker.submit(Work.scheduled(name))
        )
        self.worker = Worker(
            config, self.state, engine, stop, self.scheduler.next_runs,
            on_volume_lost=self.drive.report_lost,
        )  # fmt: skip
        window = DebounceWindow(
            quiet=config.sync.quiet_seconds,
            max_wait=config.sync.max_wait_seconds,
            max_paths=config.sync.batch_max_paths,
        )
        self.debouncer = Debouncer(window, lambda batch: self.worker.submit(Work.of(batch)))
        self.watch = WatchKeeper(
            config, self.debouncer.put, self.worker.submit, monotonic=monotonic
        )
        self.mount_watch = MountWatch(config.library.mount_point.parent, self.drive.wake.set)
        self.requests = OperatorRequests(
            config.state.dir, self.worker, on_resume=self.scheduler.wakeup, sizes=self.sizes
        )

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Start every thread; note the pointer `objlibd status` follows."""
        self.requests.load()
        self.worker.start()
        self.debouncer.start()
        self.scheduler.start()
        self.mount_watch.start()
        try:
            files.write_pointer(self.config)  # `objlibd status` skips loading the config
        except OSError as err:
            log.warning("status.pointer_failed", error=str(err))
        log.info(
            "daemon.started", pid=os.getpid(), version=__version__, paused=self.requests.paused,
            library=str(self.config.library.root), store=self.config.store.name,
            backend=self.config.store.backend,
        )  # fmt: skip

    def shutdown(self) -> None:
        """Stop the watch, flush the debouncer into the queue, let the worker persist, exit."""
        deadline = time.monotonic() + STOP_BUDGET
        log.info("daemon.stopping")
        self.mount_watch.stop()
        self.watch.watcher.stop()
        self.scheduler.shutdown()
        self.debouncer.stop(flush=True)  # pending events go to the queue; the worker parks them
        self.worker.finish(timeout=max(0.5, deadline - time.monotonic()))
        if self.worker.alive:
            log.warning("daemon.stop_timeout", doing=self.worker.status.current)
            self.worker.parked.persist_now()  # stuck in a call: its batch is redone at the next start
        else:
            self.store.close()
            self.state.close()
        self.beat(stopped=True)
        self.reader.close()
        log.info("daemon.stopped", uptime_s=round(time.time() - self._started, 1))

    # -- the loop ----------------------------------------------------------------------------

    def guarded_tick(self, now: float) -> None:
        """Run one monitor tick; a failure is logged once (not every tick) and survived."""
        try:
            self._tick(now)
        except Exception as err:  # the monitor must outlive any one failure
            text = f"{type(err).__name__}: {err}"
            if text != self._tick_error:
                log.exception("daemon.tick_failed", error=text)
            self._tick_error = text
        else:
            self._tick_error = None

    def _tick(self, now: float) -> None:
        if (slept := self._sleep.check(self._wall(), now)) is not None and self.drive.probed:
            self._on_woke(slept, now)
        if now >= self._next_probe or self.drive.wake.is_set():
            self.drive.wake.clear()
            self._next_probe = now + self.config.sync.volume_poll_seconds
            self._check_volume()
        if now >= self._next_watch:
            self._next_watch = now + WATCH_CHECK
            if self.drive.volume.available:
                self.watch.check(now, self._root)
        self.requests.check()
        if now >= self._next_beat:
            self._next_beat = now + self.config.sync.heartbeat_seconds
            self.beat()
        if now >= self._next_store_retry:
            self._next_store_retry = now + STORE_RETRY
            self._retry_store()
        generation = self.worker.status.generation
        if release_due(self._trim_key, generation, now):
            self._trim_key = (generation, now)
            self.release_memory()

    def release_memory(self) -> None:
        """After work: SQLite's page caches (both state connections, the store's index) and
        glibc's free pages go back, so RSS follows what is alive, not what the last batch or
        job touched. Under a millisecond on a 20k-file DB; a batch after it re-reads the few
        pages it needs from the OS's cache. Often (10 s), because a job fills each cache to its
        2 MiB and a batch's garbage is freed in scattered chunks that only a trim hands back."""
        try:
            self.state.db.release_memory()
            self.reader.db.release_memory()
            self.store.release_memory()
        except (DatabaseError, ObjlibdError) as err:  # the heartbeat reports a damaged DB
            log.debug("memory.release_failed", error=str(err))
        heap.trim()

    def _root(self) -> Path:
        return volume.located(self.config.library, self.drive.volume).root

    def _retry_store(self) -> None:
        """Work parked on a store that stopped answering is tried again, so that it runs (and
        'store unreachable' clears) soon after the store answers, not at the next change."""
        failing = self._health().get("failing_for_s") is not None
        parked = self.worker.parked_paths
        if failing and parked and self.drive.volume.available and not self.requests.paused:
            log.info("store.retry_parked", parked=parked)
            self.worker.submit(Work.resume())

    def _check_volume(self) -> None:
        lost = self.drive.take_lost()
        if lost is not None:  # believe the worker: gone, even if it is back by this probe
            self._on_unavailable(lost, was_available=True)
        change, before = self.drive.probe()
        found = self.drive.volume
        self.worker.set_volume(found)
        if change in ("mounted", "moved"):
            where = volume.located(self.config.library, found)
            log.info("volume.mounted", reason=found.reason, root=str(where.root))
            self.watch.mounted(where.root)
            self.worker.submit(Work.catch_up("mount"))
            self.scheduler.wakeup()
        elif change == "unavailable":
            self._on_unavailable(found, was_available=before.available)
        elif change == "changed":
            log.warning("volume.changed", state=found.availability.value, reason=found.reason)

    def _on_unavailable(self, found: VolumeState, *, was_available: bool) -> None:
        self.watch.unavailable()
        log.warning(
            "volume.unmounted" if was_available else "volume.unavailable",
            state=found.availability.value, reason=found.reason, hint=found.hint,
            action="watching stopped; work parked; nothing is marked missing",
        )  # fmt: skip

    def _on_woke(self, slept: float, now: float) -> None:
        """After a suspend: re-probe, rebuild the watch, reconcile, let late jobs run."""
        before = self.drive.volume
        self._next_probe = now + self.config.sync.volume_poll_seconds
        self._check_volume()  # a mount or an unmount in between is handled there
        after = self.drive.volume
        log.info("daemon.woke", slept_s=round(slept, 1), volume=after.availability.value,
                 action="re-probed the volume; rebuild the watch, reconcile")  # fmt: skip
        if before.available and after.available and before.found_at == after.found_at:
            # Still there, as far as a probe tells: events may have been lost meanwhile.
            self.watch.start(self._root(), reason="wake")
            self.worker.submit(Work.reconcile("wake"))
        self.scheduler.wakeup()  # jobs missed while asleep run once (misfire grace, coalesce)

    def sizes(self) -> dict[str, Any]:
        """Return the sizes of the in-memory collections kept across batches (all bounded)."""
        return {
            "debounce": self.debouncer.sizes(),
            "worker": self.worker.sizes(),
            "loggers": len(logging.Logger.manager.loggerDict),  # one per module name
            "threads": threading.active_count(),
            # SQLite's heap by connection (the rest of `sqlite.bytes` is the store's index)
            "sqlite": {
                "state": self.state.db.held_memory(),
                "reader": self.reader.db.held_memory(),
            },
        }

    # -- heartbeat ---------------------------------------------------------------------------

    def beat(self, *, stopped: bool = False) -> None:
        """Write the heartbeat `objlibd status` reads; judge it for the notifications."""
        now = time.time()
        work = self.worker.snapshot()
        found = self.drive.volume
        beat: dict[str, Any] = {
            "pid": os.getpid(),
            "version": __version__,
            "started_epoch": self._started,
            "updated_epoch": now,
            "updated_at": files.iso(now),
            "stopped": stopped,
            "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "volume": {"state": found.availability.value, "reason": found.reason,
                       "hint": found.hint, "cause": found.cause, "found_at": found.found_at},
            "watcher": {"alive": self.watch.watcher.alive(), "rebuilds": self.watch.rebuilds,
                        "events_seen": self.watch.watcher.events_seen},
            "paused": self.requests.paused,
            "queue": {"pending_paths": self.debouncer.pending_paths + work.pending_paths,
                      "parked_paths": work.parked_paths},
            "current": work.current,
            "last_batch": work.last_batch,
            "next_runs": self.scheduler.next_runs(),
            "remote": self._health(),
            "problem": work.problem,
            "problem_fix": work.problem_fix,
            "watch_failed": self.watch.problem,
            "state_disk_full": self._heartbeat.disk_problem or work.state_disk_full,
            "db": self._cached_db_facts(work.generation),
        }  # fmt: skip
        self.vitals.volume_since = self.drive.since
        self.vitals.add(beat, busy=bool(work.current), notes=self.worker.store_notes, now=now)
        if not stopped:
            self.vitals.judge(beat, now)
        if self._heartbeat.write(beat):  # space is back after a full disk: catch up now
            self.worker.submit(Work.reconcile("state_disk_back"))

    def _cached_db_facts(self, generation: int) -> dict[str, Any]:
        # Recomputed only when the DB changed (our worker, or a one-shot CLI command: SQLite's
        # data_version): on a 50k library it costs ~0.13 CPU s, most of an idle daemon's CPU.
        try:
            key = (generation, self.reader.db.data_version())
            if key != self._db_key:
                self._db_key = key
                self._db_facts = status.db_facts(self.reader)
        except (DatabaseError, ObjlibdError) as err:  # damaged under us: say so
            self._db_facts = {**self._db_facts, "problem": f"state database: {err}"}
        return self._db_facts

    def _health(self) -> dict[str, object]:
        try:
            return self.store.health()
        except Exception as err:  # noqa: BLE001 - status must not take the daemon down
            return {"error": str(err)}
