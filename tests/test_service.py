"""service + worker: volume transitions (table), the worker's parking rules with a recording
engine, and one real in-process daemon on a tmpfs drive (threads joined, nothing leaked)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from daemon_fixtures import Drive, wait_for, write_config
from objlibd import config as config_module
from objlibd import status
from objlibd.config import Config
from objlibd.errors import VolumeUnavailableError
from objlibd.models import Availability, Batch, VolumeState
from objlibd.service import Daemon, volume_transition
from objlibd.state import StateStore
from objlibd.summary import SyncSummary
from objlibd.worker import Work, Worker

OK = VolumeState(Availability.AVAILABLE, "verified")
GONE = VolumeState(Availability.UNAVAILABLE, "nothing is mounted")
WRONG = VolumeState(Availability.DEGRADED, "wrong library")
BESIDE = VolumeState(
    Availability.AVAILABLE, "found by its marker", found_at="/Volumes/U32 Shadow 1"
)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, OK, "mounted"),
        (None, GONE, "unavailable"),
        (GONE, OK, "mounted"),
        (WRONG, OK, "mounted"),
        (OK, OK, None),
        (OK, GONE, "unavailable"),
        (OK, WRONG, "unavailable"),
        (GONE, GONE, None),
        (GONE, WRONG, "changed"),
        (GONE, BESIDE, "mounted"),
        (OK, BESIDE, "moved"),
        (BESIDE, OK, "moved"),
        (BESIDE, BESIDE, None),
    ],
)
def test_volume_transition(before, after, expected) -> None:
    assert volume_transition(before, after) == expected


class RecordingEngine:
    """Stands in for SyncEngine: records calls; can pretend the volume vanished."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.unavailable = False
        self.store = SimpleNamespace(stats=lambda: None)  # what the worker asks of the store

    def run_paths(self, paths, *, subtrees=(), trigger="batch") -> SyncSummary:
        if self.unavailable:
            raise VolumeUnavailableError("nothing is mounted")
        self.calls.append(("batch", (frozenset(paths), frozenset(subtrees), trigger)))
        return SyncSummary(trigger=trigger)

    def cleanup_orphans(self, *, trigger: str = "manual") -> SyncSummary:
        self.calls.append(("orphan_cleanup", trigger))
        return SyncSummary(trigger=trigger)

    def prune_missing(self, *, trigger: str = "manual") -> SyncSummary:
        self.calls.append(("prune", trigger))
        return SyncSummary(trigger=trigger)

    def run(self, options) -> SyncSummary:
        self.calls.append(("sync", options.trigger))
        return SyncSummary(trigger=options.trigger)


@pytest.fixture
def worker_env():
    state = StateStore.memory()
    engine = RecordingEngine()
    worker = Worker(Config(), state, engine, threading.Event(), dict)  # type: ignore[arg-type]
    yield worker, engine, state
    state.close()


def batch(*paths: str) -> Batch:
    return Batch(paths=frozenset(paths))


def test_worker_parks_while_unavailable_and_runs_parked_work_with_the_next_batch(
    worker_env,
) -> None:
    worker, engine, _ = worker_env
    worker.volume = GONE
    worker._handle([Work.of(batch("a.pdf"))])

    assert engine.calls == []
    assert worker.parked_paths == 1

    worker.volume = OK
    worker._handle([Work.of(batch("b.pdf"))])

    assert engine.calls == [("batch", (frozenset({"a.pdf", "b.pdf"}), frozenset(), "batch"))]
    assert worker.parked_paths == 0


def test_worker_parks_when_the_engine_finds_the_volume_gone(worker_env) -> None:
    worker, engine, _ = worker_env
    worker.volume = OK
    engine.unavailable = True

    worker._handle([Work.of(batch("a.pdf"))])

    assert worker.parked_paths == 1


def test_worker_merges_queued_batches_into_one_engine_call(worker_env) -> None:
    worker, engine, _ = worker_env
    worker.volume = OK

    worker._handle([Work.of(batch("a.pdf")), Work.of(batch("b.pdf")), Work.reconcile("overflow")])

    assert engine.calls == [("batch", (frozenset(), frozenset({""}), "batch+overflow"))]


