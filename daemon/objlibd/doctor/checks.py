"""What a doctor check is, and the checks of the files objlibd depends on.

A check is a small function of values (and, where it must, of one probe of the world)
returning one `Check`: OK / WARN / FAIL with the fix. The ones here look at real things a test
can build on Linux: the config file, the mount, the library root and its marker, the state
DB, the log dir, the disk. The checks of what runs objlibd (API key, store, service manager,
daemon) are in `objlibd.servicechecks`; `objlibd.doctor` runs them all.
"""

from __future__ import annotations

import enum
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from objlibd import config as config_module
from objlibd.config import Config, LibrarySettings
from objlibd.engine import volume
from objlibd.errors import ObjlibdError, StateError
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status.text import size

FAIL_BELOW_BYTES = 100 * 1024**2
WARN_BELOW_BYTES = 1024**3


class Level(enum.StrEnum):
    """How bad a finding is."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    level: Level
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return the check as JSON-ready data."""
        return {
            "name": self.name,
            "level": self.level.value,
            "detail": self.detail,
            "fix": self.fix,
        }


class DiskUsage(NamedTuple):
    """shutil.disk_usage's answer."""

    total: int
    used: int
    free: int


def check_config(path: Path) -> tuple[Check, Config | None]:
    """Is the config file there and valid?"""
    name = "config valid"
    try:
        config = config_module.load(path)
    except ObjlibdError as err:
        fix = f"{err.hint}; the other checks need a valid config" if err.hint else ""
        return Check(name, Level.FAIL, err.message, fix or "fix the config, then run doctor"), None
    detail = f'{path} (backend {config.store.backend}, store "{config.store.name}")'
    return Check(name, Level.OK, detail), config


def check_mount(library: LibrarySettings, found_at: str = "") -> Check:
    """Is something mounted at the mount point (or did the drive get pushed to "<name> 1")?

    `found_at`: where this library's drive was found by its marker beside the mount point
    (`volume.probe`); objlibd uses it there, so that is a warning, not a failure.
    """
    name = "mount point mounted"
    mount = library.mount_point
    if os.path.ismount(mount):
        return Check(name, Level.OK, f"{mount}")
    if found_at:
        return Check(
            name,
            Level.WARN,
            f'the library drive is mounted at "{found_at}", not "{mount}"; objlibd found it '
            "by its marker and uses it there",
            f"to give it its usual name back: eject the drive, remove the empty leftover folder "
            f'if there is one (sudo rmdir "{mount}"), and connect the drive again',
        )
    moved = renamed_mounts(mount)
    if moved:
        return Check(
            name,
            Level.FAIL,
            f'nothing at "{mount}", but a volume is mounted at "{moved[0]}": a leftover '
            f'folder "{mount}" probably took the name',
            f'eject the drive, remove the empty leftover folder (sudo rmdir "{mount}"), '
            "and connect the drive again",
        )
    return Check(
        name,
        Level.WARN,
        f'drive not connected: nothing is mounted at "{mount}"',
        f'connect "{mount.name}"; meanwhile objlibd waits and changes nothing in the store',
    )


def renamed_mounts(mount: Path) -> list[Path]:
    """Return mounts named like `mount` plus a number ("U32 Shadow 1"): a name collision."""
    try:
        siblings = list(mount.parent.iterdir())
    except OSError:
        return []
    prefix = mount.name + " "
    return sorted(
        path
        for path in siblings
        if path.name.startswith(prefix)
        and path.name[len(prefix) :].isdigit()
        and os.path.ismount(path)
    )


def check_root(library: LibrarySettings, mounted: bool) -> Check:
    """Can this process list the library root? (EPERM on macOS: TCC, per binary path)."""
    name = "library root readable"
    if not mounted:
        return Check(name, Level.WARN, "not checked: the drive is not mounted")
    found = volume.probe_root(library)
    if found is None:
        return Check(name, Level.OK, str(library.root))
    return Check(name, Level.FAIL, found.reason, binary_hint(found.hint))


