"""Is the library there, and is it the right one? (the rule above all)

`available` only when the mount point is really a mount, the library root exists and is
readable, and the marker file at the root carries the library id this state DB recorded.
Everything else is `unavailable` (nothing to read) or `degraded` (something is mounted, but
it is not provably our library). Neither ever means "the files were deleted".

Found by identity, not by name: when our library is not at `mount_point` (macOS mounts a
second volume with a taken name as "U32 Shadow 1"; a renamed drive mounts elsewhere under
/Volumes), the other mounts beside it are looked at, and one whose library folder carries
*this* library's marker is used (`found_at` says where; `located` gives its settings). A
volume without our marker is never used, and neither is any when two carry it.

Nothing is created under the mount point except the marker, inside an existing root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from objlibd.config import LibrarySettings
from objlibd.errors import ForeignMarkerError
from objlibd.models import Availability, VolumeState
from objlibd.state import keys


@dataclass(frozen=True, slots=True)
class Marker:
    """The contents of the marker file."""

    library_id: str
    store: str = ""


def probe(library: LibrarySettings, expected_id: str | None) -> VolumeState:
    """Check the volume and the library on it; `expected_id` is the DB's library id or None.

    With no recorded id (before the first successful sync) a readable root is available,
    unless it carries another library's marker. With one, a library that is not at the
    mount point may be found beside it by its marker (see the module docstring).
    """
    found = probe_root(library) or _check_marker(library, expected_id)
    if found.available or expected_id is None:
        return found
    return _found_elsewhere(library, expected_id) or found


def located(library: LibrarySettings, found: VolumeState) -> LibrarySettings:
    """Return the library's settings where `found` says it is (the configured ones if there)."""
    if not found.found_at:
        return library
    return _moved(library, Path(found.found_at)) or library


def _moved(library: LibrarySettings, mount: Path) -> LibrarySettings | None:
    """Return `library` as if its drive were mounted at `mount` (None: root not on the drive)."""
    try:
        inside = Path(os.path.normpath(library.root)).relative_to(
            os.path.normpath(library.mount_point)
        )
    except ValueError:
        return None
    return dataclasses.replace(library, mount_point=mount, root=mount / inside)


def _found_elsewhere(library: LibrarySettings, expected_id: str) -> VolumeState | None:
    """Look at the mounts beside the mount point for one carrying this library's marker."""
    home = library.mount_point
    try:
        with os.scandir(home.parent) as entries:
            names = sorted(e.name for e in entries if not e.is_symlink() and e.is_dir())
    except OSError:
        return None
    matches: list[Path] = []
    for name in names:
        candidate = home.parent / name
        moved = _moved(library, candidate)
        if candidate == home or moved is None or not os.path.ismount(candidate):
            continue
        try:  # one small read before anything else: most mounts are not ours at all
            marker = read_marker(moved.root / moved.marker_name)
        except (OSError, ValueError):
            continue
        if marker.library_id != expected_id:
            continue
        if probe_root(moved) is None and _check_marker(moved, expected_id).available:
            matches.append(candidate)
    if len(matches) > 1:
        places = ", ".join(f'"{m}"' for m in matches)
        return VolumeState(
            Availability.DEGRADED,
            f"this library's marker is on {len(matches)} drives ({places}) and none is at "
            f'"{home}": objlibd will not guess which one is the library',
            "eject all but the library drive",
        )
    if not matches:
        return None
    return VolumeState(
        Availability.AVAILABLE,
        f'library found by its marker at "{matches[0]}" (expected at "{home}")',
        found_at=str(matches[0]),
    )


def probe_root(library: LibrarySettings) -> VolumeState | None:
    """Return why the library folder cannot be used (marker aside), or None if it can."""
    mount = library.mount_point
    name = mount.name or str(mount)
    if mount.is_symlink():
        return VolumeState(
            Availability.DEGRADED,
            f'mount point "{mount}" is a symlink to "{os.path.realpath(mount)}": objlibd '
            "never follows a symlink to find the drive",
            "remove the symlink; the drive mounts there by itself",
        )
    if not os.path.ismount(mount):
        return VolumeState(
            Availability.UNAVAILABLE,
            f'library disk not connected: nothing is mounted at "{mount}"',
            f'connect "{name}" and retry',
            cause="not_connected",
        )
    denied = _unreadable(mount) or _unreadable(library.root)
    if denied is not None:
        return denied
    escaped = _escaped_root(library)
    if escaped is not None:
        return VolumeState(
            Availability.DEGRADED,
            f'library folder "{library.root}" resolves through a symlink to "{escaped}": '
            "objlibd never follows a symlink off the drive",
            "make [library] root a real folder on the drive",
        )
    if not library.root.is_dir():
        return VolumeState(
            Availability.DEGRADED,
            f'"{name}" is mounted but the library folder "{library.root}" is not on it',
            "check [library] root, or that this is the right drive",
        )
    return None


def _escaped_root(library: LibrarySettings) -> str | None:
    """Return where the root really is if a symlink at or below the mount point moves it."""
    real = os.path.realpath(library.root)
    mount = os.path.normpath(library.mount_point)
    try:
        inside = Path(os.path.normpath(library.root)).relative_to(mount)
    except ValueError:
        return real
    expected = os.path.normpath(Path(os.path.realpath(mount)) / inside)
    return None if real == expected else real


