"""Scheduled jobs, the pure half: which jobs there are, and which are due on mount or resume.

The scheduler that fires them is `runtime.scheduler` (the only APScheduler import): each
firing puts the job's name on the worker's queue, and the worker, the one writer, runs it
through the engine. This module imports no scheduler, so the worker does not load one.

A job that meets an unavailable volume (or a paused daemon) is recorded as skipped in the
jobs table and `catch_up` picks it up on the next mount or resume. Last run and result come
from the jobs table; next runs are written there by the worker from `next_runs()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from objlibd.config import JobSettings
from objlibd.state import dbtime, keys

ORPHAN_CLEANUP = "orphan_cleanup"
PRUNE = "prune"
RECONCILE = "reconcile"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One scheduled job: its name, the jobs-table kind its runs are recorded under, period."""

    name: str
    kind: str
    minutes: float


@dataclass(frozen=True, slots=True)
class LastRun:
    """The latest jobs-table row of a job (status and when it finished, epoch seconds)."""

    status: str
    finished_at: float | None


def specs(settings: JobSettings) -> tuple[JobSpec, ...]:
    """Return the daemon's jobs (`keys.JOBS`); reconcile runs are recorded as full syncs."""
    minutes = {
        ORPHAN_CLEANUP: settings.orphan_cleanup_minutes,
        PRUNE: settings.prune_minutes,
        RECONCILE: settings.reconcile_minutes,
    }
    return tuple(JobSpec(name, kind, minutes[name]) for name, kind in keys.JOBS.items())


def catch_up(jobs: Iterable[JobSpec], last: Mapping[str, LastRun | None], now: float) -> list[str]:
    """Return the jobs to run on mount/resume: skipped last time, or overdue.

    A job that never ran waits for its schedule; reconcile is left out because every mount
    already starts with a catch-up reconcile.
    """
    due = []
    for spec in jobs:
        if spec.name == RECONCILE:
            continue
        run = last.get(spec.name)
        if run is None:
            continue
        if run.status == "skipped" or (
            run.finished_at is not None and now - run.finished_at >= spec.minutes * 60
        ):
            due.append(spec.name)
    return due


parse_db_time = dbtime.parse  # a jobs-table timestamp as epoch seconds
