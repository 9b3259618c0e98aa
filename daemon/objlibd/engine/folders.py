"""The state and log folders: private, and proven writable before anything starts.

The state dir holds the database, the heartbeat and the local store (full copies of the
library's documents); the log dir holds what the daemon did with them. Both are created
0700 and tightened to it when found wider, and so are the files in them (0600); the files
objlibd creates there are created 0600 in the first place. A folder that cannot be created
or written stops objlibd at start with the path and the fix (exit 2), never with a
traceback from whichever write happened to come first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from objlibd.config import Config
from objlibd.errors import FolderError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def prepare_state(config: Config) -> None:
    """Make the state dir ready for a writer (FolderError, exit 2, when it cannot be)."""
    prepare(config.state.dir, what="state dir", key="[state] dir", config=config)
    local = config.state.dir / "local-store"
    if local.is_dir():  # folders only: a blob in a private folder is private
        for folder in (local, *(p for p in local.iterdir() if p.is_dir())):
            _tighten(folder, PRIVATE_DIR)


def prepare_logs(config: Config) -> None:
    """Make the log dir ready for the daemon's log file (FolderError, exit 2)."""
    prepare(config.logs.dir, what="log dir", key="[logs] dir", config=config)


def prepare(path: Path, *, what: str, key: str, config: Config) -> None:
    """Create `path` private if absent, tighten it and its files, prove it writable."""
    fix = (
        f"create it yourself (mkdir -p '{path}') as the user objlibd runs as, or set {key} "
        f"in {config.source or 'the config'} to a folder that user can write"
    )
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except FileExistsError:
        raise FolderError(f"the {what} {path} is not a folder", hint=fix) from None
    except OSError as err:
        raise FolderError(f"cannot create the {what} {path}: {_why(err)}", hint=fix) from None
    _tighten(path, PRIVATE_DIR)
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    _tighten(Path(entry.path), PRIVATE_FILE)
        fd, probe = tempfile.mkstemp(prefix=".objlibd-write-test-", dir=path)
        os.close(fd)
        Path(probe).unlink()
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return  # writable, only full: the writes themselves say "state disk full"
        raise FolderError(f"cannot write in the {what} {path}: {_why(err)}", hint=fix) from None


def _tighten(path: Path, mode: int) -> None:
    """Drop group and other permissions from something of ours (best effort)."""
    with contextlib.suppress(OSError):
        info = path.lstat()
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
            path.chmod(stat.S_IMODE(info.st_mode) & mode)


def _why(err: OSError) -> str:
    return err.strerror or str(err)
