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
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from objlibd.config import Config
from objlibd.engine.summary import SyncSummary
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import (
    ObjlibdError,
    StateDiskFullError,
    StateError,
    StoreMismatchError,
    VolumeUnavailableError,
)
from objlibd.models import Availability, Batch, VolumeState
from objlibd.runtime import jobs
from objlibd.runtime.debounce import merge_batches
from objlibd.runtime.vitals import StoreNotes
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status import view as status

log = structlog.get_logger("objlibd.worker")

PERSIST_MAX_PATHS = 5000
_batch_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Work:
    """One queue item: a batch/reconcile (`batch`), a job name, or a catch-up/resume."""

    kind: str
    batch: Batch = field(default_factory=Batch)
    job: str = ""
    reason: str = ""
    revision: int | None = None  # of the hold a person confirmed

    @classmethod
    def of(cls, batch: Batch) -> Work:
        """Return a debounced batch of events."""
        return cls("batch", batch, reason="batch")

    @classmethod
    def reconcile(cls, reason: str) -> Work:
        """Return a reconcile of the whole library."""
        return cls("batch", Batch(rescan=frozenset({""}), reason=reason), reason=reason)

    @classmethod
    def scheduled(cls, name: str) -> Work:
        """Return a scheduled job."""
        return cls("job", job=name, reason="scheduled")

    @classmethod
    def catch_up(cls, reason: str) -> Work:
        """Return a mount/start catch-up: reconcile, then skipped or overdue jobs."""
        return cls("catch_up", reason=reason)

    @classmethod
    def confirm_missing(cls, revision: int | None = None) -> Work:
        """Return an operator's confirmation of a held mass-missing (`objlibd missing --confirm`)."""
        return cls("confirm", reason="operator", revision=revision)

    @classmethod
    def resume(cls) -> Work:
        """Return the work to do on resume: parked paths and jobs skipped while paused."""
        return cls("resume", reason="resume")


def batch_size(batch: Batch) -> int:
    """Return how many paths and subtrees a batch holds."""
    return len(batch.paths) + len(batch.rescan)


