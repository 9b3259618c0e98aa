"""A run's row in the jobs table: opened as it starts, its upload progress, its outcome.

`status` readers see the running job's upload progress (done/total) in its row; one write
per PROGRESS_EVERY files keeps a 50k-file first sync from paying a transaction per file,
and the final count goes in with the job's close (a one-file batch pays nothing). A dry run
records no row.
"""

from __future__ import annotations

from objlibd.engine.summary import SyncSummary
from objlibd.state.store import StateStore

PROGRESS_EVERY = 50


class JobRecord:
    """The jobs row of the engine's running (or last) run, and that run's upload progress."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.job: int | None = None  # the running job's row
        self.progress: tuple[int, int] | None = None  # its last upload done/total

    def start(self, kind: str, summary: SyncSummary) -> None:
        """Open the row of a run of `kind` (none for a dry run)."""
        jobs = self.state.jobs
        self.job = None if summary.dry_run else jobs.start_job(kind, trigger=summary.trigger)
        self.progress = None

    def close(self, status: str, summary: SyncSummary, error: str | None) -> None:
        """Close the row as completed, failed or skipped, with the counts and final progress."""
        if self.job is not None:
            jobs = self.state.jobs
            jobs.finish_job(self.job, status, summary.counts(), error, progress=self.progress)

    def uploaded(self, done: int, total: int) -> None:
        """Note upload progress; the row is written every PROGRESS_EVERY files."""
        self.progress = (done, total)
        if self.job is not None and done % PROGRESS_EVERY == 0 and done < total:
            self.state.jobs.job_progress(self.job, done, total)

    @property
    def pending_uploads(self) -> int:
        """Return the uploads of the running (or last) run not finished yet."""
        done, total = self.progress or (0, 0)
        return max(total - done, 0)
