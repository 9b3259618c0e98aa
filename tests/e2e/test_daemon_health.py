"""The health model end to end: a real daemon on a tmpfs drive, a recording notifier on PATH.

`status` never says healthy when a person is needed, `doctor` agrees, and the person hears
of it once: (a) the daemon runs as an unprivileged user who cannot read the library root (the
Linux face of a missing Full Disk Access grant), then can again; (b) the gemini backend
points at a closed port while work waits; (c) a mass disappearance is held. Notifications go
through the daemon's real runner to `notify-send`, here a script on PATH that records its
argv (no desktop exists here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon_fixtures import (
    DaemonProcess,
    Drive,
    make_drive,
    objlibd,
    status_json,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.mount]

NOBODY = 65534
RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["OBJLIBD_TEST_NOTIFICATIONS"], "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
"""


class Notifications:
    """A `notify-send` on PATH that appends each call's argv (JSON) to a file."""

    def __init__(self, base: Path) -> None:
        self.bin = base / "bin"
        self.bin.mkdir(mode=0o755)
        script = self.bin / "notify-send"
        script.write_text(RECORDER)
        script.chmod(0o755)
        self.log = base / "notifications.jsonl"
        self.log.touch(mode=0o666)
        self.log.chmod(0o666)

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**os.environ, "PATH": path, "OBJLIBD_TEST_NOTIFICATIONS": str(self.log), **extra}

    def sent(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def about(self, words: str) -> list[list[str]]:
        """The problem notifications (not the all-clears) whose text has `words`."""
        return [a for a in self.sent() if words in a[-1] and a[2] != "objlibd: resolved"]

    def resolved(self) -> list[list[str]]:
        return [argv for argv in self.sent() if argv[2] == "objlibd: resolved"]


@pytest.fixture
def base() -> Iterator[Path]:
    """A temp dir an unprivileged user can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="objlibd-health-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def open_drive(base: Path) -> Iterator[Drive]:
    yield from make_drive(base)


def problems(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["code"]: p for p in snap["problems"]}


def status_of(config: Path) -> tuple[int, dict[str, Any]]:
    done = objlibd("status", "--json", "--config", str(config))
    return done.returncode, json.loads(done.stdout)


# (a) ---------------------------------------------------------------------------------------------


def test_an_unreadable_library_is_not_healthy_and_the_person_hears_it_once_then_resolved(
    base: Path, open_drive: Drive, daemons: list[DaemonProcess]
) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run the daemon as an unprivileged user")
    notes = Notifications(base)
    root = open_drive.root
    (root / "a lecture.txt").write_text("text")
    os.chown(root, NOBODY, NOBODY)
    root.chmod(0o000)  # what EPERM without Full Disk Access looks like to the daemon
    for folder in ("state", "logs", "cache"):
        (base / folder).mkdir()
        os.chown(base / folder, NOBODY, NOBODY)
    config = write_config(base / "objlibd.toml", open_drive.mount_point, base / "state",
                          base / "logs")  # fmt: skip
    setpriv = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    env = notes.env(HOME=str(base), XDG_CACHE_HOME=str(base / "cache"))
    daemon = DaemonProcess(config, base / "daemon.out", env=env, prefix=setpriv).start()
    daemons.append(daemon)
    daemon.wait_running()

    assert wait_for(lambda: notes.about("cannot read the library"), 20, interval=0.2), (
        status_of(config), (base / "daemon.out").read_text()[-2000:])  # fmt: skip
    code, snap = status_of(config)
    root.chmod(0o755)  # access granted
    assert wait_for(notes.resolved, 20, interval=0.2), (status_of(config), notes.sent())
    healed_code, healed = status_of(config)
    daemon.stop()

    unreadable = problems(snap)["library_unreadable"]
    assert (code, snap["healthy"], snap["state"]) == (1, False, "unhealthy")
    assert "Permission denied" in unreadable["message"]
    assert "(nobody) read" in unreadable["fix"] and "permissions" in unreadable["fix"]
    assert unreadable["since"]
    assert (healed_code, healed["healthy"]) == (0, True), healed["problems"]
    [problem] = notes.about("cannot read the library")
    [resolved] = notes.resolved()
    assert problem[:3] == ["--app-name=objlibd", "--urgency=critical", "objlibd: error"]
    assert "Fix: let the user objlibd runs as (nobody)" in problem[-1]
    assert resolved[-1].startswith("Resolved: objlibd cannot read the library")
    assert len(notes.sent()) == 2


# (b) ---------------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_at_a_closed_port_with_work_waiting_is_unreachable_and_doctor_fails_it(
    base: Path, open_drive: Drive, daemons: list[DaemonProcess]
) -> None:
    notes = Notifications(base)
    for i in range(3):
        (open_drive.root / f"talk {i}.txt").write_text(f"talk {i}")
    gemini = (
        f'[gemini]\nbase_url = "http://127.0.0.1:{closed_port()}"\nmax_attempts = 2\n'
        "retry_initial_delay_seconds = 0.01\nretry_max_delay_seconds = 0.02\n"
        "timeout_seconds = 2\n[health]\nstore_unreachable_minutes = 0.05\n"
    )
    config = write_config(base / "objlibd.toml", open_drive.mount_point, base / "state",
                          base / "logs", extra=gemini)  # fmt: skip
    config.write_text(config.read_text().replace('backend = "local"', 'backend = "gemini"'))
    env = notes.env(GEMINI_API_KEY="objlibd-test-key-not-real", NO_PROXY="127.0.0.1")
    daemon = DaemonProcess(config, base / "daemon.out", env=env).start()
    daemons.append(daemon)
    daemon.wait_running()

    def unreachable() -> bool:
        return "store_unreachable" in problems(status_json(config))

    assert wait_for(unreachable, 30, interval=0.3), (base / "daemon.out").read_text()[-2000:]
    code, snap = status_of(config)
    text = objlibd("status", "--config", str(config)).stdout
    doctor = subprocess.run(
        [sys.executable, "-m", "objlibd", "doctor", "--json", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert wait_for(lambda: notes.about("store unreachable"), 10, interval=0.2), notes.sent()
    daemon.stop()

    found = problems(snap)["store_unreachable"]
    assert (code, snap["healthy"]) == (1, False)
    assert "ConnectError" in found["message"] and "waiting" in found["message"]
    assert "base_url" in found["fix"]
    assert "ERROR:   store_unreachable" in text and text.endswith("NOT HEALTHY\n")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1
    assert checks["store reachable"]["level"] == "FAIL"
    assert checks["daemon running"]["level"] == "FAIL"
    assert "store_unreachable" in checks["daemon running"]["detail"]
    assert "objlibd-test-key-not-real" not in doctor.stdout + json.dumps(notes.sent())


# (c) ---------------------------------------------------------------------------------------------


def test_a_held_mass_disappearance_is_announced_once_with_the_command(
    base: Path, open_drive: Drive, daemons: list[DaemonProcess]
) -> None:
    notes = Notifications(base)
    for i in range(20):
        (open_drive.root / f"t{i:02d}.txt").write_text(f"talk {i}")
    config = write_config(base / "objlibd.toml", open_drive.mount_point, base / "state",
                          base / "logs")  # fmt: skip
    daemon = DaemonProcess(config, base / "daemon.out", env=notes.env()).start()
    daemons.append(daemon)
    daemon.wait_running()
    assert wait_for(lambda: status_json(config)["files"].get("uploaded") == 20, 20, interval=0.2)

    for i in range(12):
        (open_drive.root / f"t{i:02d}.txt").unlink()
    assert wait_for(lambda: notes.about("vanished at once"), 20, interval=0.2), notes.sent()
    code, snap = status_of(config)
    wait_for(lambda: len(notes.sent()) > 1, 2, interval=0.3)  # nothing more should come
    daemon.stop()

    [held] = notes.about("vanished at once")
    assert "`objlibd missing --confirm`" in held[-1]
    assert len(notes.sent()) == 1
    assert (code, problems(snap)["mass_missing_held"]["severity"]) == (1, "error")
