"""The daemon's composition root: `objlibd run`.

Threads, and who talks to whom:
- main thread: signals, and a 0.5 s monitor loop (`runtime.monitor`) that probes the volume
  every `volume_poll_seconds` (sooner when the mount-point parent changes: `drive`), checks
  the watch's liveness every second (rebuilding a dead one with backoff, then reconciling:
  `watch`), notices a suspend (`suspend`: re-probe, rebuild the watch, reconcile), notices
  `objlibd pause`/`resume` and the CLI's other requests (`requests`), and rewrites the
  heartbeat file `status` reads (its live facts for the health model and the notifications:
  `vitals`);
- watchdog observer + emitter: RawEvents into the debouncer; an inotify overflow or lost
  FSEvents become a reconcile of the library or of the subtree named;
- debouncer: due batches into the worker's queue;
- APScheduler: job names into the worker's queue (`scheduler`);
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

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import structlog

from objlibd.config import Config
from objlibd.runtime import heap, notify
from objlibd.runtime.monitor import Monitor
from objlibd.runtime.pidfile import PIDFILE_NAME, PidFile
from objlibd.runtime.vitals import Vitals

log = structlog.get_logger("objlibd.service")

TICK = 0.5


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
        self.vitals = Vitals(config, runner=notify_runner)
        self.monitor: Monitor | None = None  # built once the pidfile is claimed

    @property
    def abandoned_work(self) -> bool:
        """Return True if the worker was still busy (an upload in flight) when the stop ended."""
        return self.monitor is not None and self.monitor.worker.alive

    def run(self) -> int:
        """Run until stopped; return the exit code (0)."""
        heap.start_from_env()  # before anything is built, so every allocation is traced
        heap.tune_malloc()  # before the threads start: two arenas, a fixed mmap threshold
        claim = PidFile(self.config.state.dir / PIDFILE_NAME)
        claim.acquire()
        self._on_claimed()
        if claim.took_over is not None:
            log.warning("pidfile.taken_over", stale_pid=claim.took_over.pid)
        try:
            monitor = self.monitor = Monitor(
                self.config, self.stop, self.vitals, wall=self._wall, monotonic=self._monotonic
            )
            try:
                self._install_signals(monitor)
                monitor.start()
                while not self.stop.is_set():
                    monitor.guarded_tick(self._monotonic())
                    self.stop.wait(TICK)
            finally:
                monitor.shutdown()
        finally:
            claim.release()
        return 0

    def _install_signals(self, monitor: Monitor) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the caller sets `stop`
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, _on_hup)

        def on_fault(_signum: int, _frame: FrameType | None) -> None:
            log.warning("watcher.fault_injected")
            monitor.watch.watcher.kill_emitters()

        signal.signal(signal.SIGUSR2, on_fault)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        log.info("daemon.signal", signal=signal.Signals(signum).name)


def _on_hup(_signum: int, _frame: FrameType | None) -> None:
    log.warning(
        "config.reload_unsupported",
        hint="the config is read at start; restart the daemon to apply changes "
        "(launchctl kickstart -k gui/$UID/<label>)",
    )
