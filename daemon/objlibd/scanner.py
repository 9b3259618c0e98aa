"""What is on disk: walking the library, stat-ing touched paths, hashing, and the pure diff.

The walk does one `lstat` per eligible file (names are filtered before any syscall), so an
unchanged reconcile costs about what a bare scandir+stat walk costs. Symlinks to files are
followed only when they resolve inside the root; symlinked directories are never descended
(no loops, nothing outside the library). Anything unreadable becomes a Problem, not a crash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from objlibd.config import LibrarySettings
from objlibd.models import DiskEntry, FileRecord, FileStatus, Problem

HASH_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class Filters:
    """Which names count as library files."""

    include: frozenset[str]
    exclude: re.Pattern[str] | None
    marker_name: str

    @classmethod
    def from_settings(cls, library: LibrarySettings) -> Filters:
        """Build filters from [library] include/exclude."""
        pattern = "|".join(fnmatch.translate(glob) for glob in library.exclude)
        return cls(
            include=frozenset(ext.lower() for ext in library.include),
            exclude=re.compile(pattern) if pattern else None,
            marker_name=library.marker_name,
        )

    def excluded(self, name: str) -> bool:
        """Return True for names never to look at (hidden, temp files, the marker)."""
        return name == self.marker_name or (
            self.exclude is not None and self.exclude.match(name) is not None
        )

    def eligible(self, name: str) -> bool:
        """Return True for a file name that belongs in the store."""
        if self.excluded(name):
            return False
        dot = name.rfind(".")
        return dot > 0 and name[dot:].lower() in self.include

    def path_excluded(self, rel_path: str) -> bool:
        """Return True if any component of a relative path is excluded."""
        return any(self.excluded(part) for part in rel_path.split("/"))


@dataclass(slots=True)
class WalkResult:
    """Eligible files found, what could not be read, and the folders that failed to list."""

    entries: dict[str, DiskEntry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)

    def covers(self, rel_path: str) -> bool:
        """Return True if the walk really looked where `rel_path` would be."""
        return not any(
            d in ("", rel_path) or rel_path.startswith(d + "/") for d in self.unreadable_dirs
        )


def walk(root: Path, filters: Filters, prefix: str = "") -> WalkResult:
    """Walk the library (or the subtree `prefix`) and return its eligible files."""
    result = WalkResult()
    real_root = os.path.realpath(root)
    start = root / prefix if prefix else root
    stack = [(os.fspath(start), prefix)]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as iterator:
                entries = list(iterator)
        except OSError as err:
            if rel_dir == prefix and isinstance(err, FileNotFoundError) and prefix:
                continue  # the subtree itself is gone: its files are simply absent
            result.unreadable_dirs.append(rel_dir)
            result.problems.append(Problem(rel_dir or ".", f"cannot list folder: {_why(err)}"))
            continue
        for entry in entries:
            _visit(entry, rel_dir, filters=filters, real_root=real_root, result=result, stack=stack)
    return result


def _visit(  # noqa: PLR0911 - one early return per kind of entry
    entry: os.DirEntry[str],
    rel_dir: str,
    *,
    filters: Filters,
    real_root: str,
    result: WalkResult,
    stack: list[tuple[str, str]],
) -> None:
    name = entry.name
    if filters.excluded(name):
        return
    rel = f"{rel_dir}/{name}" if rel_dir else name
    if not _utf8(name):
        result.problems.append(Problem(_printable(rel), "file name is not valid UTF-8: rename it"))
        return
    try:
        if entry.is_dir(follow_symlinks=False):
            stack.append((entry.path, rel))
            return
        if not filters.eligible(name):
            return
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            info = _follow_link(entry.path, real_root)
        if not stat.S_ISREG(info.st_mode):
            return
    except _LinkSkippedError as skip:
        result.problems.append(Problem(rel, str(skip)))
        return
    except OSError as err:
        result.problems.append(Problem(rel, f"cannot read: {_why(err)}"))
        return
    result.entries[rel] = DiskEntry(rel, info.st_size, info.st_mtime_ns)


class _LinkSkippedError(Exception):
    pass


def _follow_link(path: str, real_root: str) -> os.stat_result:
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as err:
        if "loop" in str(err).lower() or getattr(err, "errno", None) == 40:
            raise _LinkSkippedError("symlink loop: skipped") from None
        raise _LinkSkippedError(f"broken symlink: {_why(err)}") from None
    if os.path.commonpath([real_root, target]) != real_root:
        raise _LinkSkippedError("symlink points outside the library: skipped")
    info = os.stat(target)  # noqa: PTH116 - str paths keep the walk allocation-free
    if not stat.S_ISREG(info.st_mode):
        raise _LinkSkippedError("symlink to a folder: not followed")
    return info


def stat_paths(root: Path, filters: Filters, paths: Iterable[str]) -> tuple[WalkResult, set[str]]:
    """Stat each relative path; return what exists (eligible) and which paths are absent.

    Cost is O(len(paths)). Names that are not eligible are ignored without a syscall;
    folders are neither entries nor absent (the watcher reports folder changes as subtrees).
    """
    result = WalkResult()
    absent: set[str] = set()
    real_root = os.path.realpath(root)
    for rel in paths:
        if not rel or filters.path_excluded(rel) or not filters.eligible(rel.rsplit("/", 1)[-1]):
            continue
        full = root / rel
        try:
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                info = _follow_link(os.fspath(full), real_root)
        except (FileNotFoundError, NotADirectoryError):
            absent.add(rel)
            continue
        except _LinkSkippedError as skip:
            result.problems.append(Problem(rel, str(skip)))
            continue
        except OSError as err:
            result.problems.append(Problem(rel, f"cannot read: {_why(err)}"))
            continue
        if stat.S_ISREG(info.st_mode):
            result.entries[rel] = DiskEntry(rel, info.st_size, info.st_mtime_ns)
    return result, absent


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's contents (raises OSError)."""
    with open(path, "rb") as handle:  # noqa: PTH123 - buffered binary read is the point
        return hashlib.file_digest(handle, "sha256").hexdigest()


