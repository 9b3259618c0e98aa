"""The daemon's one writer: a thread that runs batches, reconciles and jobs from one queue.

Everything that changes the state DB or the store goes through here, so there is never a
second writer. Work that cannot run now (volume unavailable, daemon paused, store
unreachable, shutdown under way) is *parked*: merged into one bounded Batch that rides along
with the next batch, runs on mount/resume, and is persisted on exit for the next start.

Items waiting in the queue are merged before running (a burst of batches becomes one engine
call). Batches and reconciles go through `SyncEngine.run_paths` (cost O(paths), subtree ""
is the whole library); jobs through the engine's job entry points.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable

import structlog

from objlibd.config import Config
from objlibd.engine.summary import SyncSummary
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import ObjlibdError, StateError, StoreMismatchError, VolumeUnavailableError
from objlibd.models import Availability, Batch, VolumeState
from objlibd.runtime import jobs
from objlibd.runtime.parking import ParkedWork
from objlibd.runtime.vitals import StoreNotes
from objlibd.runtime.work import Work, WorkKind, WorkQueue, batch_size
from objlibd.runtime.workerstatus import WorkerSnapshot, WorkerStatus
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status import files

log = structlog.get_logger("objlibd.worker")

_batch_ids = itertools.count(1)


class Worker:
    """The single-writer thread.

    Other threads talk to it only through methods (thread-safe): `submit` work, `set_volume`
    and `set_paused` (what the monitor saw; read by the worker before each batch or job), and
    `snapshot` (what it does and has shown, for the heartbeat): see `runtime.workerstatus`.
    """

    def __init__(
        self,
        config: Config,
        state: StateStore,
        engine: SyncEngine,
        stop: threading.Event,
        next_runs: Callable[[], dict[str, str | None]],
        *,
        on_volume_lost: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stop = stop
        self.next_runs = next_runs
        self.on_volume_lost = on_volume_lost
        self.store_notes = StoreNotes(engine.store)  # a full store, its counts: for status
        self.status = WorkerStatus(state.values.get_json(keys.LAST_BATCH))
        self._queue = WorkQueue()
        self.parked = ParkedWork(state, config.sync.batch_max_paths)
        # Bounded by the job names (jobs.specs: three).
        self._pending_jobs: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="objlibd-worker", daemon=True)

    # -- API for other threads ------------------------------------------------------------

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, work: Work) -> None:
        """Queue work (any thread)."""
        self._queue.submit(work)

    def drain(self, timeout: float) -> bool:
        """Wait until all work submitted so far has been handled; False on timeout."""
        return self._queue.drain(timeout)

    def finish(self, timeout: float) -> None:
        """Ask the thread to persist parked work and exit; wait up to `timeout`."""
        self._queue.finish()
        self._thread.join(timeout)

    def set_volume(self, volume: VolumeState) -> None:
        """Tell the worker what the last probe found (work parks while it is unavailable)."""
        self.status.set_volume(volume)

    def set_paused(self, paused: bool) -> None:
        """Pause (work parks, jobs are skipped) or resume; submit `Work.resume()` to catch up."""
        self.status.set_paused(paused)

    @property
    def alive(self) -> bool:
        """Return True while the thread runs."""
        return self._thread.is_alive()

    @property
    def parked_paths(self) -> int:
        """Return how many paths/subtrees are parked."""
        return self.parked.size

    @property
    def pending_paths(self) -> int:
        """Return paths queued or parked (not counting the one batch running)."""
        return self._queue.queued_paths + self.parked.size

    def snapshot(self) -> WorkerSnapshot:
        """Return what the worker does and has shown now, consistently (any thread)."""
        return self.status.snapshot(pending_paths=self.pending_paths, parked_paths=self.parked.size)

    def sizes(self) -> dict[str, int]:
        """Return the sizes of what the worker keeps between batches (for `Daemon.sizes`)."""
        return {
            "queue": self._queue.qsize(),
            "queued_paths": self._queue.queued_paths,
            **self.parked.sizes(),
            "pending_jobs": len(self._pending_jobs),
        }

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while self._turn():
            pass
        self._survive(self.parked.persist)

    def _turn(self) -> bool:
        """Run everything queued now; return False once asked to finish.

        A method of its own so its locals (the batch just run) are gone while the thread
        waits for the next work: nothing of a batch outlives it.
        """
        items = self._queue.take()
        work = [item for item in items if item is not None]
        try:
            self._survive(functools.partial(self._handle, work))
        finally:
            self._queue.handled(len(work))
        return None not in items

    def _survive(self, step: Callable[[], None]) -> None:
        """Run a step; what it failed at (a full state disk...) is a problem, not a dead thread."""
        try:
            step()
        except ObjlibdError as err:
            self.status.state_trouble(err)
            if not isinstance(err, StateError):
                self.status.set_problem(err.message, err.hint)
            log.error("worker.failed", error=err.message, hint=err.hint)
        except Exception:
            log.exception("worker.crashed")

    def _handle(self, work: list[Work]) -> None:
        merged = Batch()
        reasons: list[str] = []
        names: list[str] = []
        kinds = {item.kind for item in work}
        confirms = [item for item in work if item.kind is WorkKind.CONFIRM]
        for item in work:
            if item.kind is WorkKind.BATCH:
                merged = self.parked.merge(merged, item.batch)
                reasons.append(item.reason)
            elif item.kind is WorkKind.CATCH_UP:
                merged = self.parked.merge(merged, Work.reconcile(item.reason).batch)
                reasons.append(item.reason)
            elif item.kind is WorkKind.JOB and item.job not in names:
                names.append(item.job)
        catching_up = bool(kinds & {WorkKind.CATCH_UP, WorkKind.RESUME})
        if confirms:
            self._confirm_missing(confirms[-1].revision)
        elif catching_up:
            self._apply_stored_confirm()
        if not merged.empty or WorkKind.RESUME in kinds:
            self._run_batch(merged, "+".join(dict.fromkeys(reasons)) or "resume")
        if catching_up:
            names += [n for n in self._catch_up_jobs() if n not in names]
        for name in names:
            self._run_job(name)

    def _confirm_missing(self, revision: int | None) -> None:
        """Apply a held mass-missing a person confirmed; store it while objlibd cannot act."""
        why = self.status.blocked(self.stop.is_set())
        if why is not None:
            if not self.stop.is_set() or self.state.values.get_json(keys.CONFIRM_PENDING) is None:
                self.state.values.set_json(
                    keys.CONFIRM_PENDING,
                    {"revision": revision, "at": files.iso(time.time()), "waiting_for": why},
                )
                self.status.wrote()
            log.warning(
                "missing.confirm_deferred", reason=why,
                action="stored; applied on resume or when the drive is back",
            )  # fmt: skip
            return
        summary = self._call(lambda: self.engine.confirm_missing(revision), Batch())
        if summary is not None:
            self.state.values.delete_config(keys.CONFIRM_PENDING)
            self.status.wrote()
            log.info("missing.confirmed", missing=summary.missing, forgotten=summary.forgotten)

    def _apply_stored_confirm(self) -> None:
        stored = self.state.values.get_json(keys.CONFIRM_PENDING)
        if isinstance(stored, dict):
            revision = stored.get("revision")
            self._confirm_missing(revision if isinstance(revision, int) else None)

    # -- batches --------------------------------------------------------------------------

    def _run_batch(self, batch: Batch, trigger: str) -> None:
        why = self.status.blocked(self.stop.is_set())
        if why is not None:
            self.parked.park(batch, why)
            return
        batch = self.parked.take(batch)
        if batch.empty:
            return
        batch_id = next(_batch_ids)
        waited = time.time() - batch.first_event_at if batch.first_event_at else None
        self.status.set_current(
            {"batch_id": batch_id, "trigger": trigger, "paths": batch_size(batch)}
        )
        self.parked.running = batch
        with structlog.contextvars.bound_contextvars(
            batch_id=batch_id, reason=batch.reason, paths=len(batch.paths),
            subtrees=sorted(batch.rescan)[:10],
            waited_ms=round(waited * 1000) if waited is not None else None,
        ):  # fmt: skip
            summary = self._call(lambda: self.engine.run_paths(
                batch.paths, subtrees=batch.rescan, trigger=trigger
            ), batch)  # fmt: skip
        self.status.set_current(None)
        self.parked.running = None
        if summary is not None:
            if summary.stopped:
                self.parked.park(batch, summary.stopped)
            self._record_batch(batch, summary, trigger)

    def _call(self, body: Callable[[], SyncSummary], batch: Batch) -> SyncSummary | None:
        try:
            summary = body()
            self.status.wrote()
        except VolumeUnavailableError as err:
            self.status.wrote()  # the engine may have written before it found the volume gone
            self.parked.park(batch, f"volume unavailable: {err.message}")
            # The engine saw the drive go (a yank mid-batch) perhaps between two of the
            # monitor's polls: tell it, so a drive that is back by then gets its catch-up.
            self.status.set_volume(VolumeState(Availability.UNAVAILABLE, err.message, err.hint))
            self.on_volume_lost(err.message)
        except StoreMismatchError as err:
            self.status.set_problem(err.message, err.hint)
            log.error("store.mismatch", error=err.message, hint=err.hint)
            self.parked.park(batch, "store mismatch")
        except ObjlibdError as err:
            self.status.state_trouble(err)
            log.error("batch.failed", error=err.message, hint=err.hint)
            self.parked.park(batch, err.message)
        except Exception:
            log.exception("batch.crashed")
            self.parked.park(batch, "unexpected error (see the log)")
        else:
            self.status.succeeded()
            self.store_notes.note(summary)
            return summary
        return None

    def _record_batch(self, batch: Batch, summary: SyncSummary, trigger: str) -> None:
        now = time.time()
        last = {
            "time": files.iso(now),
            "trigger": trigger,
            "counts": summary.counts(),
            "duration_s": round(summary.duration_s, 3),
            "paths": len(batch.paths),
            "subtrees": sorted(batch.rescan)[:10],
            "latency_s": round(now - batch.first_event_at, 3) if batch.first_event_at else None,
            "hold": summary.hold_reason,
        }
        self.status.set_last_batch(last)
        self.state.values.set_json(keys.LAST_BATCH, last)
        self.status.wrote()
        if "" in batch.rescan and not summary.stopped:
            self.state.values.delete_config(keys.PENDING)

    # -- jobs -----------------------------------------------------------------------------

    def _catch_up_jobs(self) -> list[str]:
        due = jobs.catch_up(jobs.specs(self.config.jobs), self._last_runs(), time.time())
        return [*due, *(n for n in sorted(self._pending_jobs) if n not in due)]

    def _last_runs(self) -> dict[str, jobs.LastRun | None]:
        rows = {
            spec.name: self.state.jobs.last_job(spec.kind) for spec in jobs.specs(self.config.jobs)
        }
        return {
            name: jobs.LastRun(row.status, jobs.parse_db_time(row.finished_at)) if row else None
            for name, row in rows.items()
        }

    def _run_job(self, name: str) -> None:
        why = self.status.blocked(self.stop.is_set())
        spec = {s.name: s for s in jobs.specs(self.config.jobs)}[name]
        if why is not None:
            self._pending_jobs.add(name)
            if not self.stop.is_set():
                job_id = self.state.jobs.start_job(spec.kind, trigger="scheduled")
                self.state.jobs.finish_job(job_id, "skipped", {}, why)
                self.status.wrote()
                log.info("job.skipped", job=name, reason=why)
            return
        self.status.set_current({"job": name})
        with structlog.contextvars.bound_contextvars(job=name):
            summary = self._call(lambda: self._job_body(name), Batch())
        self.status.set_current(None)
        if summary is not None:
            self._pending_jobs.discard(name)
        else:
            self._pending_jobs.add(name)
        self.state.values.set_json(keys.SCHEDULE, self.next_runs())
        self.status.wrote()

    def _job_body(self, name: str) -> SyncSummary:
        if name == jobs.ORPHAN_CLEANUP:
            return self.engine.cleanup_orphans(trigger="scheduled")
        if name == jobs.PRUNE:
            return self.engine.prune_missing(trigger="scheduled")
        return self.engine.run(SyncOptions(trigger="scheduled"))
