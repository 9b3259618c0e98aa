"""Scheduled jobs: the only APScheduler import, plus the pure decisions around it.

APScheduler (3.x BackgroundScheduler, explicit timezone, MemoryJobStore recreated at start)
only *fires*: each firing puts the job's name on the worker's queue, and the worker, the one
writer, runs it through the engine. Defaults are made for a laptop that sleeps: a generous
misfire grace, coalesce (one run for many missed), max one instance, and a missed-run
listener that logs and submits anyway.

A job that meets an unavailable volume (or a paused daemon) is recorded as skipped in the
jobs table and `catch_up` picks it up on the next mount or resume. Last run and result come
from the jobs table; next runs are written there by the worker from `next_runs()`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from objlibd.config import JobSettings
from objlibd.state import dbtime

log = structlog.get_logger("objlibd.jobs")

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
    """Return the daemon's jobs; reconcile runs are recorded as full syncs."""
    return (
        JobSpec(ORPHAN_CLEANUP, "orphan_cleanup", settings.orphan_cleanup_minutes),
        JobSpec(PRUNE, "prune", settings.prune_minutes),
        JobSpec(RECONCILE, "sync", settings.reconcile_minutes),
    )


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


class JobScheduler:
    """The APScheduler shell: fires `submit(name)` on each job's interval."""

    def __init__(self, settings: JobSettings, submit: Callable[[str], None]) -> None:
        self._settings = settings
        self._submit = submit
        self._tz = zoneinfo.ZoneInfo(settings.timezone)
        self._scheduler: Any = None

    def start(self) -> None:
        """Create the scheduler, add every job, start its thread."""
        scheduler = BackgroundScheduler(
            timezone=self._tz,
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(self._settings.misfire_grace_seconds),
            },
        )
        for spec in specs(self._settings):
            scheduler.add_job(
                self._fire,
                IntervalTrigger(seconds=spec.minutes * 60, timezone=self._tz),
                args=[spec.name],
                id=spec.name,
                name=spec.name,
                replace_existing=True,
            )
        scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        scheduler.start()
        self._scheduler = scheduler
        log.info("scheduler.started", jobs={s.name: s.minutes for s in specs(self._settings)})

    def _fire(self, name: str) -> None:
        self._submit(name)

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job.missed", job=event.job_id, scheduled=str(event.scheduled_run_time))
            self._submit(str(event.job_id))  # late is better than never (laptop slept)
        else:
            log.error("job.fire_failed", job=event.job_id, error=repr(event.exception))

    def next_runs(self) -> dict[str, str | None]:
        """Return each job's next run time (ISO, UTC), None when not scheduled."""
        result: dict[str, str | None] = {s.name: None for s in specs(self._settings)}
        if self._scheduler is None:
            return result
        for job in self._scheduler.get_jobs():
            when = job.next_run_time
            result[job.id] = when.astimezone(dt.UTC).isoformat() if when else None
        return result

    def wakeup(self) -> None:
        """Make the scheduler re-check its timetable now (after sleep, mount or resume)."""
        if self._scheduler is not None:
            self._scheduler.wakeup()

    def shutdown(self) -> None:
        """Stop the scheduler thread (idempotent; does not wait for a job body)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=False)
            log.info("scheduler.stopped")
