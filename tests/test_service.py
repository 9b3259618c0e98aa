"""service + worker: volume transitions (table), the worker's parking rules with a recording
engine, and one real in-process daemon on a tmpfs drive (threads joined, nothing leaked)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from daemon_fixtures import Drive, wait_for, write_config
from objlibd import config as config_module
from objlibd.config import Config
from objlibd.engine.summary import SyncSummary
from objlibd.errors import VolumeUnavailableError
from objlibd.models import Availability, Batch, VolumeState
from objlibd.runtime.daemon import Daemon
from objlibd.runtime.drive import volume_transition
from objlibd.runtime.suspend import SleepWatch
from objlibd.runtime.work import Work
from objlibd.runtime.worker import Worker
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status import view as status

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
    worker.set_volume(GONE)
    worker._handle([Work.of(batch("a.pdf"))])

    assert engine.calls == []
    assert worker.parked_paths == 1

    worker.set_volume(OK)
    worker._handle([Work.of(batch("b.pdf"))])

    assert engine.calls == [("batch", (frozenset({"a.pdf", "b.pdf"}), frozenset(), "batch"))]
    assert worker.parked_paths == 0


def test_worker_parks_when_the_engine_finds_the_volume_gone(worker_env) -> None:
    worker, engine, _ = worker_env
    worker.set_volume(OK)
    engine.unavailable = True

    worker._handle([Work.of(batch("a.pdf"))])

    assert worker.parked_paths == 1


def test_worker_merges_queued_batches_into_one_engine_call(worker_env) -> None:
    worker, engine, _ = worker_env
    worker.set_volume(OK)

    worker._handle([Work.of(batch("a.pdf")), Work.of(batch("b.pdf")), Work.reconcile("overflow")])

    assert engine.calls == [("batch", (frozenset(), frozenset({""}), "batch+overflow"))]


def test_jobs_skip_while_unavailable_and_run_on_catch_up(worker_env) -> None:
    worker, engine, state = worker_env
    worker.set_volume(GONE)
    worker._handle([Work.scheduled("prune"), Work.scheduled("orphan_cleanup")])

    assert state.jobs.last_job("prune").status == "skipped"
    assert state.jobs.last_job("prune").error.startswith("volume unavailable: nothing is mounted")

    worker.set_volume(OK)
    worker._handle([Work.catch_up("mount")])

    assert engine.calls == [
        ("batch", (frozenset(), frozenset({""}), "mount")),
        ("orphan_cleanup", "scheduled"),
        ("prune", "scheduled"),
    ]


def test_paused_worker_records_and_resume_runs_it(worker_env) -> None:
    worker, engine, _ = worker_env
    worker.set_volume(OK)
    worker.set_paused(True)
    worker._handle([Work.of(batch("a.pdf")), Work.scheduled("prune")])

    assert engine.calls == []

    worker.set_paused(False)
    worker._handle([Work.resume()])

    assert engine.calls == [
        ("batch", (frozenset({"a.pdf"}), frozenset(), "resume")),
        ("prune", "scheduled"),
    ]


def test_parked_work_is_persisted_and_loaded_by_the_next_worker(worker_env) -> None:
    worker, _, state = worker_env
    worker.set_volume(GONE)
    worker._handle([Work.of(batch("a.pdf", "b.pdf"))])

    worker.parked.persist()
    again = Worker(Config(), state, RecordingEngine(), threading.Event(), dict)  # type: ignore[arg-type]

    assert state.values.get_json(keys.PENDING)["paths"] == ["a.pdf", "b.pdf"]
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
    worker.set_volume(OK)
    worker.start()
    worker.submit(Work.of(batch("stuck.pdf")))
    assert entered.wait(10)

    worker.parked.persist_now()

    assert state.values.get_json(keys.PENDING)["paths"] == ["stuck.pdf"]
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
    from objlibd.runtime.watch import WatchKeeper
    from objlibd.runtime.watcher import Rescan

    worker, engine, _ = worker_env
    worker.set_volume(OK)
    keeper = WatchKeeper(Config(), lambda _event: None, worker.submit)

    keeper.on_rescan(Rescan("Course 1", "fsevents_must_scan"))
    keeper.on_rescan(Rescan("", "fsevents_dropped"))
    worker._handle(worker._queue.take())

    assert engine.calls == [
        ("batch", (frozenset(), frozenset({""}), "fsevents_must_scan+fsevents_dropped"))
    ]


@pytest.mark.parametrize(
    ("looks", "expected"),
    [
        ([(1000.0, 5.0), (1000.5, 5.5)], None),  # a tick
        ([(1000.0, 5.0), (1012.0, 5.5)], None),  # a clock step under the threshold (NTP)
        ([(1000.0, 5.0), (4600.0, 5.5)], 3599.5),  # an hour asleep: wall ran, monotonic did not
        ([(1000.0, 5.0), (900.0, 5.5)], None),  # the wall clock set back: no suspend
        ([(1000.0, 5.0), (1030.5, 5.5), (1031.0, 6.0)], None),  # seen once, not again
    ],
)
def test_sleep_watch_notices_the_wall_clock_running_ahead(looks, expected) -> None:
    watch = SleepWatch(threshold=30.0)
    seen = [watch.check(wall, mono) for wall, mono in looks]

    assert seen[0] is None
    assert seen[-1] == expected


@pytest.mark.usefixtures("no_thread_leaks")
def test_a_clock_jump_reprobes_rebuilds_the_watch_and_reconciles(
    tmp_path: Path, drive: Drive
) -> None:
    """The suspend is injected: the daemon's wall clock jumps an hour, its monotonic one not."""
    from structlog.testing import capture_logs

    (drive.root / "before.txt").write_text("synced before the laptop slept")
    path = write_config(tmp_path / "c.toml", drive.mount_point, tmp_path / "state", tmp_path / "l")
    config = config_module.load(path)
    stop, slept = threading.Event(), [0.0]
    daemon = Daemon(config, stop=stop, wall=lambda: time.time() + slept[0])
    thread = threading.Thread(target=daemon.run)

    def wake_batch() -> bool:
        state = StateStore.open(config.db_path, readonly=True)
        try:
            return any(j.trigger == "wake" and j.status == "completed" for j in state.jobs.recent())
        finally:
            state.close()

    with capture_logs() as logs:
        thread.start()
        try:
            assert wait_for(lambda: status.snapshot(config)["files"].get("uploaded") == 1, 15)
            slept[0] = 3600.0
            assert wait_for(wake_batch, 15)
        finally:
            stop.set()
            thread.join(15)

    woke = [e for e in logs if e["event"] == "daemon.woke"]
    started = [e["reason"] for e in logs if e["event"] == "watcher.started"]
    assert len(woke) == 1 and woke[0]["slept_s"] >= 3599 and woke[0]["volume"] == "available"
    assert started == ["mount", "wake"], "a fresh watch after the wake"