def test_jobs_skip_while_unavailable_and_run_on_catch_up(worker_env) -> None:
    worker, engine, state = worker_env
    worker.volume = GONE
    worker._handle([Work.scheduled("prune"), Work.scheduled("orphan_cleanup")])

    assert state.last_job("prune").status == "skipped"
    assert state.last_job("prune").error.startswith("volume unavailable: nothing is mounted")

    worker.volume = OK
    worker._handle([Work.catch_up("mount")])

    assert engine.calls == [
        ("batch", (frozenset(), frozenset({""}), "mount")),
        ("orphan_cleanup", "scheduled"),
        ("prune", "scheduled"),
    ]


def test_paused_worker_records_and_resume_runs_it(worker_env) -> None:
    worker, engine, _ = worker_env
    worker.volume = OK
    worker.paused = True
    worker._handle([Work.of(batch("a.pdf")), Work.scheduled("prune")])

    assert engine.calls == []

    worker.paused = False
    worker._handle([Work.resume()])

    assert engine.calls == [
        ("batch", (frozenset({"a.pdf"}), frozenset(), "resume")),
        ("prune", "scheduled"),
    ]


def test_parked_work_is_persisted_and_loaded_by_the_next_worker(worker_env) -> None:
    worker, _, state = worker_env
    worker.volume = GONE
    worker._handle([Work.of(batch("a.pdf", "b.pdf"))])

    worker._persist()
    again = Worker(Config(), state, RecordingEngine(), threading.Event(), dict)  # type: ignore[arg-type]

    assert state.get_json(status.PENDING_KEY)["paths"] == ["a.pdf", "b.pdf"]
    assert again.parked_paths == 2


def test_a_worker_stuck_in_a_call_still_gets_its_batch_persisted(worker_env) -> None:
    """The stop budget ran out while the engine hung in a call: nothing is lost."""
    worker, engine, state = worker_env
    entered, release = threading.Event(), threading.Event()
    calls = engine.run_paths

    def hang(paths, **kwargs):
        entered.set()
        release.wait(10)
        return calls(paths, **kwargs)

    engine.run_paths = hang
    worker.volume = OK
    worker.start()
    worker.submit(Work.of(batch("stuck.pdf")))
    assert entered.wait(10)

    worker.persist_now()

    assert state.get_json(status.PENDING_KEY)["paths"] == ["stuck.pdf"]
    release.set()
    worker.finish(timeout=10)


@pytest.mark.usefixtures("no_thread_leaks")
def test_daemon_in_process_syncs_and_stops_cleanly(tmp_path: Path, drive: Drive) -> None:
    (drive.root / "early.txt").write_text("there before the start")
    path = write_config(
        tmp_path / "c.toml", drive.mount_point, tmp_path / "state", tmp_path / "logs"
    )
    config = config_module.load(path)
    stop = threading.Event()
    daemon = Daemon(config, stop=stop)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()))
    thread.start()
    try:
        assert wait_for(lambda: status.snapshot(config)["files"].get("uploaded") == 1, 15)
        (drive.root / "later.md").write_text("seen by the watcher")
        assert wait_for(lambda: status.snapshot(config)["files"].get("uploaded") == 2, 10)
        assert status.snapshot(config)["daemon"]["running"] is True
    finally:
        stop.set()
        thread.join(15)

    assert result == [0]
    assert status.snapshot(config)["daemon"]["running"] is False
    assert not (config.state.dir / "objlibd.pid").exists()


def test_lost_fsevents_become_a_reconcile_of_what_the_flags_name(worker_env) -> None:
    """Synthetic flags, through the daemon's handler and the worker, to the engine."""
    from objlibd.watcher import Rescan

    worker, engine, _ = worker_env
    worker.volume = OK
    daemon = Daemon(Config())
    daemon.worker = worker

    daemon._on_rescan(Rescan("Course 1", "fsevents_must_scan"))
    daemon._on_rescan(Rescan("", "fsevents_dropped"))
    worker._handle([worker._queue.get_nowait(), worker._queue.get_nowait()])

    assert engine.calls == [
        ("batch", (frozenset(), frozenset({""}), "fsevents_must_scan+fsevents_dropped"))
    ]
