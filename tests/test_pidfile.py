"""pidfile: one daemon per state dir; dead or reused pids are taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from daemon_fixtures import wait_for
from objlibd.errors import AlreadyRunningError
from objlibd.runtime import pidfile


def write(path: Path, pid: int, create_time: float) -> None:
    path.write_text(json.dumps({"pid": pid, "create_time": create_time, "started_at": 1.0}))


def test_acquire_writes_pid_and_create_time_and_release_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    lock = pidfile.PidFile(path)

    owner = lock.acquire()
    found = pidfile.read(path)
    lock.release()

    assert owner.pid == os.getpid()
    assert found == owner
    assert owner.create_time == psutil.Process().create_time()
    assert not path.exists()


def test_a_live_owner_refuses_a_second_daemon(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        write(path, child.pid, psutil.Process(child.pid).create_time())

        with pytest.raises(AlreadyRunningError, match=f"already running .*pid {child.pid}"):
            pidfile.PidFile(path).acquire()
    finally:
        child.kill()
        child.wait()

    assert pidfile.read(path).pid == child.pid  # untouched


def test_a_dead_pid_is_stale_and_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    child.wait()
    write(path, child.pid, created)
    lock = pidfile.PidFile(path)

    owner = lock.acquire()
    lock.release()

    assert owner.pid == os.getpid()
    assert lock.took_over is not None
    assert lock.took_over.pid == child.pid


def test_a_reused_pid_with_another_create_time_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    write(path, os.getppid(), 12345.0)  # a live process, but not the one that wrote the file
    lock = pidfile.PidFile(path)

    lock.acquire()
    lock.release()

    assert lock.took_over is not None


def test_garbage_pidfile_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    path.write_text("not json")
    lock = pidfile.PidFile(path)

    lock.acquire()

    assert pidfile.live_owner(path).pid == os.getpid()
    lock.release()


def test_release_leaves_someone_elses_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    lock = pidfile.PidFile(path)
    lock.acquire()
    write(path, 1, 0.0)

    lock.release()

    assert path.exists()


def test_a_zombie_owner_is_dead_and_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.pid"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    assert wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10)
    try:
        write(path, child.pid, created)  # exited, but not reaped: the pid still "exists"
        lock = pidfile.PidFile(path)

        lock.acquire()
        lock.release()
    finally:
        child.wait()

    assert lock.took_over is not None
    assert lock.took_over.pid == child.pid


CONTENDER = """
import sys, time
from pathlib import Path
from objlibd.runtime import pidfile
from objlibd.errors import AlreadyRunningError
path, folder, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
(folder / f"ready-{me}").touch()
deadline = time.monotonic() + 60  # the test's own deadline fails first; never hang a run
while not (folder / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.001)  # the poll interval of the wait for "go"
try:
    pidfile.PidFile(path).acquire()
except AlreadyRunningError:
    print("refused", flush=True)
else:
    print("won", flush=True)
    while not (folder / "done").exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # hold the claim until every contender has tried (poll interval)
"""


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "over-a-stale-file"])
def test_of_many_daemons_starting_at_once_exactly_one_wins(tmp_path: Path, stale: bool) -> None:
    path = tmp_path / "objlibd.pid"
    if stale:
        write(path, 999_999_999, 1.0)  # no such pid: every contender wants to take it over
    count = 6
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(path), str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    try:
        assert wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == count, 60)
        (tmp_path / "go").touch()
        lines = [proc.stdout.readline().strip() for proc in contenders if proc.stdout]
        (tmp_path / "done").touch()
    finally:
        for proc in contenders:
            proc.communicate(timeout=30)

    assert sorted(lines) == ["refused"] * (count - 1) + ["won"], lines
