"""The daemon's heartbeat file, written so that a full state disk cannot silence it.

`objlibd status` believes a daemon runs while its heartbeat is fresh. A full disk has no
room for the usual temp file + rename, so the file is kept padded to whole pages and, when
the atomic write fails for lack of space, rewritten in place: the daemon then still says
that it runs, and why it is in trouble ("state disk full"), instead of looking dead.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

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
