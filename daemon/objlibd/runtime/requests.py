"""Requests people leave the daemon through the CLI: pause/resume, confirm-missing, heap report.

The CLI never writes the state DB while the daemon runs: it leaves a file in the state dir
(`status.files`: the pause flag, the confirm request; `runtime.heap`: a memory report
request) and the monitor picks it up within a tick. Pausing parks work and skips jobs (the
watch goes on); resuming runs what was parked and lets late jobs run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from objlibd.runtime import heap
from objlibd.runtime.work import Work
from objlibd.runtime.worker import Worker
from objlibd.status import files

log = structlog.get_logger("objlibd.service")


class OperatorRequests:
    """Notices the CLI's request files and hands them to the worker."""

    def __init__(
        self,
        state_dir: Path,
        worker: Worker,
        *,
        on_resume: Callable[[], None],
        sizes: Callable[[], dict[str, Any]],
    ) -> None:
        self._dir = state_dir
        self._worker = worker
        self._on_resume = on_resume
        self._sizes = sizes
        self.paused = False

    def load(self) -> None:
        """At start: a daemon started while paused stays paused."""
        self.paused = files.read_pause(self._dir) is not None
        self._worker.set_paused(self.paused)

    def check(self) -> None:
        """Pick up whatever the CLI asked since the last tick."""
        self._check_pause()
        asked, revision = files.take_confirm_request(self._dir)
        if asked:
            log.info("missing.confirm_requested", revision=revision)
            self._worker.submit(Work.confirm_missing(revision))
        heap.answer_request(self._dir, self._sizes)

    def _check_pause(self) -> None:
        paused = files.is_paused(self._dir)
        if paused == self.paused:
            return
        self.paused = paused
        self._worker.set_paused(paused)
        if paused:
            log.warning("daemon.paused", action="uploads and deletes stop; watching continues")
        else:
            log.info("daemon.resumed")
            self._worker.submit(Work.resume())
            self._on_resume()
