"""The daemon's heartbeat file, written so that a full state disk cannot silence it.

`objlibd status` believes a daemon runs while its heartbeat is fresh. A full disk has no
room for the usual temp file + rename, so the file is kept padded to whole pages and, when
the atomic write fails for lack of space, rewritten in place: the daemon then still says
that it runs, and why it is in trouble ("state disk full"), instead of looking dead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any

import structlog

from objlibd.errors import StateDiskFullError

log = structlog.get_logger("objlibd.service")

PAGE = 4096
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def write(path: Path, beat: dict[str, Any]) -> None:
    """Write `beat` atomically, padded to whole pages (spaces: still one JSON object)."""
    text = json.dumps(beat, sort_keys=True, default=str)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(text + " " * (-len(text) % PAGE))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def overwrite(path: Path, beat: dict[str, Any]) -> None:
    """Rewrite the heartbeat in place, within its current size (no new disk blocks).

    Raises OSError when there is no heartbeat yet or `beat` does not fit.
    """
    raw = json.dumps(beat, sort_keys=True, default=str).encode()
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        if len(raw) > size:
            raise OSError(errno.ENOSPC, "the heartbeat does not fit in place", str(path))
        os.pwrite(fd, raw + b" " * (size - len(raw)), 0)
    finally:
        os.close(fd)


def no_space(err: OSError) -> bool:
    """Return True when `err` means the disk (or the quota) is full."""
    return err.errno in NO_SPACE


class Heartbeat:
    """The daemon's heartbeat file and what writing it has shown (a full disk), logged once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.disk_problem: str | None = None  # "state disk full: ..." while writes fail so
        self._error: str | None = None

    def write(self, beat: dict[str, Any]) -> bool:
        """Write `beat`; on a full disk say so in it (`state_disk_full`), in place.

        Returns True when this write is the first to succeed after the disk was full.
        """
        try:
            write(self.path, beat)
        except OSError as err:
            self._failed(beat, err)
            return False
        space_back = self.disk_problem is not None
        if space_back or self._error is not None:
            log.info("heartbeat.write_recovered")
        self.disk_problem = self._error = None
        return space_back

    def _failed(self, beat: dict[str, Any], err: OSError) -> None:
        if not no_space(err):
            if str(err) != self._error:
                log.warning("heartbeat.write_failed", error=str(err))
            self._error = str(err)
            return
        full = StateDiskFullError.of(self.path.parent)
        if self.disk_problem is None:
            log.error("state.disk_full", error=str(err), hint=full.hint)
        self.disk_problem = full.message
        beat["state_disk_full"] = full.message
        with contextlib.suppress(OSError):
            overwrite(self.path, beat)