def binary_hint(hint: str) -> str:
    """Add the resolved interpreter when TCC is the cause: the grant is per binary path."""
    real = os.path.realpath(sys.executable)
    if "Full Disk Access" in hint and real != sys.executable:
        return f"{hint} (if that is not enough, also grant the real binary {real})"
    return hint


@dataclass(frozen=True, slots=True)
class DbFacts:
    """What doctor read from the state DB."""

    exists: bool
    integrity: str = ""
    library_id: str | None = None
    store_name: str | None = None
    error: StateError | None = None


def read_db(config: Config) -> DbFacts:
    """Open the state DB read-only, run integrity_check and read the library id."""
    if not config.db_path.exists():
        return DbFacts(exists=False)
    try:
        state = StateStore.open(config.db_path, readonly=True)
    except StateError as err:
        return DbFacts(exists=True, error=err)
    try:
        return DbFacts(
            True,
            state.db.integrity_check(),
            state.values.get_config(keys.LIBRARY_ID),
            state.values.get_config(keys.STORE_NAME),
        )
    except StateError as err:
        return DbFacts(exists=True, error=err)
    except Exception as err:  # noqa: BLE001 - sqlite3 errors from a damaged file
        return DbFacts(exists=True, error=StateError(f"{config.db_path}: {err}"))
    finally:
        state.close()


def check_marker(library: LibrarySettings, db: DbFacts, readable: bool) -> Check:
    """Does the marker on the drive carry the library id the state DB synced?"""
    name = "marker matches the DB"
    if not readable:
        return Check(name, Level.WARN, "not checked: the library root is not readable")
    if db.error is not None:
        return Check(name, Level.WARN, "not checked: the state DB cannot be read")
    if db.library_id is None:
        return Check(name, Level.OK, "nothing to match yet: the first sync writes the marker")
    found = volume.probe(library, db.library_id)
    if found.available:
        return Check(name, Level.OK, f"library id {db.library_id[:12]}")
    return Check(name, Level.FAIL, found.reason, found.hint)


def check_state_db(config: Config, db: DbFacts) -> Check:
    """Is the state DB there and intact (PRAGMA integrity_check)?"""
    name = "state DB integrity"
    if not db.exists:
        return Check(
            name,
            Level.WARN,
            f"no state DB yet at {config.db_path}",
            "start the daemon (`objlibd start`) or run `objlibd sync` once to create it",
        )
    if db.error is not None:
        return Check(name, Level.FAIL, db.error.message, db.error.hint)
    if db.integrity != "ok":
        return Check(
            name,
            Level.FAIL,
            f"{config.db_path}: integrity_check: {db.integrity[:200]}",
            "stop objlibd, move the DB aside (keep it for diagnosis), start again: documents "
            "already in the store are adopted, not uploaded twice",
        )
    return Check(name, Level.OK, f"{config.db_path}: ok")


def check_log_dir(log_dir: Path) -> Check:
    """Can objlibd write its log dir?"""
    name = "log dir writable"
    if not log_dir.is_dir():
        return Check(
            name, Level.WARN, f"{log_dir} does not exist yet", "`objlibd install` creates it"
        )
    try:
        with tempfile.TemporaryFile(dir=log_dir):
            pass
    except OSError as err:
        return Check(
            name,
            Level.FAIL,
            f"cannot write in {log_dir}: {err.strerror or err}",
            f'make it yours again: sudo chown -R "$USER" "{log_dir}"',
        )
    return Check(name, Level.OK, str(log_dir))


def check_disk(state_dir: Path, usage: Callable[[Path], DiskUsage]) -> Check:
    """Is there room for the state DB to grow (and SQLite to checkpoint)?"""
    name = "free disk (state dir)"
    where = _existing_ancestor(state_dir)
    try:
        free = usage(where).free
    except OSError as err:
        return Check(name, Level.WARN, f"cannot tell for {where}: {err.strerror or err}")
    text = f"{size(free)} free for {state_dir}"
    if free < FAIL_BELOW_BYTES:
        return Check(name, Level.FAIL, text, "free some space on that disk")
    if free < WARN_BELOW_BYTES:
        return Check(name, Level.WARN, text, "free some space on that disk soon")
    return Check(name, Level.OK, text)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")
