"""The daemon and moves (issue #13, must-show 1, daemon half): `objlibd run` on a tmpfs drive.

Renaming a 250-file folder in a 1,000-file library is one batch of 250 moves: within the
quiet window plus a few seconds the store holds 1,000 documents under the paths on disk,
nothing is missing and no hold stands.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_daemon import Env, stop_ok, write

from daemon_fixtures import DaemonProcess, Drive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.mount]


@pytest.fixture
def env(tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]) -> Env:
    return Env(tmp_path, drive, daemons)


def test_a_renamed_250_file_folder_is_one_batch_of_moves(env: Env) -> None:
    for index in range(1000):
        write(env.root / f"Course {index // 250}/Lecture {index:04d}.txt", f"lecture {index}\n")
    daemon = env.start()
    env.wait_files(uploaded=1000, timeout=60)

    started = time.monotonic()
    (env.root / "Course 2").rename(env.root / "Course 2 (renamed)")
    assert wait_for(lambda: (env.status()["last_batch"] or {}).get("counts", {}).get("moved"),
                    0.3 + 8, interval=0.1), env.tail()  # fmt: skip
    took = time.monotonic() - started
    snap = env.status()
    stop_ok(daemon)

    assert snap["last_batch"]["counts"]["moved"] == 250
    assert (snap["last_batch"]["counts"]["uploaded"], snap["files"]["missing"]) == (0, 0)
    assert (snap["files"]["uploaded"], snap["hold"]) == (1000, None)
    assert env.store_matches_disk()
    assert len(env.events("file.moved")) == 250
    print(f"250 moves done {took:.1f}s after the rename (quiet 0.3 s)")
