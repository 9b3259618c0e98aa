"""jobs: catch-up decisions (pure tables) and the real APScheduler firing into a queue."""

from __future__ import annotations

import queue

import pytest

from objlibd.config import JobSettings
from objlibd.runtime.jobs import LastRun, catch_up, parse_db_time, specs
from objlibd.runtime.scheduler import JobScheduler

SPECS = specs(JobSettings(orphan_cleanup_minutes=60, prune_minutes=1440, reconcile_minutes=60))
NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ({}, []),
        ({"prune": LastRun("skipped", NOW - 10)}, ["prune"]),
        ({"orphan_cleanup": LastRun("completed", NOW - 3599)}, []),
        ({"orphan_cleanup": LastRun("completed", NOW - 3600)}, ["orphan_cleanup"]),
        ({"orphan_cleanup": LastRun("failed", NOW - 7200)}, ["orphan_cleanup"]),
        ({"reconcile": LastRun("skipped", NOW - 7200)}, []),
        (
            {"prune": LastRun("skipped", None), "orphan_cleanup": LastRun("skipped", None)},
            ["orphan_cleanup", "prune"],
        ),
    ],
)
def test_catch_up_runs_skipped_and_overdue_jobs(last: dict, expected: list[str]) -> None:
    assert catch_up(SPECS, last, NOW) == expected


def test_specs_map_reconcile_to_full_sync_rows() -> None:
    assert [(s.name, s.kind) for s in SPECS] == [
        ("orphan_cleanup", "orphan_cleanup"), ("prune", "prune"), ("reconcile", "sync"),
    ]  # fmt: skip


def test_parse_db_time_reads_the_db_format() -> None:
    assert parse_db_time("1970-01-01T00:01:40.500Z") == 100.5
    assert parse_db_time(None) is None


@pytest.mark.usefixtures("no_thread_leaks")
def test_scheduler_fires_each_job_into_the_queue_and_reports_next_runs() -> None:
    fired: queue.Queue[str] = queue.Queue()
    settings = JobSettings(
        orphan_cleanup_minutes=0.005, prune_minutes=0.005, reconcile_minutes=60, timezone="UTC"
    )
    scheduler = JobScheduler(settings, fired.put)
    scheduler.start()
    try:
        got = {fired.get(timeout=5), fired.get(timeout=5)}
        nexts = scheduler.next_runs()
    finally:
        scheduler.shutdown()

    assert got == {"orphan_cleanup", "prune"}
    assert set(nexts) == {"orphan_cleanup", "prune", "reconcile"}
    assert all(value and value.endswith("+00:00") for value in nexts.values())
    assert scheduler.next_runs() == dict.fromkeys(nexts)


def test_the_worker_needs_only_the_pure_half_of_the_jobs() -> None:
    """Importing the worker (and the job decisions) loads no scheduler: apscheduler stays home."""
    import subprocess
    import sys

    code = (
        "import sys, objlibd.runtime.worker, objlibd.runtime.jobs; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'apscheduler'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"
