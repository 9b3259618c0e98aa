"""Single instance per state dir: a pidfile holding the owner's pid and process create time.

A pidfile is only believed when a process with that pid exists *and* started when the file
says (psutil create_time, within a second): a pid reused by another program after a crash,
or a dead pid (a zombie too), makes the file stale, and the new daemon takes it over.

Two daemons starting at once cannot both win: the file is written in full to a temp file
and then linked into place (`link` fails when the name exists), so nobody ever reads a
half-written pidfile, and the check-then-take-over runs under an `flock` on a lock file
beside it, so two starters cannot both remove a stale file and each put their own. psutil
is imported only where a process is checked, so `objlibd status` can read the file without
paying for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from objlibd.errors import AlreadyRunningError, StateDiskFullError
from objlibd.status.files import PIDFILE_NAME

__all__ = ["PIDFILE_NAME", "Owner", "PidFile", "is_alive", "live_owner", "read"]
_NEW = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
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
        process = psutil.Process(owner.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False  # exited, only not reaped yet
        created = float(process.create_time())
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
        with self._serialized():
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

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        """Hold an exclusive lock on `<pidfile>.lock` (kept, never removed) for the check."""
        import fcntl

        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _create(self, owner: Owner) -> bool:
        """Put a complete pidfile in place unless one exists (temp file, then `link`)."""
        payload = {
            "pid": owner.pid,
            "create_time": owner.create_time,
            "started_at": owner.started_at,
        }
        tmp = self.path.with_name(f".{self.path.name}.{owner.pid}.tmp")
        try:
            with os.fdopen(os.open(tmp, _NEW, 0o600), "w", encoding="utf-8") as handle:
                json.dump(payload, handle)
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StateDiskFullError.of(self.path.parent) from None
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            return self._create_in_place(payload)  # no hard links here: O_EXCL, under the lock
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _create_in_place(self, payload: dict[str, float]) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
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
