"""Work the worker cannot run now, kept as one bounded Batch until it can, and across restarts.

Work is *parked* while the volume is unavailable, the daemon is paused, the store does not
answer or a shutdown is under way: merged into one Batch (bounded by `merge_batches`:
<= batch_max_paths paths, <= 16 subtrees) that rides along with the next batch, runs on
mount/resume, and is persisted in the state DB on exit (`keys.PENDING`) for the next start.
Used by the worker thread only, except `persist_now` on a shutdown whose budget ran out.
"""

from __future__ import annotations

import time

import structlog

from objlibd.models import Batch
from objlibd.runtime.debounce import merge_batches
from objlibd.runtime.work import batch_size
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status import files

log = structlog.get_logger("objlibd.worker")

PERSIST_MAX_PATHS = 5000


class ParkedWork:
    """The parked Batch (None when nothing is parked) and the batch in the engine right now."""

    def __init__(self, state: StateStore, max_paths: int) -> None:
        self._state = state
        self._max_paths = max_paths
        self._parked: Batch | None = self._load()
        self.running: Batch | None = None  # set by the worker around each engine call

    def merge(self, a: Batch, b: Batch) -> Batch:
        """Return `a` and `b` as one bounded batch."""
        if a.empty:
            return b
        return merge_batches(a, b, max_paths=self._max_paths)

    def park(self, batch: Batch, why: str) -> None:
        """Keep `batch` for later, merged into what is parked already."""
        if batch.empty:
            return
        self._parked = batch if self._parked is None else self.merge(self._parked, batch)
        log.info("batch.parked", why=why, paths=len(batch.paths), subtrees=sorted(batch.rescan))

    def take(self, batch: Batch) -> Batch:
        """Return `batch` with everything parked merged in; nothing stays parked."""
        if self._parked is not None:
            batch, self._parked = self.merge(self._parked, batch), None
        return batch

    @property
    def size(self) -> int:
        """Return how many paths/subtrees are parked."""
        parked = self._parked
        return batch_size(parked) if parked else 0

    def sizes(self) -> dict[str, int]:
        """Return the parked paths and subtrees (for `Worker.sizes`)."""
        parked = self._parked
        return {
            "parked_paths": len(parked.paths) if parked else 0,
            "parked_subtrees": len(parked.rescan) if parked else 0,
        }

    def _load(self) -> Batch | None:
        data = self._state.values.get_json(keys.PENDING)
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
        parked, running = self._parked, self.running
        if running is not None:
            parked = running if parked is None else self.merge(parked, running)
        self.persist(parked)

    def persist(self, parked: Batch | None = None) -> None:
        """Write the parked work (or `parked`) to the state DB for the next start."""
        parked = self._parked if parked is None else parked
        if parked is None or parked.empty:
            self._state.values.delete_config(keys.PENDING)
            return
        paths = sorted(parked.paths)
        rescan = set(parked.rescan) | ({""} if len(paths) > PERSIST_MAX_PATHS else set())
        self._state.values.set_json(
            keys.PENDING,
            {
                "paths": paths[:PERSIST_MAX_PATHS],
                "rescan": sorted(rescan),
                "at": files.iso(time.time()),
            },
        )
        log.info("work.persisted", paths=len(paths), subtrees=sorted(rescan))
