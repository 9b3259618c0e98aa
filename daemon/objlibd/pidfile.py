"""Single instance per state dir: a pidfile holding the owner's pid and process create time.

A pidfile is only believed when a process with that pid exists *and* started when the file
says (psutil create_time, within a second): a pid reused by another program after a crash,
or a dead pid, makes the file stale, and the new daemon takes it over. The file is created
with O_EXCL, so two daemons starting at once cannot both win. psutil is imported only where
a process is checked, so `objlibd status` can read the file without paying for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from objlibd.errors import AlreadyRunningError
from objlibd.status import PIDFILE_NAME

__all__ = ["PIDFILE_NAME", "Owner", "PidFile", "is_alive", "live_owner", "read"]
CREATE_TIME_SLACK = 1.0  # seconds; create_time follows the system clock (NTP may nudge it)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who the pidfile says owns the state dir."""

    pid: int
    create_time: float
    started_at: float


def read(path: Path) -> Owner | None:
    """Return the pidfile's owner, or None when there is no readable pidfile."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Owner(int(data["pid"]), float(data["create_time"]), float(data["started_at"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def is_alive(owner: Owner) -> bool:
    """Return True if `owner.pid` is running and is the same process that wrote the file."""
    import psutil  # type: ignore[import-untyped]  # no stubs in the dev env

    try:
        created = float(psutil.Process(owner.pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # someone else's live process: do not take its place
    return abs(created - owner.create_time) <= CREATE_TIME_SLACK


def live_owner(path: Path) -> Owner | None:
    """Return the owner when it is a live process, else None (no file, dead or reused pid)."""
    owner = read(path)
    return owner if owner is not None and is_alive(owner) else None


class PidFile:
    """The daemon's claim on a state dir; `acquire` on start, `release` on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.took_over: Owner | None = None
        self._mine: Owner | None = None

    def acquire(self) -> Owner:
        """Claim the state dir; take over a stale pidfile.

        Raises:
            AlreadyRunningError: a live daemon owns it.
        """
        import psutil

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = psutil.Process(os.getpid())
        mine = Owner(os.getpid(), me.create_time(), time.time())
        for _ in range(3):
            if self._create(mine):
                self._mine = mine
                return mine
            owner = read(self.path)
            if owner is not None and owner.pid != mine.pid and is_alive(owner):
                raise AlreadyRunningError(
                    f"objlibd is already running for this state dir (pid {owner.pid}, "
                    f"pidfile {self.path})",
                    hint="see `objlibd status`; stop the other daemon first (launchd: "
                    "`launchctl bootout`), or give this one its own [state] dir",
                )
            self.took_over = owner
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise AlreadyRunningError(
            f"could not claim {self.path}: another process keeps creating it",
            hint="is a second objlibd starting in a loop? check launchd and `objlibd status`",
        )

    def _create(self, owner: Owner) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        payload = {
            "pid": owner.pid,
            "create_time": owner.create_time,
            "started_at": owner.started_at,
        }
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        return True

    def release(self) -> None:
        """Remove the pidfile if it is still ours."""
        if self._mine is None:
            return
        owner = read(self.path)
        if owner is not None and owner.pid == self._mine.pid:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._mine = None
