"""Is the library there, and is it the right one? (the rule above all)

`available` only when the mount point is really a mount, the library root exists and is
readable, and the marker file at the root carries the library id this state DB recorded.
Everything else is `unavailable` (nothing to read) or `degraded` (something is mounted, but
it is not provably our library). Neither ever means "the files were deleted".

Nothing is created under the mount point except the marker, inside an existing root.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from objlibd.config import LibrarySettings
from objlibd.models import Availability, VolumeState

LIBRARY_ID_KEY = "library_id"


@dataclass(frozen=True, slots=True)
class Marker:
    """The contents of the marker file."""

    library_id: str
    store: str = ""


def probe(library: LibrarySettings, expected_id: str | None) -> VolumeState:
    """Check the volume and the library on it; `expected_id` is the DB's library id or None.

    With no recorded id (before the first successful sync) a readable root is available.
    """
    mount = library.mount_point
    name = mount.name or str(mount)
    if not os.path.ismount(mount):
        return VolumeState(
            Availability.UNAVAILABLE,
            f'library disk not connected: nothing is mounted at "{mount}"',
            f'connect "{name}" and retry',
        )
    denied = _unreadable(mount) or _unreadable(library.root)
    if denied is not None:
        return denied
    if not library.root.is_dir():
        return VolumeState(
            Availability.DEGRADED,
            f'"{name}" is mounted but the library folder "{library.root}" is not on it',
            "check [library] root, or that this is the right drive",
        )
    return _check_marker(library, expected_id)


def _check_marker(library: LibrarySettings, expected_id: str | None) -> VolumeState:
    if expected_id is None:
        return VolumeState(Availability.AVAILABLE, "library found (not synced yet)")
    marker_path = library.root / library.marker_name
    try:
        marker = read_marker(marker_path)
    except FileNotFoundError:
        return VolumeState(
            Availability.DEGRADED,
            f"library marker {marker_path} is missing: this may be another drive or a copy",
            "if this really is your library, run `objlibd marker --write` to re-mark it",
        )
    except (OSError, ValueError) as err:
        return VolumeState(
            Availability.DEGRADED,
            f"library marker {marker_path} is unreadable: {err}",
            "if this really is your library, run `objlibd marker --write` to re-mark it",
        )
    if marker.library_id != expected_id:
        return VolumeState(
            Availability.DEGRADED,
            f"wrong library: marker holds id {marker.library_id}, this state DB synced "
            f"{expected_id}",
            "connect the drive this objlibd synced, or use a separate [state] dir for this one",
        )
    return VolumeState(Availability.AVAILABLE, "library mounted and verified")


def _unreadable(path: Path) -> VolumeState | None:
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except FileNotFoundError:
        return None
    except PermissionError as err:
        hint = "check the folder's permissions"
        if err.errno == errno.EPERM or sys.platform == "darwin":
            hint = (
                f"grant Full Disk Access (or Removable Volumes) to {sys.executable} in "
                "System Settings > Privacy & Security, then restart objlibd"
            )
        return VolumeState(Availability.UNAVAILABLE, f"cannot read {path}: {err.strerror}", hint)
    except OSError as err:
        return VolumeState(
            Availability.UNAVAILABLE,
            f"cannot read {path}: {err.strerror or err}",
            "the drive may be failing or was pulled out; reconnect it",
        )
    return None


def new_library_id() -> str:
    """Return a fresh library id."""
    return uuid.uuid4().hex


def read_marker(path: Path) -> Marker:
    """Read a marker file (raises FileNotFoundError, OSError, ValueError)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get(LIBRARY_ID_KEY), str):
        msg = "not an objlibd marker"
        raise ValueError(msg)  # noqa: TRY004 - callers treat any bad marker as ValueError
    return Marker(library_id=data[LIBRARY_ID_KEY], store=str(data.get("store", "")))


def write_marker(library: LibrarySettings, marker: Marker) -> Path:
    """Write the marker inside the existing library root (never creates directories)."""
    if not library.root.is_dir():
        msg = f"library root {library.root} does not exist"
        raise FileNotFoundError(msg)
    path = library.root / library.marker_name
    tmp = path.with_name(path.name + ".tmp")
    payload = {LIBRARY_ID_KEY: marker.library_id, "store": marker.store, "written_by": "objlibd"}
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
