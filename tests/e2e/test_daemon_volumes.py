"""The daemon finds its drive by identity (issue #13): `objlibd run` on tmpfs drives.

macOS mounts a second volume with a taken name as "U32 Shadow 1". The daemon, its drive gone
from the mount point, finds the same disk mounted beside it by the library's marker, says
where in `status` and the log, watches it there and syncs; an unmarked volume is never used.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import Env, stop_ok, write

from daemon_fixtures import DaemonProcess, Drive, store_docs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.mount]


@pytest.fixture
def env(tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]) -> Env:
    return Env(tmp_path, drive, daemons)


@pytest.fixture
def second_point(drive: Drive) -> Iterator[Path]:
    point = drive.mount_point.parent / "U32 Shadow 1"
    point.mkdir()
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def test_the_drive_mounted_as_u32_shadow_1_is_found_watched_and_synced(
    env: Env, second_point: Path
) -> None:
    write(env.root / "first.txt", "there from the start")
    daemon = env.start()
    env.wait_files(uploaded=1)

    env.drive.unmount()
    assert wait_for(lambda: env.status()["volume"]["state"] == "unavailable", 10)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(env.drive.mount_point)], check=True
    )  # fmt: skip  (an unmarked volume took the name)
    (env.drive.mount_point / env.root.name).mkdir()
    write(env.drive.mount_point / env.root.name / "stranger.txt", "not ours")
    subprocess.run(["mount", "--bind", str(env.drive.backing), str(second_point)], check=True)
    assert wait_for(lambda: env.status()["volume"]["state"] == "available", 10), env.tail()
    snap = env.status()
    write(second_point / env.root.name / "while elsewhere.txt", "seen by the watcher there")
    env.wait_files(uploaded=2, timeout=10)
    mounted = env.events("volume.mounted")
    stop_ok(daemon)
    subprocess.run(["umount", "-l", str(env.drive.mount_point)], check=False)

    assert "U32 Shadow 1" in snap["volume"]["reason"]
    assert str(second_point) in mounted[-1]["root"]
    assert env.files()["missing"] == 0
    assert sorted(store_docs(env.state)) == ["first.txt", "while elsewhere.txt"]