class Worker:
    """The single-writer thread."""

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
        self.volume = VolumeState(Availability.UNAVAILABLE, "not probed yet")
        self.paused = False
        self.current: dict[str, Any] | None = None
        self.last_batch: dict[str, Any] | None = state.values.get_json(keys.LAST_BATCH)
        self.problem: str | None = None
        self.problem_fix = ""
        self.state_disk_full: str | None = None  # a write found the state disk full
        self.store_notes = StoreNotes(engine.store)  # a full store, its counts: for status
        self.generation = 0  # bumped after every DB write of ours: the status cache key
        # Drained whole on every loop turn; a burst waits here only while a batch runs.
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._queued_paths = 0
        self._lock = threading.Lock()
        self._handled = threading.Condition(self._lock)
        self._counts = [0, 0]  # work items submitted, handled (for drain)
        # One Batch, bounded by shape_batch: <= batch_max_paths paths, <= 16 subtrees.
        self._parked: Batch | None = self._load_pending()
        self._running: Batch | None = None  # the batch in the engine right now
        # Bounded by the job names (jobs.specs: three).
        self._pending_jobs: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="objlibd-worker", daemon=True)

    # -- API for other threads ------------------------------------------------------------

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, work: Work) -> None:
        """Queue work (any thread)."""
        with self._lock:
            self._queued_paths += batch_size(work.batch)
            self._counts[0] += 1
        self._queue.put(work)

    def drain(self, timeout: float) -> bool:
        """Wait until all work submitted so far has been handled; False on timeout."""
        with self._handled:
            target = self._counts[0]
            return self._handled.wait_for(lambda: self._counts[1] >= target, timeout)

    def finish(self, timeout: float) -> None:
        """Ask the thread to persist parked work and exit; wait up to `timeout`."""
        self._queue.put(None)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Return True while the thread runs."""
        return self._thread.is_alive()

    @property
    def parked_paths(self) -> int:
        """Return how many paths/subtrees are parked."""
        parked = self._parked
        return batch_size(parked) if parked else 0

    @property
    def pending_paths(self) -> int:
        """Return paths queued or parked (not counting the one batch running)."""
        return self._queued_paths + self.parked_paths

    def sizes(self) -> dict[str, int]:
        """Return the sizes of what the worker keeps between batches (for `Daemon.sizes`)."""
        parked = self._parked
        return {
            "queue": self._queue.qsize(),
            "queued_paths": self._queued_paths,
            "parked_paths": len(parked.paths) if parked else 0,
            "parked_subtrees": len(parked.rescan) if parked else 0,
            "pending_jobs": len(self._pending_jobs),
        }

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while self._turn():
            pass
        self._survive(self._persist)

    def _turn(self) -> bool:
        """Run everything queued now; return False once asked to finish.

        A method of its own so its locals (the batch just run) are gone while the thread
        waits for the next work: nothing of a batch outlives it.
        """
        items = [self._queue.get()]
        items += self._drain()
        work = [item for item in items if item is not None]
        with self._lock:
            self._queued_paths -= sum(batch_size(item.batch) for item in work)
        try:
            self._survive(functools.partial(self._handle, work))
        finally:
            with self._handled:
                self._counts[1] += len(work)
                self._handled.notify_all()
        return None not in items

    def _survive(self, step: Callable[[], None]) -> None:
        """Run a step; what it failed at (a full state disk...) is a problem, not a dead thread."""
        try:
            step()
        except ObjlibdError as err:
            self._state_trouble(err)
            if not isinstance(err, StateError):
                self.problem, self.problem_fix = err.message, err.hint
            log.error("worker.failed", error=err.message, hint=err.hint)
        except Exception:
            log.exception("worker.crashed")

    def _drain(self) -> list[Work | None]:
        items: list[Work | None] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _handle(self, work: list[Work]) -> None:
        merged = Batch()
        reasons: list[str] = []
        names: list[str] = []
        kinds = {item.kind for item in work}
        confirms = [item for item in work if item.kind == "confirm"]
        for item in work:
            if item.kind == "batch":
                merged = self._merge(merged, item.batch)
                reasons.append(item.reason)
            elif item.kind == "catch_up":
                merged = self._merge(merged, Work.reconcile(item.reason).batch)
                reasons.append(item.reason)
            elif item.kind == "job" and item.job not in names:
                names.append(item.job)
        if confirms:
            self._confirm_missing(confirms[-1].revision)
        elif kinds & {"catch_up", "resume"}:
            self._apply_stored_confirm()
        if not merged.empty or "resume" in kinds:
            self._run_batch(merged, "+".join(dict.fromkeys(reasons)) or "resume")
        if kinds & {"catch_up", "resume"}:
            names += [n for n in self._catch_up_jobs() if n not in names]
        for name in names:
            self._run_job(name)

    def _confirm_missing(self, revision: int | None) -> None:
        """Apply a held mass-missing a person confirmed; store it while objlibd cannot act."""
        why = self._blocked()
        if why is not None:
            if not self.stop.is_set() or self.state.values.get_json(keys.CONFIRM_PENDING) is None:
                self.state.values.set_json(
                    keys.CONFIRM_PENDING,
                    {"revision": revision, "at": status.iso(time.time()), "waiting_for": why},
                )
                self.generation += 1
            log.warning(
                "missing.confirm_deferred", reason=why,
                action="stored; applied on resume or when the drive is back",
            )  # fmt: skip
            return
        summary = self._call(lambda: self.engine.confirm_missing(revision), Batch())
        if summary is not None:
            self.state.values.delete_config(keys.CONFIRM_PENDING)
            self.generation += 1
            log.info("missing.confirmed", missing=summary.missing, forgotten=summary.forgotten)

    def _apply_stored_confirm(self) -> None:
        stored = self.state.values.get_json(keys.CONFIRM_PENDING)
        if isinstance(stored, dict):
            revision = stored.get("revision")
            self._confirm_missing(revision if isinstance(revision, int) else None)

    def _merge(self, a: Batch, b: Batch) -> Batch:
        if a.empty:
            return b
        return merge_batches(a, b, max_paths=self.config.sync.batch_max_paths)

    # -- batches --------------------------------------------------------------------------

    def _park(self, batch: Batch, why: str) -> None:
        if batch.empty:
            return
        self._parked = batch if self._parked is None else self._merge(self._parked, batch)
        log.info("batch.parked", why=why, paths=len(batch.paths), subtrees=sorted(batch.rescan))

    def _blocked(self) -> str | None:
        if self.stop.is_set():
            return "shutting down"
        if self.paused:
            return "paused"
        if not self.volume.available:
            return f"volume {self.volume.availability.value}: {self.volume.reason}"
        return None

    def _run_batch(self, batch: Batch, trigger: str) -> None:
        why = self._blocked()
        if why is not None:
            self._park(batch, why)
            return
        if self._parked is not None:
            batch, self._parked = self._merge(self._parked, batch), None
        if batch.empty:
            return
        batch_id = next(_batch_ids)
        waited = time.time() - batch.first_event_at if batch.first_event_at else None
        self.current = {"batch_id": batch_id, "trigger": trigger, "paths": batch_size(batch)}
        self._running = batch
        with structlog.contextvars.bound_contextvars(
            batch_id=batch_id, reason=batch.reason, paths=len(batch.paths),
            subtrees=sorted(batch.rescan)[:10],
            waited_ms=round(waited * 1000) if waited is not None else None,
        ):  # fmt: skip
            summary = self._call(lambda: self.engine.run_paths(
                batch.paths, subtrees=batch.rescan, trigger=trigger
            ), batch)  # fmt: skip
        self.current, self._running = None, None
        if summary is not None:
            if summary.stopped:
                self._park(batch, summary.stopped)
            self._record_batch(batch, summary, trigger)

    def _call(self, body: Callable[[], SyncSummary], batch: Batch) -> SyncSummary | None:
        try:
            summary = body()
            self.generation += 1
        except VolumeUnavailableError as err:
            self.generation += 1  # the engine may have written before it found the volume gone
            self._park(batch, f"volume unavailable: {err.message}")
            # The engine saw the drive go (a yank mid-batch) perhaps between two of the
            # monitor's polls: tell it, so a drive that is back by then gets its catch-up.
            self.volume = VolumeState(Availability.UNAVAILABLE, err.message, err.hint)
            self.on_volume_lost(err.message)
        except StoreMismatchError as err:
            self.problem, self.problem_fix = err.message, err.hint
            log.error("store.mismatch", error=err.message, hint=err.hint)
            self._park(batch, "store mismatch")
        except ObjlibdError as err:
            self._state_trouble(err)
            log.error("batch.failed", error=err.message, hint=err.hint)
            self._park(batch, err.message)
        except Exception:
            log.exception("batch.crashed")
            self._park(batch, "unexpected error (see the log)")
        else:
            self.problem, self.problem_fix = None, ""
            self.state_disk_full = None
            self.store_notes.note(summary)
            return summary
        return None

    def _state_trouble(self, err: ObjlibdError) -> None:
        """Say what the state DB cannot do: a full disk, or a damaged or locked DB."""
        if isinstance(err, StateDiskFullError):
            self.state_disk_full = err.message
        elif isinstance(err, StateError):
            self.problem, self.problem_fix = err.message, err.hint

    def _record_batch(self, batch: Batch, summary: SyncSummary, trigger: str) -> None:
        now = time.time()
        self.last_batch = {
            "time": status.iso(now),
            "trigger": trigger,
            "counts": summary.counts(),
            "duration_s": round(summary.duration_s, 3),
            "paths": len(batch.paths),
            "subtrees": sorted(batch.rescan)[:10],
            "latency_s": round(now - batch.first_event_at, 3) if batch.first_event_at else None,
            "hold": summary.hold_reason,
        }
        self.state.values.set_json(keys.LAST_BATCH, self.last_batch)
        self.generation += 1
        if "" in batch.rescan and not summary.stopped:
            self.state.values.delete_config(keys.PENDING)

    # -- jobs -----------------------------------------------------------------------------

    def _catch_up_jobs(self) -> list[str]:
        last: dict[str, jobs.LastRun | None] = {}
        for spec in jobs.specs(self.config.jobs):
            row = self.state.jobs.last_job(spec.kind)
            last[spec.name] = (
                jobs.LastRun(row.status, jobs.parse_db_time(row.finished_at)) if row else None
            )
        due = jobs.catch_up(jobs.specs(self.config.jobs), last, time.time())
        return [*due, *(n for n in sorted(self._pending_jobs) if n not in due)]

    def _run_job(self, name: str) -> None:
        why = self._blocked()
        spec = {s.name: s for s in jobs.specs(self.config.jobs)}[name]
        if why is not None:
            self._pending_jobs.add(name)
            if not self.stop.is_set():
                job_id = self.state.jobs.start_job(spec.kind, trigger="scheduled")
                self.state.jobs.finish_job(job_id, "skipped", {}, why)
                self.generation += 1
                log.info("job.skipped", job=name, reason=why)
            return
        self.current = {"job": name}
        with structlog.contextvars.bound_contextvars(job=name):
            summary = self._call(lambda: self._job_body(name), Batch())
        self.current = None
        if summary is not None:
            self._pending_jobs.discard(name)
        else:
            self._pending_jobs.add(name)
        self.state.values.set_json(keys.SCHEDULE, self.next_runs())
        self.generation += 1

    def _job_body(self, name: str) -> SyncSummary:
        if name == jobs.ORPHAN_CLEANUP:
            return self.engine.cleanup_orphans(trigger="scheduled")
        if name == jobs.PRUNE:
            return self.engine.prune_missing(trigger="scheduled")
        return self.engine.run(SyncOptions(trigger="scheduled"))

    # -- persistence ----------------------------------------------------------------------

    def _load_pending(self) -> Batch | None:
        data = self.state.values.get_json(keys.PENDING)
        if not isinstance(data, dict):
            return None
        batch = Batch(
            paths=frozenset(data.get("paths", [])),
            rescan=frozenset(data.get("rescan", [])),
            reason="pending",
        )
        return None if batch.empty else batch

    def persist_now(self) -> None:
        """Persist parked work and the batch in flight (the thread is stuck in a call).

        For a shutdown whose budget ran out: whatever the thread was doing is redone from
        the persisted work at the next start.
        """
        parked, running = self._parked, self._running
        if running is not None:
            parked = running if parked is None else self._merge(parked, running)
        self._persist(parked)

    def _persist(self, parked: Batch | None = None) -> None:
        parked = self._parked if parked is None else parked
        if parked is None or parked.empty:
            self.state.values.delete_config(keys.PENDING)
            return
        paths = sorted(parked.paths)
        rescan = set(parked.rescan) | ({""} if len(paths) > PERSIST_MAX_PATHS else set())
        self.state.values.set_json(
            keys.PENDING,
            {
                "paths": paths[:PERSIST_MAX_PATHS],
                "rescan": sorted(rescan),
                "at": status.iso(time.time()),
            },
        )
        log.info("work.persisted", paths=len(paths), subtrees=sorted(rescan))
