"""The daemon's composition root: `objlibd run`.

Threads, and who talks to whom:
- main thread: signals, and a 0.5 s monitor loop that probes the volume every
  `volume_poll_seconds` (sooner when the mount-point parent changes), checks the watch's
  liveness every second (rebuilding a dead one with backoff, then reconciling), notices a
  suspend (`suspend.py`: re-probe, rebuild the watch, reconcile), notices `objlibd
  pause`/`resume`, and rewrites the heartbeat file `status` reads (its live facts for the
  health model and the notifications: `objlibd.vitals`);
- watchdog observer + emitter: RawEvents into the debouncer; an inotify overflow or lost
  FSEvents become a reconcile of the library or of the subtree named;
- debouncer: due batches into the worker's queue;
- APScheduler: job names into the worker's queue;
- worker: the only writer. It runs batches, reconciles and jobs through the engine's
  incremental entry point, and parks work while the volume is unavailable or the daemon is
  paused (parked work runs on mount/resume; a mount also starts a catch-up reconcile).

Nothing is ever marked missing here: the engine re-probes before it marks, and an
unavailable volume only parks work. SIGTERM/SIGINT stop the watch, flush the debouncer into
the queue, let the engine abandon its batch between files, persist the parked work, and exit 0
well within 10 s. SIGHUP does not reload: the config is read at start (restart to apply it).
SIGUSR2 drops the watch's emitter on purpose, exercising the self-healing path. A
`heap.request` file in the state dir asks for a memory report (see `heap`).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from objlibd import __version__, heap, heartbeat, notify, status, statuscache, volume
from objlibd.config import Config
from objlibd.debounce import Debouncer, DebounceWindow
from objlibd.errors import ObjlibdError
from objlibd.jobs import JobScheduler
from objlibd.models import Availability, Batch, VolumeState
from objlibd.pidfile import PIDFILE_NAME, PidFile
from objlibd.scanner import Filters
from objlibd.state import StateStore
from objlibd.suspend import SleepWatch
from objlibd.vitals import Vitals
from objlibd.volume import LIBRARY_ID_KEY, probe
from objlibd.watcher import LibraryWatcher, MountWatch, Rescan, WatchBackoff
from objlibd.worker import Work, Worker

log = structlog.get_logger("objlibd.service")

STOP_BUDGET = 8.0  # seconds from SIGTERM to exit; launchd waits longer, people do not
TICK = 0.5
WATCH_CHECK = 1.0
STORE_RETRY = 60.0  # seconds between two tries of work parked on a store that did not answer
TRIM_EVERY = 10.0  # seconds between malloc trims, and only after the worker wrote something
RELEASE_EVERY = 60.0  # seconds between drops of SQLite's page caches (re-reading costs a little)


def volume_transition(before: VolumeState | None, after: VolumeState) -> str | None:
    """Return "mounted", "moved" (elsewhere now), "unavailable", "changed" (reason) or None."""
    if after.available:
        if before is None or not before.available:
            return "mounted"
        return "moved" if before.found_at != after.found_at else None
    if before is None or before.available:
        return "unavailable"
    same = (before.availability, before.reason) == (after.availability, after.reason)
    return None if same else "changed"


class Daemon:
    """One resident daemon for one config (one state dir)."""

    def __init__(
        self,
        config: Config,
        *,
        stop: threading.Event | None = None,
        on_claimed: Callable[[], None] = lambda: None,
        notify_runner: notify.Runner = notify.run_command,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self._on_claimed = on_claimed
        self._wall, self._monotonic = wall, monotonic
        self._sleep = SleepWatch()
        self.volume = VolumeState(Availability.UNAVAILABLE, "not probed yet")
        self._wake = threading.Event()
        self._started = time.time()
        self._next_probe = 0.0
        self._next_watch = 0.0
        self._next_beat = 0.0
        self._paused = False
        self._rebuilds = 0
        self._backoff = WatchBackoff()
        self._process: Any = None
        self._db_facts: dict[str, Any] = {}  # replaced on refresh: counts, 5 errors, the hold
        self._db_key = (-1, -1)  # (worker generation, the reader's data_version)
        self._watch_problem: str | None = None  # the watch cannot start: reconciling instead
        self._next_fallback = 0.0
        self._heartbeat = heartbeat.Heartbeat(config.state.dir / status.HEARTBEAT_NAME)
        self._lost: str | None = None  # set by the worker thread: the drive went mid-batch
        self.vitals = Vitals(config, runner=notify_runner)
        self._trim_key = (0, 0.0)  # (worker generation, monotonic time) of the last trim

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def abandoned_work(self) -> bool:
        """Return True if the worker was still busy (an upload in flight) when the stop ended."""
        return hasattr(self, "worker") and self.worker.alive

    def run(self) -> int:
        """Run until stopped; return the exit code (0)."""
        heap.start_from_env()  # before anything is built, so every allocation is traced
        heap.limit_arenas()  # before the threads start: fewer, fuller malloc heaps
        claim = PidFile(self.config.state.dir / PIDFILE_NAME)
        claim.acquire()
        self._on_claimed()
        if claim.took_over is not None:
            log.warning("pidfile.taken_over", stale_pid=claim.took_over.pid)
        try:
            self._build()
            self._install_signals()
            self._start()
            while not self.stop.is_set():
                self._guarded_tick(self._monotonic())
                self.stop.wait(TICK)
        finally:
            self._shutdown()
            claim.release()
        return 0

    def _build(self) -> None:
        import psutil  # type: ignore[import-untyped]  # no stubs in the dev env

        from objlibd.sync import SyncEngine, open_store_for

        config = self.config
        self._process = psutil.Process()
        # Two SQLite connections, each bounded by SQLite's default page cache (cache_size
        # -2000: about 2 MiB) and Python's 128 cached statements (state.py keeps the shapes few).
        self.state = StateStore.open(config.db_path, repair=True)
        if self.state.rebuilt is not None:
            log.warning("state.damaged", action="moved aside, started fresh", **self.state.rebuilt)
        self.reader = StateStore.open(config.db_path, readonly=True)
        self.store = open_store_for(config, self.state, stop=self.stop)
        engine = SyncEngine(
            config, self.state, self.store, stop=self.stop,
            progress=lambda *step: self.vitals.on_progress(self.worker.current, *step),
        )  # fmt: skip
        self.scheduler = JobScheduler(
            config.jobs, lambda name: self.worker.submit(Work.scheduled(name))
        )
        self.worker = Worker(
            config, self.state, engine, self.stop, self.scheduler.next_runs,
            on_volume_lost=self._on_volume_lost,
        )  # fmt: skip
        window = DebounceWindow(
            quiet=config.sync.quiet_seconds,
            max_wait=config.sync.max_wait_seconds,
            max_paths=config.sync.batch_max_paths,
        )
        self.debouncer = Debouncer(window, lambda batch: self.worker.submit(Work.of(batch)))
        self.watcher = LibraryWatcher(
            config.library.root,
            Filters.from_settings(config.library),
            self.debouncer.put,
            on_overflow=self._on_overflow,
            on_rescan=self._on_rescan,
        )
        self.mount_watch = MountWatch(config.library.mount_point.parent, self._wake.set)

    def _start(self) -> None:
        self._paused = status.read_pause(self.config.state.dir) is not None
        self.worker.paused = self._paused
        self.worker.start()
        self.debouncer.start()
        self.scheduler.start()
        self.mount_watch.start()
        try:
            statuscache.write_pointer(self.config)  # `objlibd status` skips loading the config
        except OSError as err:
            log.warning("status.pointer_failed", error=str(err))
        log.info(
            "daemon.started", pid=os.getpid(), version=__version__, paused=self._paused,
            library=str(self.config.library.root), store=self.config.store.name,
            backend=self.config.store.backend,
        )  # fmt: skip

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the caller sets `stop`
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR2, self._on_fault)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        log.info("daemon.signal", signal=signal.Signals(signum).name)

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        log.warning(
            "config.reload_unsupported",
            hint="the config is read at start; restart the daemon to apply changes "
            "(launchctl kickstart -k gui/$UID/<label>)",
        )

    def _on_fault(self, _signum: int, _frame: FrameType | None) -> None:
        log.warning("watcher.fault_injected")
        self.watcher.kill_emitters()

    def _on_overflow(self) -> None:
        log.warning("watcher.overflow", action="reconcile the library")
        self.worker.submit(Work.reconcile("overflow"))

    def _on_rescan(self, rescan: Rescan) -> None:
        """The OS says events were lost (FSEvents flags): reconcile where it says ("" = all)."""
        log.warning("watcher.events_lost", reason=rescan.reason, subtree=rescan.subtree)
        batch = Batch(rescan=frozenset({rescan.subtree}), reason=rescan.reason)
        self.worker.submit(Work("batch", batch, reason=rescan.reason))

    def _shutdown(self) -> None:
        if not hasattr(self, "worker"):
            return  # failed while building: nothing started
        deadline = time.monotonic() + STOP_BUDGET
        log.info("daemon.stopping")
        self.mount_watch.stop()
        self.watcher.stop()
        self.scheduler.shutdown()
        self.debouncer.stop(flush=True)  # pending events go to the queue; the worker parks them
        self.worker.finish(timeout=max(0.5, deadline - time.monotonic()))
        if self.worker.alive:
            log.warning("daemon.stop_timeout", doing=self.worker.current)
            self.worker.persist_now()  # stuck in a call: its batch is redone at the next start
        else:
            self.store.close()
            self.state.close()
        self._beat(stopped=True)
        self.reader.close()
        log.info("daemon.stopped", uptime_s=round(time.time() - self._started, 1))

    # -- monitor loop ------------------------------------------------------------------------

    _tick_error: str | None = None

    def _guarded_tick(self, now: float) -> None:
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
        if (slept := self._sleep.check(self._wall(), now)) is not None and self._probed:
            self._on_woke(slept, now)
        if now >= self._next_probe or self._wake.is_set():
            self._wake.clear()
            self._next_probe = now + self.config.sync.volume_poll_seconds
            self._check_volume()
        if now >= self._next_watch:
            self._next_watch = now + WATCH_CHECK
            if self.volume.available:
                self._check_watch(now)
        self._check_pause()
        self._check_requests()
        if now >= self._next_beat:
            self._next_beat = now + self.config.sync.heartbeat_seconds
            self._beat()
        if now >= self._next_store_retry:
            self._next_store_retry = now + STORE_RETRY
            self._retry_store()
        generation, at = self._trim_key
        if generation != self.worker.generation and now - at >= TRIM_EVERY:
            self._trim_key = (self.worker.generation, now)
            self._release_memory(now)

    _next_store_retry = 0.0

    def _release_memory(self, now: float) -> None:
        """After work: SQLite's page caches (both state connections, the store's index; at most
        once a minute) and glibc's free pages go back, so RSS follows what is alive, not what
        was touched. A few ms each; the trim runs often because a batch's garbage is freed in
        scattered chunks that only a trim hands back."""
        if now - self._released_at >= RELEASE_EVERY:
            self._released_at = now
            try:
                self.state.release_memory()
                self.reader.release_memory()
                self.store.release_memory()
            except (sqlite3.DatabaseError, ObjlibdError) as err:  # the heartbeat reports it
                log.debug("memory.release_failed", error=str(err))
        heap.trim()

    _released_at = 0.0

    def _retry_store(self) -> None:
        """Work parked on a store that stopped answering is tried again, so that it runs (and
        'store unreachable' clears) soon after the store answers, not at the next change."""
        failing = self._health().get("failing_for_s") is not None
        if failing and self.worker.parked_paths and self.volume.available and not self._paused:
            log.info("store.retry_parked", parked=self.worker.parked_paths)
            self.worker.submit(Work.resume())

    def _check_volume(self) -> None:
        self._take_lost()
        found = probe(self.config.library, self.reader.get_config(LIBRARY_ID_KEY))
        change = volume_transition(self.volume, found) if self._probed else "first"
        before, self.volume = self.volume, found
        self.worker.volume = found
        self._probed = True
        if change is not None:
            self.vitals.volume_since = time.time()
        if change == "first":
            change = "mounted" if found.available else "unavailable"
        if change in ("mounted", "moved"):
            self._on_mounted()
        elif change == "unavailable":
            self._on_unavailable(found, was_available=before.available)
        elif change == "changed":
            log.warning("volume.changed", state=found.availability.value, reason=found.reason)

    _probed = False

    def _on_woke(self, slept: float, now: float) -> None:
        """After a suspend: re-probe, rebuild the watch, reconcile, let late jobs run."""
        before = self.volume
        self._next_probe = now + self.config.sync.volume_poll_seconds
        self._check_volume()  # a mount or an unmount in between is handled there
        log.info("daemon.woke", slept_s=round(slept, 1), volume=self.volume.availability.value,
                 action="re-probed the volume; rebuild the watch, reconcile")  # fmt: skip
        if before.available and self.volume.available and before.found_at == self.volume.found_at:
            # Still there, as far as a probe tells: events may have been lost meanwhile.
            self._start_watch(reason="wake")
            self.worker.submit(Work.reconcile("wake"))
        self.scheduler.wakeup()  # jobs missed while asleep run once (misfire grace, coalesce)

    def _on_volume_lost(self, reason: str) -> None:
        """The worker's engine found the drive gone mid-batch (worker thread)."""
        self._lost = reason
        self._wake.set()

    def _take_lost(self) -> None:
        """Believe the worker: the drive went away, even if it is back by the next poll."""
        reason, self._lost = self._lost, None
        if reason is None or not self.volume.available:
            return
        lost = VolumeState(Availability.UNAVAILABLE, reason)
        self._on_unavailable(lost, was_available=True)
        self.volume = lost
        self.vitals.volume_since = time.time()

    def _on_mounted(self) -> None:
        where = volume.located(self.config.library, self.volume)
        log.info("volume.mounted", reason=self.volume.reason, root=str(where.root))
        self._backoff = WatchBackoff()
        self._start_watch(reason="mount")
        self.worker.submit(Work.catch_up("mount"))
        self.scheduler.wakeup()

    def _on_unavailable(self, found: VolumeState, *, was_available: bool) -> None:
        self.watcher.stop()
        self._watch_problem = None  # nothing to watch now; the next mount tries afresh
        log.warning(
            "volume.unmounted" if was_available else "volume.unavailable",
            state=found.availability.value, reason=found.reason, hint=found.hint,
            action="watching stopped; work parked; nothing is marked missing",
        )  # fmt: skip

    def _start_watch(self, *, reason: str) -> bool:
        try:
            self.watcher.start(volume.located(self.config.library, self.volume).root)
        except Exception as err:  # noqa: BLE001 - any failure: reconcile on a timer instead
            now = self._monotonic()
            retry = self._backoff.on_failure(now) - now
            every = self.config.sync.max_wait_seconds
            why = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
            self._watch_problem = (
                f"the file watch cannot start ({why[:200]}); the library is reconciled "
                f"every {every:g} s instead"
            )
            self._next_fallback = now + every  # the mount's own reconcile runs first
            log.warning(
                "watcher.start_failed", error=why, retry_in_s=round(retry, 1),
                fallback=f"reconcile every {every:g} s",
            )  # fmt: skip
            return False
        self._watch_problem = None
        log.info("watcher.started", root=str(self.watcher.root), reason=reason)
        return True

    def _check_watch(self, now: float) -> None:
        if self.watcher.alive():
            self._backoff.on_alive(now)
            return
        if self.watcher.running:
            self.watcher.stop()
            retry = self._backoff.on_failure(now) - now
            log.warning("watcher.died", retry_in_s=round(retry, 1), failures=self._backoff.failures)
            return
        if self._backoff.may_retry(now) and self._start_watch(reason="rebuild"):
            self._rebuilds += 1
            log.warning("watcher.rebuilt", rebuilds=self._rebuilds, action="reconcile the library")
            self.worker.submit(Work.reconcile("watch_rebuilt"))
        elif self._watch_problem is not None and now >= self._next_fallback:
            self._next_fallback = now + self.config.sync.max_wait_seconds
            self.worker.submit(Work.reconcile("watch_fallback"))

    def _check_pause(self) -> None:
        paused = (self.config.state.dir / status.PAUSE_NAME).exists()
        if paused == self._paused:
            return
        self._paused = self.worker.paused = paused
        if paused:
            log.warning("daemon.paused", action="uploads and deletes stop; watching continues")
        else:
            log.info("daemon.resumed")
            self.worker.submit(Work.resume())
            self.scheduler.wakeup()

    def _check_requests(self) -> None:
        """Pick up operator requests the CLI leaves in the state dir (it never writes the DB)."""
        request = self.config.state.dir / status.CONFIRM_MISSING_NAME
        if request.exists():
            revision = (status.read_json(request) or {}).get("revision")
            request.unlink(missing_ok=True)
            log.info("missing.confirm_requested", revision=revision)
            self.worker.submit(
                Work.confirm_missing(revision if isinstance(revision, int) else None)
            )
        heap.answer_request(self.config.state.dir, self.sizes)

    def sizes(self) -> dict[str, Any]:
        """Return the sizes of the in-memory collections kept across batches (all bounded)."""
        import logging

        return {
            "debounce": self.debouncer.sizes(),
            "worker": self.worker.sizes(),
            "loggers": len(logging.Logger.manager.loggerDict),  # one per module name
            "threads": threading.active_count(),
        }

    # -- heartbeat ---------------------------------------------------------------------------

    def _beat(self, *, stopped: bool = False) -> None:
        now = time.time()
        pending = self.debouncer.pending_paths + self.worker.pending_paths
        beat: dict[str, Any] = {
            "pid": os.getpid(),
            "version": __version__,
            "started_epoch": self._started,
            "updated_epoch": now,
            "updated_at": status.iso(now),
            "stopped": stopped,
            "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "volume": {"state": self.volume.availability.value, "reason": self.volume.reason,
                       "hint": self.volume.hint, "cause": self.volume.cause,
                       "found_at": self.volume.found_at},
            "watcher": {"alive": self.watcher.alive(), "rebuilds": self._rebuilds,
                        "events_seen": self.watcher.events_seen},
            "paused": self._paused,
            "queue": {"pending_paths": pending, "parked_paths": self.worker.parked_paths},
            "current": self.worker.current,
            "last_batch": self.worker.last_batch,
            "next_runs": self.scheduler.next_runs(),
            "remote": self._health(),
            "problem": self.worker.problem,
            "problem_fix": self.worker.problem_fix,
            "watch_failed": self._watch_problem,
            "state_disk_full": self._heartbeat.disk_problem or self.worker.state_disk_full,
            "db": self._cached_db_facts(),
        }  # fmt: skip
        self.vitals.add(beat, busy=bool(self.worker.current), notes=self.worker.store_notes,
                        now=now)  # fmt: skip
        if not stopped:
            self.vitals.judge(beat, now)
        if self._heartbeat.write(beat):  # space is back after a full disk: catch up now
            self.worker.submit(Work.reconcile("state_disk_back"))

    def _cached_db_facts(self) -> dict[str, Any]:
        # Recomputed only when the DB changed (our worker, or a one-shot CLI command: SQLite's
        # data_version): on a 50k library it costs ~0.13 CPU s, most of an idle daemon's CPU.
        try:
            key = (self.worker.generation, self.reader.data_version())
            if key != self._db_key:
                self._db_key = key
                self._db_facts = status.db_facts(self.reader)
        except (sqlite3.DatabaseError, ObjlibdError) as err:  # damaged under us: say so
            self._db_facts = {**self._db_facts, "problem": f"state database: {err}"}
        return self._db_facts

    def _health(self) -> dict[str, object]:
        try:
            return self.store.health()
        except Exception as err:  # noqa: BLE001 - status must not take the daemon down
            return {"error": str(err)}
