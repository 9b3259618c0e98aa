"""The daemon end to end: `objlibd run` as a subprocess on a tmpfs "drive", local backend.

Each test mounts a tmpfs (bind-mounted at ".../U32 Shadow", a path with a space), starts
the real daemon, changes real files, and asserts through `objlibd status --json`, the log
and the store's own files. Root is needed for the mounts; without it the tests skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from daemon_fixtures import (
    DaemonProcess,
    Drive,
    disk_files,
    log_events,
    objlibd,
    read_heartbeat,
    status_json,
    store_docs,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.mount]

STATUS_KEYS = {
    "daemon", "volume", "watcher", "paused", "hold", "queue", "last_batch", "files",
    "duplicates", "orphans", "jobs", "remote", "errors", "quarantined", "healthy", "problems",
    "confirm_pending", "state", "progress", "state_rebuilt",
}  # fmt: skip


class Env:
    """One daemon on one drive, with the paths a test needs."""

    def __init__(self, tmp_path: Path, drive: Drive, daemons: list[DaemonProcess], **kw: Any):
        self.drive = drive
        self.state = tmp_path / "state"
        self.logs = tmp_path / "logs"
        self.config = write_config(
            tmp_path / "objlibd.toml", drive.mount_point, self.state, self.logs, **kw
        )
        self.output = tmp_path / "daemon.out"
        self.daemons = daemons

    @property
    def root(self) -> Path:
        return self.drive.root

    def start(self) -> DaemonProcess:
        daemon = DaemonProcess(self.config, self.output).start()
        self.daemons.append(daemon)
        daemon.wait_running()
        return daemon

    def status(self) -> dict[str, Any]:
        return status_json(self.config)

    def files(self) -> dict[str, int]:
        return self.status()["files"]

    def wait_files(self, timeout: float = 15, **expected: int) -> None:
        def ok() -> bool:
            files = self.files()
            return all(files.get(k) == v for k, v in expected.items())

        assert wait_for(ok, timeout, interval=0.1), (self.files(), self.tail())

    def store_matches_disk(self) -> bool:
        disk = disk_files(self.root)
        docs = store_docs(self.state)
        present = {path: hashes for path, hashes in docs.items() if path in disk}
        return present == {path: [digest] for path, digest in disk.items()}

    def tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in log_events(self.logs) if e.get("event") == name]


@pytest.fixture
def env(tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]) -> Env:
    return Env(tmp_path, drive, daemons)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def stop_ok(daemon: DaemonProcess) -> None:
    code, seconds = daemon.stop()
    assert code == 0
    assert seconds < 10


# 1 ---------------------------------------------------------------------------------------------


def test_add_edit_delete_rename_reach_the_store_within_the_quiet_window(env: Env) -> None:
    for i in range(6):
        write(env.root / f"books/b{i}.txt", f"book {i}")
    daemon = env.start()
    env.wait_files(uploaded=6)

    started = time.monotonic()
    write(env.root / "new one.md", "fresh")
    env.wait_files(uploaded=7, timeout=5)
    added_s = time.monotonic() - started
    (env.root / "books/b0.txt").write_text("book 0, second edition")
    assert wait_for(env.store_matches_disk, 5, interval=0.1)
    (env.root / "books/b1.txt").unlink()
    env.wait_files(uploaded=6, missing=1, timeout=5)
    (env.root / "books/b2.txt").rename(env.root / "books/b2 renamed.txt")
    env.wait_files(uploaded=6, missing=1, deleted=1, timeout=5)  # a rename is a move
    snap = env.status()
    stop_ok(daemon)

    assert added_s < 0.3 + 3
    assert env.store_matches_disk()
    assert "books/b2.txt" not in store_docs(env.state)
    assert set(snap) == STATUS_KEYS
    assert (snap["last_batch"]["counts"]["moved"], snap["last_batch"]["counts"]["missing"]) == (
        1,
        0,
    )
    assert snap["healthy"] is True
    assert snap["watcher"]["alive"] is True


# 2 ---------------------------------------------------------------------------------------------


def test_unmount_with_a_batch_pending_marks_nothing_missing(
    tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]
) -> None:
    env = Env(tmp_path, drive, daemons, quiet=1.5)
    for i in range(10):
        write(env.root / f"f{i}.txt", f"file {i}")
    daemon = env.start()
    env.wait_files(uploaded=10)
    docs_before = store_docs(env.state)

    (env.root / "f0.txt").unlink()  # a real delete, pending in the window
    write(env.root / "late.txt", "written just before the cable was pulled")
    drive.unmount()
    assert wait_for(lambda: env.status()["volume"]["state"] == "unavailable", 5)
    assert wait_for(lambda: env.events("batch.parked"), 10)  # the pending batch came due
    snap = env.status()

    assert snap["files"]["missing"] == 0
    assert snap["watcher"]["alive"] is False
    assert snap["daemon"]["running"] is True
    assert "nothing is mounted" in snap["volume"]["reason"]

    drive.mount(make_root=False)
    env.wait_files(uploaded=10, missing=1, timeout=10)  # late.txt up, f0.txt really gone
    docs_after = store_docs(env.state)
    stop_ok(daemon)

    assert {p: docs_after[p] for p in docs_before} == docs_before  # nothing re-uploaded
    assert env.events("volume.unmounted")
    assert env.events("batch.parked")


def test_unmount_while_a_batch_runs_marks_nothing_missing(
    tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]
) -> None:
    env = Env(tmp_path, drive, daemons)
    daemon = env.start()
    for i in range(1500):
        write(env.root / f"bulk/f{i:04}.txt", f"payload {i} " * 50)
    assert wait_for(lambda: read_heartbeat(env.state).get("current"), 20, interval=0.01)
    drive.unmount()
    assert wait_for(lambda: env.status()["volume"]["state"] == "unavailable", 5)
    assert wait_for(lambda: not read_heartbeat(env.state).get("current"), 10)

    assert env.files()["missing"] == 0

    drive.mount(make_root=False)
    env.wait_files(uploaded=1500, missing=0, timeout=60)
    stop_ok(daemon)

    assert env.store_matches_disk()
    assert all(len(hashes) == 1 for hashes in store_docs(env.state).values())


# 3 ---------------------------------------------------------------------------------------------


def test_a_burst_of_20000_files_all_land_in_bounded_batches(
    tmp_path: Path, big_drive: Drive, daemons: list[DaemonProcess]
) -> None:
    env = Env(tmp_path, big_drive, daemons, quiet=1.0, max_wait=30)
    daemon = env.start()
    proc = psutil.Process(daemon.pid)
    peak = [0.0]

    def done() -> bool:
        peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
        return env.files()["uploaded"] == 20_000

    started = time.monotonic()
    for d in range(20):
        folder = env.root / f"burst {d:02}"
        folder.mkdir()
        for i in range(1000):
            (folder / f"doc{i:04}.txt").write_text(f"{d}/{i}")
    created_s = time.monotonic() - started
    assert wait_for(done, 240, interval=0.5), env.files()
    batches = env.events("batch.synced")
    stop_ok(daemon)
    print(
        f"burst: created in {created_s:.1f}s, all synced after {time.monotonic() - started:.1f}s,"
        f" {len(batches)} batches, peak RSS {peak[0]:.0f} MB"
    )

    assert created_s < 20
    assert env.store_matches_disk()
    assert peak[0] < 150
    assert all(len(b.get("subtrees", [])) <= 16 for b in batches)
    assert all(b.get("paths", 0) <= 500 for b in batches)


# 4 ---------------------------------------------------------------------------------------------


def test_a_killed_emitter_is_rebuilt_and_a_reconcile_catches_what_it_missed(env: Env) -> None:
    daemon = env.start()
    write(env.root / "before.txt", "before")
    env.wait_files(uploaded=1)

    daemon.proc.send_signal(signal.SIGUSR2)  # kill the watchdog emitter thread
    write(env.root / "while dead.txt", "nobody is watching")
    assert wait_for(lambda: env.events("watcher.rebuilt"), 10)
    env.wait_files(uploaded=2, timeout=10)
    write(env.root / "after.txt", "watched again")
    env.wait_files(uploaded=3, timeout=5)
    stop_ok(daemon)

    assert env.events("watcher.died")
    assert env.store_matches_disk()


# 5 ---------------------------------------------------------------------------------------------


def test_sigterm_during_a_batch_exits_0_fast_and_a_restart_finishes_without_duplicates(
    env: Env,
) -> None:
    daemon = env.start()
    for i in range(3000):
        write(env.root / f"many/f{i:04}.txt", f"content {i} " * 40)
    assert wait_for(lambda: read_heartbeat(env.state).get("current"), 20, interval=0.01)

    code, seconds = daemon.stop()
    partial = env.files()["uploaded"]
    env.start()
    env.wait_files(uploaded=3000, timeout=90)

    assert code == 0
    assert seconds < 10
    assert partial < 3000
    assert all(len(hashes) == 1 for hashes in store_docs(env.state).values())
    assert env.store_matches_disk()


def test_a_second_daemon_for_the_same_state_dir_refuses(env: Env) -> None:
    daemon = env.start()

    second = objlibd("run", "--config", str(env.config), timeout=20)

    assert second.returncode == 1
    assert f"already running for this state dir (pid {daemon.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    stop_ok(daemon)


# 6 ---------------------------------------------------------------------------------------------


def _result(env: Env, job: str) -> str:
    return env.status()["jobs"][job]["last_result"] or ""


def test_jobs_run_on_schedule_skip_while_unmounted_and_run_on_remount(
    tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]
) -> None:
    env = Env(
        tmp_path, drive, daemons, sync_extra="prune_after_days = 0.00002",
        extra="[jobs]\norphan_cleanup_minutes = 0.02\nprune_minutes = 0.02\n",
    )  # fmt: skip
    for i in range(6):
        write(env.root / f"f{i}.txt", f"file {i}")
    daemon = env.start()
    env.wait_files(uploaded=6)
    (env.root / "f5.txt").unlink()
    env.wait_files(missing=1)
    assert wait_for(lambda: env.files()["deleted"] == 1, 15)  # pruned after ~2 s missing
    assert "f5.txt" not in store_docs(env.state)
    assert wait_for(lambda: _result(env, "orphan_cleanup") == "completed", 10)
    assert env.status()["jobs"]["prune"]["next_run"]

    drive.unmount()
    assert wait_for(lambda: _result(env, "orphan_cleanup").startswith("skipped: volume"), 10)
    assert wait_for(lambda: _result(env, "prune").startswith("skipped: volume"), 10)

    drive.mount(make_root=False)
    assert wait_for(lambda: _result(env, "orphan_cleanup") == "completed", 10)
    assert wait_for(lambda: _result(env, "prune") == "completed", 10)
    stop_ok(daemon)

    assert env.files()["missing"] == 0


# 7 ---------------------------------------------------------------------------------------------


def test_logs_filter_by_level_since_grep_and_follow(env: Env) -> None:
    daemon = env.start()
    args = ("--config", str(env.config))
    follower = subprocess.Popen(
        [sys.executable, "-m", "objlibd", "logs", "-f", "--json", "--grep", "batch.synced", *args],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or []), daemon=True)
    reader.start()
    writes = iter(range(100))

    def followed() -> bool:  # the follower starts at the end: keep changing files until seen
        write(env.root / f"followed {next(writes)}.txt", "x")
        return bool(lines)

    try:
        assert wait_for(followed, 15, interval=0.5)
    finally:
        follower.terminate()
        follower.wait(5)
    line = lines[0]
    drive = env.drive
    drive.unmount()
    assert wait_for(lambda: env.events("volume.unmounted"), 5)
    stop_ok(daemon)

    warnings = objlibd("logs", "--level", "warning", "--json", *args).stdout.splitlines()
    grep = objlibd("logs", "--grep", "VOLUME.UNMOUNTED", *args).stdout
    recent = objlibd("logs", "--since", "10m", "-n", "2", "--json", *args).stdout.splitlines()
    future = objlibd("logs", "--since", "2999-01-01T00:00:00", *args).stdout
    bad = objlibd("logs", "--since", "whenever", *args)

    assert json.loads(line)["event"] == "batch.synced"
    assert warnings
    assert {json.loads(w)["level"] for w in warnings} <= {"warning", "error", "critical"}
    assert "volume.unmounted" in grep
    assert len(recent) == 2
    assert future == ""
    assert bad.returncode == 2


def test_status_works_without_a_daemon_and_says_not_running(env: Env) -> None:
    started = time.monotonic()
    done = objlibd("status", "--json", "--config", str(env.config))
    elapsed = time.monotonic() - started
    snap = json.loads(done.stdout)

    assert done.returncode == 1
    assert set(snap) == STATUS_KEYS
    assert snap["daemon"] == {"running": False, "pid": None, "uptime_s": None, "rss_mb": None}
    assert snap["volume"]["state"] == "available"
    assert elapsed < 5
    assert os.path.ismount(env.drive.mount_point)


def test_pause_stops_uploads_and_resume_catches_up(env: Env) -> None:
    daemon = env.start()
    args = ("--config", str(env.config))

    assert objlibd("pause", *args).returncode == 0
    assert wait_for(lambda: env.events("daemon.paused"), 5)
    write(env.root / "while paused.txt", "waits")
    assert wait_for(lambda: env.status()["queue"]["pending_paths"] == 1, 5)
    assert env.files()["uploaded"] == 0
    assert env.status()["paused"] is True
    daemon.stop()
    daemon = env.start()  # the pause survives a restart
    assert env.status()["paused"] is True
    assert env.files()["uploaded"] == 0

    assert objlibd("resume", *args).returncode == 0
    env.wait_files(uploaded=1, timeout=5)
    stop_ok(daemon)


# operator decisions while the daemon runs ------------------------------------------------------


def test_a_mass_disappearance_is_held_then_confirmed_through_the_running_daemon(env: Env) -> None:
    for i in range(20):
        write(env.root / f"talks/t{i:02d}.txt", f"talk {i}")
    daemon = env.start()
    env.wait_files(uploaded=20)

    for i in range(12):
        (env.root / f"talks/t{i:02d}.txt").unlink()
    assert wait_for(lambda: env.status()["hold"] is not None, 15, interval=0.1), env.tail()
    held = env.status()
    confirm = objlibd("missing", "--confirm", "--config", str(env.config))
    assert wait_for(lambda: env.status()["hold"] is None, 15, interval=0.1), env.tail()
    env.wait_files(uploaded=8, missing=12)
    stop_ok(daemon)

    assert held["files"]["missing"] == 0, "nothing is marked while the hold stands"
    assert held["healthy"] is False
    assert confirm.returncode == 0, confirm.stderr
    assert "asked the running daemon" in confirm.stdout


# the rule above all ------------------------------------------------------------------------------


def test_a_confirm_while_paused_is_stored_and_applied_on_resume(env: Env) -> None:
    for i in range(20):
        write(env.root / f"talks/t{i:02d}.txt", f"talk {i}")
    daemon = env.start()
    env.wait_files(uploaded=20)
    args = ("--config", str(env.config))
    for i in range(12):
        (env.root / f"talks/t{i:02d}.txt").unlink()
    assert wait_for(lambda: env.status()["hold"] is not None, 15, interval=0.1), env.tail()
    assert objlibd("pause", *args).returncode == 0
    assert wait_for(lambda: env.status()["paused"], 10, interval=0.1)

    confirm = objlibd("missing", "--confirm", *args)
    assert wait_for(lambda: env.status()["confirm_pending"], 10, interval=0.1), env.tail()
    waiting = env.status()
    assert objlibd("resume", *args).returncode == 0
    assert wait_for(lambda: env.status()["hold"] is None, 15, interval=0.1), env.tail()
    env.wait_files(uploaded=8, missing=12)
    stop_ok(daemon)

    assert confirm.returncode == 0, confirm.stderr
    assert "paused" in confirm.stdout
    assert "`objlibd resume`" in confirm.stdout
    assert waiting["hold"] is not None, "nothing applied while paused"
    assert waiting["files"]["missing"] == 0
    assert env.events("missing.confirm_deferred")
    assert env.events("missing.confirmed")


def test_a_drive_yanked_during_a_burst_parks_it_and_every_file_lands_once_on_remount(
    tmp_path: Path, big_drive: Drive, daemons: list[DaemonProcess]
) -> None:
    env = Env(tmp_path, big_drive, daemons)
    write(env.root / "seed.txt", "seed")
    daemon = env.start()
    env.wait_files(uploaded=1)

    for i in range(2000):
        write(env.root / f"burst/{i // 100:02d}/f{i:04d}.txt", f"file {i}\n")
    assert wait_for(lambda: len(store_docs(env.state)) >= 50, 60, interval=0.05), env.tail()
    big_drive.unmount()  # lazily, in the middle of the burst's uploads
    assert wait_for(lambda: env.events("batch.parked"), 30, interval=0.1), env.tail()
    yanked = env.files()

    big_drive.mount(make_root=False)
    landed = wait_for(lambda: len(store_docs(env.state)) == 2001, 180, interval=0.5)
    assert landed, (len(store_docs(env.state)), env.tail())
    assert wait_for(env.store_matches_disk, 30, interval=0.5)
    after = env.files()
    stop_ok(daemon)

    assert yanked["failed"] == yanked["error"] == yanked["missing"] == 0, yanked
    assert after["failed"] == after["error"] == after["missing"] == 0, after
    assert all(len(shas) == 1 for shas in store_docs(env.state).values()), "none twice"
    assert not env.events("file.failed")