def _check_marker(library: LibrarySettings, expected_id: str | None) -> VolumeState:
    marker_path = library.root / library.marker_name
    if expected_id is None:
        try:
            found = read_marker(marker_path)
        except (OSError, ValueError):
            return VolumeState(Availability.AVAILABLE, "library found (not synced yet)")
        return VolumeState(
            Availability.DEGRADED,
            f"this drive is library {found.library_id}, not this state's (this state dir has "
            "synced no library yet): another objlibd state dir owns it",
            "to make this state dir take over that library run `objlibd marker --adopt`; "
            "otherwise point [state] dir at the state that synced it",
        )
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
            f"wrong library: this drive is library {marker.library_id}, this state DB synced "
            f"{expected_id}",
            "connect the drive this objlibd synced, or use a separate [state] dir for this one; "
            "`objlibd marker` explains how to take it over",
        )
    return VolumeState(Availability.AVAILABLE, "library mounted and verified")


def _unreadable(path: Path) -> VolumeState | None:
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except FileNotFoundError:
        return None
    except PermissionError as err:
        hint = (
            f"let the user objlibd runs as ({_user()}) read {path}: check the folder's owner "
            "and permissions"
        )
        if err.errno == errno.EPERM or sys.platform == "darwin":
            hint = (
                f"grant Full Disk Access (or Removable Volumes) to {sys.executable} in "
                "System Settings > Privacy & Security, then restart objlibd"
            )
        return VolumeState(
            Availability.UNAVAILABLE, f"cannot read {path}: {err.strerror}", hint, "unreadable"
        )
    except OSError as err:
        return VolumeState(
            Availability.UNAVAILABLE,
            f"cannot read {path}: {err.strerror or err}",
            "the drive may be failing or was pulled out; reconnect it",
            "io_error",
        )
    return None


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def new_library_id() -> str:
    """Return a fresh library id."""
    return uuid.uuid4().hex


MARKER_MAX_BYTES = 64 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def read_marker(path: Path) -> Marker:
    """Read a marker file (raises FileNotFoundError, OSError, ValueError).

    Never through a symlink, never from anything but a small regular file (a crafted drive
    may put a link, a FIFO or a huge file there).
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            msg = "it is a symlink, not a file"
            raise ValueError(msg) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MARKER_MAX_BYTES:
            msg = "not an objlibd marker (not a small regular file)"
            raise ValueError(msg)
        raw = os.read(fd, MARKER_MAX_BYTES)
    finally:
        os.close(fd)
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get(keys.LIBRARY_ID), str):
        msg = "not an objlibd marker"
        raise ValueError(msg)  # noqa: TRY004 - callers treat any bad marker as ValueError
    return Marker(library_id=data[keys.LIBRARY_ID], store=str(data.get("store", "")))


def write_marker(library: LibrarySettings, marker: Marker, *, force: bool = False) -> Path:
    """Write the marker inside the existing library root; never through a symlink.

    The root is opened with O_NOFOLLOW and everything happens relative to it: a stale temp
    file is unlinked (a link is removed, never followed), the new one is created with
    O_EXCL|O_NOFOLLOW, synced, and renamed over the marker. A valid marker of another library
    is replaced only with `force` (ForeignMarkerError otherwise). On any failure the temp
    file is removed: nothing is left behind. Raises OSError (full, read-only, gone).
    """
    if library.root.is_symlink() or _escaped_root(library) is not None:
        msg = f"library root {library.root} is reached through a symlink"
        raise OSError(errno.ELOOP, msg)
    path = library.root / library.marker_name
    tmp_name = library.marker_name + ".tmp"
    root = os.open(library.root, _DIR_FLAGS)
    try:
        _refuse_foreign(path, marker, force=force)
        payload = {
            keys.LIBRARY_ID: marker.library_id,
            "store": marker.store,
            "written_by": "objlibd",
        }
        data = (json.dumps(payload, indent=2) + "\n").encode("utf-8")
        _unlink_at(tmp_name, root)
        try:
            _write_new(tmp_name, root, data)
            os.rename(tmp_name, library.marker_name, src_dir_fd=root, dst_dir_fd=root)
        except OSError:
            _unlink_at(tmp_name, root)
            raise
        with contextlib.suppress(OSError):
            os.fsync(root)
    finally:
        os.close(root)
    return path


def _refuse_foreign(path: Path, marker: Marker, *, force: bool) -> None:
    try:
        found = read_marker(path)
    except (OSError, ValueError):
        return  # none, or not a marker at all: nothing of another library to protect
    if found.library_id != marker.library_id and not force:
        raise ForeignMarkerError(
            f"the drive is marked as library {found.library_id}, not {marker.library_id}",
            library_id=found.library_id,
            hint="if this drive really is this state's library (restored from a backup), "
            "run `objlibd marker --write --force`; if this state dir should take over the "
            "drive's library, run `objlibd marker --adopt`",
        )


def _unlink_at(name: str, folder: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def _write_new(name: str, folder: int, data: bytes) -> None:
    fd = os.open(name, _NEW_FILE, 0o644, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_problem(err: OSError) -> str:
    """Say why the marker could not be written, in a person's words."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the drive is full: free some space on it and sync again"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            "the drive is read-only for objlibd, so a different drive at the same place "
            "cannot be told apart: make the library folder writable once and sync again"
        )
    if err.errno == errno.ELOOP:
        return "the library folder or the marker is a symlink: objlibd never writes through one"
    return f"{err.strerror or err}: check the drive and sync again"
