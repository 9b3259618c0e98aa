"""Fixtures and helpers for the daemon's tests (debounce, watcher, jobs, service, e2e).

Imported from tests/conftest.py with one line so the daemon's fixtures and the engine's
fixtures do not collide in one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fake_clock import FakeClock

DRIVE_NAME = "U32 Shadow"
LIBRARY_DIR = "Objectivism Library"


def wait_for(predicate: Callable[[], object], timeout: float, *, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is truthy or `timeout` passes; return whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)  # the poll interval of this deadline wait


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
    """A USB drive stand-in: a tmpfs (the "disk") bind-mounted at a path with a space.

    Unmounting removes the bind (lazily, like a yanked cable); the tmpfs behind it keeps the
    files, so mounting again brings the same library back, as replugging a drive does.
    """

    mount_point: Path
    backing: Path
    size: str = "64m"

    @property
    def root(self) -> Path:
        return self.mount_point / LIBRARY_DIR

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.mount_point)

    def mount(self, *, make_root: bool = True) -> None:
        if not os.path.ismount(self.backing):
            _mount_tmpfs(self.backing, self.size)
        subprocess.run(
            ["mount", "--bind", str(self.backing), str(self.mount_point)],
            check=True,
            capture_output=True,
        )
        if make_root:
            self.root.mkdir(exist_ok=True)

    def unmount(self) -> None:
        unmount(self.mount_point)


def make_drive(tmp_path: Path, size: str = "64m") -> Iterator[Drive]:
    """Mount a tmpfs drive under `tmp_path`; skip unless root; always unmount afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs as the library drive")
    point = tmp_path / DRIVE_NAME
    # The disk itself, not beside the mount point: objlibd looks at the mounts next to it
    # for a drive carrying the library's marker (a drive that mounted under another name).
    backing = tmp_path / "disks" / "drive backing"
    point.mkdir()
    backing.mkdir(parents=True)
    drive = Drive(point, backing, size)
    try:
        drive.mount()
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    try:
        yield drive
    finally:
        for path in (point, backing):
            while os.path.ismount(path):
                with contextlib.suppress(subprocess.CalledProcessError):
                    unmount(path)


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Drive]:
    """A mounted 64 MB tmpfs drive with an empty library folder."""
    yield from make_drive(tmp_path)


@pytest.fixture
def big_drive(tmp_path: Path) -> Iterator[Drive]:
    """A mounted 512 MB tmpfs drive (bursts, benchmarks)."""
    yield from make_drive(tmp_path, "512m")


def write_config(
    path: Path,
    drive_point: Path,
    state_dir: Path,
    log_dir: Path,
    *,
    extra: str = "",
    quiet: float = 0.3,
    max_wait: float = 5.0,
    level: str = "info",
    sync_extra: str = "",
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
level = "{level}"

[sync]
quiet_seconds = {quiet}
max_wait_seconds = {max_wait}
volume_poll_seconds = 0.3
heartbeat_seconds = 0.3
{sync_extra}
"""
    path.write_text(text + extra, encoding="utf-8")
    return path


# -- the daemon as a subprocess --------------------------------------------------------------


def objlibd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the objlibd CLI in a subprocess (the way people and launchd do)."""
    return subprocess.run(
        [sys.executable, "-m", "objlibd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status_json(config: Path) -> dict[str, Any]:
    """Return `objlibd status --json`."""
    done = objlibd("status", "--json", "--config", str(config))
    return json.loads(done.stdout)


def read_heartbeat(state_dir: Path) -> dict[str, Any]:
    """Return the daemon's heartbeat file ({} when absent)."""
    try:
        return json.loads((state_dir / "daemon.heartbeat.json").read_text())
    except (OSError, ValueError):
        return {}


class DaemonProcess:
    """`objlibd run` in a subprocess with its output in a file."""

    def __init__(
        self,
        config: Path,
        output: Path,
        *,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.output = output
        self.env = env  # None: this process's environment
        self.prefix = prefix  # e.g. setpriv ... to run it as another user
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        handle = self.output.open("ab")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "objlibd", "run", "--config", str(self.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_running(self, timeout: float = 30) -> None:
        ok = wait_for(
            lambda: self.exited() or status_json(self.config)["daemon"]["running"],
            timeout,
            interval=0.2,
        )
        assert ok and not self.exited(), self.output.read_text(errors="replace")

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int | None, float]:
        """Send `sig`; return (exit code or None if still running after `timeout`, seconds)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Collects DaemonProcess objects and kills any still running after the test."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()


def store_docs(state_dir: Path, name: str = "test-store") -> dict[str, list[str]]:
    """Return {path: [sha256 of each document]} of the local store (read-only use)."""
    from objlibd.remote.local import LocalStore

    store = LocalStore(state_dir / "local-store")
    store.ensure_store(name)
    docs: dict[str, list[str]] = {}
    for doc in store.list_docs():
        docs.setdefault(doc.path or "", []).append(doc.sha256 or "")
    return docs


def disk_files(root: Path) -> dict[str, str]:
    """Return {relative path: sha256} of the library's eligible files."""
    from objlibd.config import LibrarySettings
    from objlibd.engine.filters import Filters
    from objlibd.engine.scanner import walk

    filters = Filters.from_settings(LibrarySettings(root=root, mount_point=root.parent))
    entries = walk(root, filters).entries
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in entries}


def log_events(log_dir: Path) -> list[dict[str, Any]]:
    """Return every JSON log record the daemon wrote (current file only)."""
    path = log_dir / "objlibd.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