# -- the pure diff ------------------------------------------------------------------------

_RETRY = frozenset({FileStatus.PENDING, FileStatus.UPLOADING, FileStatus.FAILED, FileStatus.ERROR})
_GONE = frozenset({FileStatus.DELETED})


@dataclass(slots=True)
class Diff:
    """How the disk differs from the DB.

    `new`: no usable record. `check`: content may have changed (stat differs, a retry, or
    --force): hash and compare. `missing`: records whose file is not on disk. `unchanged`:
    same size and mtime as recorded (not re-hashed).
    """

    new: list[DiskEntry] = field(default_factory=list)
    check: list[tuple[DiskEntry, FileRecord]] = field(default_factory=list)
    missing: list[FileRecord] = field(default_factory=list)
    unchanged: int = 0


def diff(
    disk: Mapping[str, DiskEntry],
    known: Mapping[str, FileRecord],
    *,
    force: bool = False,
    looked_at: Iterable[str] | None = None,
) -> Diff:
    """Compare disk entries with DB records.

    `looked_at` limits which known records may count as missing (an incremental batch only
    knows about the paths it stat-ed); None means every record was in scope.
    """
    result = Diff()
    for path, entry in disk.items():
        record = known.get(path)
        if record is None or record.status in _GONE:
            result.new.append(entry)
        elif force or record.status in _RETRY or not _same_stat(entry, record):
            result.check.append((entry, record))
        elif record.status is FileStatus.MISSING:
            result.check.append((entry, record))  # back again: confirm the content
        else:
            result.unchanged += 1
    scope = known.keys() if looked_at is None else looked_at
    for path in scope:
        record = known.get(path)
        if record is not None and path not in disk and record.status not in _GONE:
            result.missing.append(record)
    result.new.sort(key=lambda e: e.path)
    result.check.sort(key=lambda pair: pair[0].path)
    result.missing.sort(key=lambda r: r.path)
    return result


def _same_stat(entry: DiskEntry, record: FileRecord) -> bool:
    return entry.size == record.size and entry.mtime_ns == record.mtime_ns


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(rel: str) -> str:
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _why(err: OSError) -> str:
    return err.strerror or str(err)
