"""Fixtures and helpers for the daemon's tests (debounce, watcher, jobs, service, e2e).

Imported from tests/conftest.py with one line so the daemon's fixtures and the engine's
fixtures do not collide in one file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DRIVE_NAME = "U32 Shadow"
LIBRARY_DIR = "Objectivism Library"


@dataclass
class FakeClock:
    """A clock tests move by hand."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def wait_for(predicate: Callable[[], object], timeout: float, *, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is truthy or `timeout` passes; return whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@pytest.fixture
def fake_clock() -> FakeClock:
    """Return a FakeClock starting at 1000.0."""
    return FakeClock()


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail when a test leaves threads running (give stopping threads a moment)."""
    before = set(threading.enumerate())
    yield
    ok = wait_for(lambda: not (set(threading.enumerate()) - before), 5.0)
    leaked = sorted(t.name for t in set(threading.enumerate()) - before)
    assert ok, f"threads leaked: {leaked}"


def _mount_tmpfs(point: Path, size: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        check=True,
        capture_output=True,
    )


def unmount(point: Path, *, lazy: bool = True) -> None:
    """Unmount `point` (lazily by default, as a yanked USB drive would go)."""
    argv = ["umount", "-l", str(point)] if lazy else ["umount", str(point)]
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Drive:
    """A tmpfs mounted at a path with a space in its name, standing in for the USB drive."""

    mount_point: Path
    size: str = "64m"

    @property
    def root(self) -> Path:
        return self.mount_point / LIBRARY_DIR

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.mount_point)

    def mount(self, *, make_root: bool = True) -> None:
        _mount_tmpfs(self.mount_point, self.size)
        if make_root:
            self.root.mkdir(exist_ok=True)

    def unmount(self) -> None:
        unmount(self.mount_point)


def make_drive(tmp_path: Path, size: str = "64m") -> Iterator[Drive]:
    """Mount a tmpfs drive under `tmp_path`; skip unless root; always unmount afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs as the library drive")
    point = tmp_path / DRIVE_NAME
    point.mkdir()
    drive = Drive(point, size)
    try:
        drive.mount()
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    try:
        yield drive
    finally:
        while os.path.ismount(point):
            with contextlib.suppress(subprocess.CalledProcessError):
                unmount(point)


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Drive]:
    """A mounted 64 MB tmpfs drive with an empty library folder."""
    yield from make_drive(tmp_path)


def write_config(
    path: Path,
    drive_point: Path,
    state_dir: Path,
    log_dir: Path,
    *,
    extra: str = "",
    quiet: float = 0.3,
    max_wait: float = 5.0,
) -> Path:
    """Write a daemon config for tests: local backend, short windows, dirs under tmp_path."""
    text = f"""
[library]
mount_point = "{drive_point}"
root = "{drive_point / LIBRARY_DIR}"

[store]
backend = "local"
name = "test-store"

[state]
dir = "{state_dir}"

[logs]
dir = "{log_dir}"
level = "debug"

[sync]
quiet_seconds = {quiet}
max_wait_seconds = {max_wait}
"""
    path.write_text(text + extra, encoding="utf-8")
    return path
