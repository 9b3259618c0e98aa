"""The scheduler that fires the jobs: the only APScheduler import.

APScheduler (3.x BackgroundScheduler, explicit timezone, MemoryJobStore recreated at start)
only *fires*: each firing puts the job's name on the worker's queue (`runtime.jobs` says which
jobs there are). Defaults are made for a laptop that sleeps: a generous misfire grace,
coalesce (one run for many missed), max one instance, and a missed-run listener that logs and
submits anyway.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from objlibd.config import JobSettings
from objlibd.runtime.jobs import specs

log = structlog.get_logger("objlibd.jobs")


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
