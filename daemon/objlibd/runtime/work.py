"""What the worker's queue carries: one `Work` item, of one `WorkKind`, and how big a batch is.

Every other thread hands work to the worker as one of these (the debouncer a batch, the
scheduler a job name, the monitor a reconcile, catch-up, resume or confirmation); the worker
merges what is queued and runs it (`runtime.worker`).
"""

from __future__ import annotations

import enum
import queue
import threading
from dataclasses import dataclass, field

from objlibd.models import Batch


class WorkKind(enum.StrEnum):
    """What a queue item asks for (the values are the strings the logs have always shown)."""

    BATCH = "batch"  # a debounced batch, or a reconcile of a subtree ("" is the library)
    JOB = "job"  # a scheduled job, by name
    CATCH_UP = "catch_up"  # on mount or start: reconcile, then skipped or overdue jobs
    CONFIRM = "confirm"  # a person confirmed a held mass-missing
    RESUME = "resume"  # parked paths and jobs skipped while paused


@dataclass(frozen=True, slots=True)
class Work:
    """One queue item: a batch/reconcile (`batch`), a job name, or a catch-up/resume."""

    kind: WorkKind
    batch: Batch = field(default_factory=Batch)
    job: str = ""
    reason: str = ""
    revision: int | None = None  # of the hold a person confirmed

    @classmethod
    def of(cls, batch: Batch) -> Work:
        """Return a debounced batch of events."""
        return cls(WorkKind.BATCH, batch, reason="batch")

    @classmethod
    def reconcile(cls, reason: str) -> Work:
        """Return a reconcile of the whole library."""
        return cls.rescan("", reason)

    @classmethod
    def rescan(cls, subtree: str, reason: str) -> Work:
        """Return a reconcile of one subtree ("" is the whole library)."""
        return cls(WorkKind.BATCH, Batch(rescan=frozenset({subtree}), reason=reason), reason=reason)

    @classmethod
    def scheduled(cls, name: str) -> Work:
        """Return a scheduled job."""
        return cls(WorkKind.JOB, job=name, reason="scheduled")

    @classmethod
    def catch_up(cls, reason: str) -> Work:
        """Return a mount/start catch-up: reconcile, then skipped or overdue jobs."""
        return cls(WorkKind.CATCH_UP, reason=reason)

    @classmethod
    def confirm_missing(cls, revision: int | None = None) -> Work:
        """Return an operator's confirmation of a held mass-missing (`objlibd missing --confirm`)."""
        return cls(WorkKind.CONFIRM, reason="operator", revision=revision)

    @classmethod
    def resume(cls) -> Work:
        """Return the work to do on resume: parked paths and jobs skipped while paused."""
        return cls(WorkKind.RESUME, reason="resume")


def batch_size(batch: Batch) -> int:
    """Return how many paths and subtrees a batch holds."""
    return len(batch.paths) + len(batch.rescan)


class WorkQueue:
    """The worker's queue, with the counts other threads read (thread-safe).

    Every item is counted when submitted and when handled, so `drain` can wait for the work
    submitted so far; `queued_paths` counts the paths waiting (for the heartbeat). `None` is
    the request to finish.
    """

    def __init__(self) -> None:
        # Taken whole on every loop turn; a burst waits here only while a batch runs.
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._lock = threading.Lock()
        self._handled = threading.Condition(self._lock)
        self._counts = [0, 0]  # work items submitted, handled (for drain)
        self.queued_paths = 0

    def submit(self, work: Work) -> None:
        """Queue work (any thread)."""
        with self._lock:
            self.queued_paths += batch_size(work.batch)
            self._counts[0] += 1
        self._queue.put(work)

    def finish(self) -> None:
        """Ask the worker to finish after what is queued."""
        self._queue.put(None)

    def take(self) -> list[Work | None]:
        """Wait for an item, then return it and everything queued behind it (worker thread)."""
        items = [self._queue.get()]
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self.queued_paths -= sum(batch_size(item.batch) for item in items if item is not None)
        return items

    def handled(self, count: int) -> None:
        """Note that `count` items taken were handled (wakes `drain`)."""
        with self._handled:
            self._counts[1] += count
            self._handled.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until all work submitted so far has been handled; False on timeout."""
        with self._handled:
            target = self._counts[0]
            return self._handled.wait_for(lambda: self._counts[1] >= target, timeout)

    def qsize(self) -> int:
        """Return how many items wait (approximately, as `queue.Queue` says)."""
        return self._queue.qsize()
