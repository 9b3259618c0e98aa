"""What is on disk, one path at a time: the walk's result, the symlink ladder, touched paths.

`WalkResult` is what a walk (`scanner.walk`) or a stat of given paths (`stat_paths`) found.
`add_file` is the one place a path's `lstat` becomes a file, a followed symlink, nothing (a
special file) or a Problem: symlinks to files are followed only when they resolve inside the
root, never to a folder. `stat_paths` looks at the daemon's touched paths, O(paths);
`sha256_file` hashes one file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from objlibd.engine.filters import Filters
from objlibd.models import Listing, Problem, Signature

HASH_BUFFER = 1 << 20
LINKED_FOLDER = "symlink to a folder: not followed"


@dataclass(slots=True)
class WalkResult:
    """Eligible files found, what could not be read, and the folders that failed to list.

    `folders` is the walk's own shape: per folder (relative path, '' = the root) the eligible
    file names in directory order with their sizes and mtimes. Two walks of an unchanged tree
    compare equal in C, which is what lets a quiet reconcile skip the per-file index.
    `entries` is the per-file view the diff uses, built on first use.
    """

    folders: dict[str, Listing] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)
    real_root: str = ""  # the root's resolved path: where followed symlinks must stay
    _entries: dict[str, Signature] | None = field(default=None, repr=False, compare=False)

    @property
    def entries(self) -> dict[str, Signature]:
        """Every file found, by relative path, as its (path, size, mtime_ns) signature."""
        if self._entries is None:
            entries: dict[str, Signature] = {}
            for folder, (names, sizes, mtimes) in self.folders.items():
                paths = list(map(f"{folder}/".__add__, names)) if folder else names
                entries.update(zip(paths, zip(paths, sizes, mtimes, strict=True), strict=True))
            self._entries = entries
        return self._entries

    @property
    def count(self) -> int:
        """Return how many files the walk found."""
        return sum(len(names) for names, _, _ in self.folders.values())

    def add(self, rel_path: str, size: int, mtime_ns: int) -> None:
        """Record one file found outside a folder listing (touched paths, followed links)."""
        folder, _, name = rel_path.rpartition("/")
        names, sizes, mtimes = self.folders.setdefault(folder, ([], [], []))
        names.append(name)
        sizes.append(size)
        mtimes.append(mtime_ns)
        self._entries = None

    def extend(self, folder: str, listing: Listing) -> None:
        """Record a folder's listing (after the links of it followed by `add`, if any)."""
        names, sizes, mtimes = listing
        if not names:
            return
        found = self.folders.get(folder)
        if found is None:
            self.folders[folder] = listing
        else:
            found[0].extend(names)
            found[1].extend(sizes)
            found[2].extend(mtimes)
        self._entries = None

    def covers(self, rel_path: str) -> bool:
        """Return True if the walk really looked where `rel_path` would be."""
        return not any(
            d in ("", rel_path) or rel_path.startswith(d + "/") for d in self.unreadable_dirs
        )


def add_file(
    result: WalkResult,
    rel: str,
    path: str,
    real_root: str,
    *,
    entry: os.DirEntry[str] | None = None,
    absent: set[str] | None = None,
) -> None:
    """Add the file at `path` (`rel` in the library) to `result`, or say why not.

    One `lstat` (the listing's `entry` when there is one); a symlink is followed only to a
    regular file inside `real_root`; anything else that is not a regular file is ignored,
    and what cannot be read is a Problem. With `absent`, a path that is not there is put in
    it (a touched path that was deleted) instead of being a problem (a listed one that was).
    """
    try:
        info = os.lstat(path) if entry is None else entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            info = _follow_link(path, real_root)
    except _LinkSkippedError as skip:
        result.problems.append(Problem(rel, str(skip)))
        return
    except OSError as err:
        if absent is not None and isinstance(err, FileNotFoundError | NotADirectoryError):
            absent.add(rel)
        else:
            result.problems.append(Problem(rel, f"cannot read: {why(err)}"))
        return
    if stat.S_ISREG(info.st_mode):
        result.add(rel, info.st_size, info.st_mtime_ns)


class _LinkSkippedError(Exception):
    pass


def _follow_link(path: str, real_root: str) -> os.stat_result:
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as err:
        if "loop" in str(err).lower() or getattr(err, "errno", None) == 40:
            raise _LinkSkippedError("symlink loop: skipped") from None
        raise _LinkSkippedError(f"broken symlink: {why(err)}") from None
    if os.path.commonpath([real_root, target]) != real_root:
        raise _LinkSkippedError("symlink points outside the library: skipped")
    info = os.stat(target)  # noqa: PTH116 - str paths keep the walk allocation-free
    if not stat.S_ISREG(info.st_mode):
        raise _LinkSkippedError(LINKED_FOLDER)
    return info


def stat_paths(root: Path, filters: Filters, paths: Iterable[str]) -> tuple[WalkResult, set[str]]:
    """Stat each relative path; return what exists (eligible) and which paths are absent.

    Cost is O(len(paths)). Names that are not eligible are ignored without a syscall;
    folders are neither entries nor absent (the watcher reports folder changes as subtrees).
    A path whose folder is now reached through a symlink is absent, as the walk would see it.
    """
    result = WalkResult()
    absent: set[str] = set()
    real_root = os.path.realpath(root)
    linked: dict[str, bool] = {}  # folder -> reached through a symlink (so not in the library)
    for rel in paths:
        if not rel or filters.path_excluded(rel) or not filters.eligible(rel.rsplit("/", 1)[-1]):
            continue
        folder = rel.rpartition("/")[0]
        if folder and folder not in linked:
            inside = join(real_root, folder)
            linked[folder] = os.path.realpath(inside) != inside
        if folder and linked[folder]:
            absent.add(rel)  # as the walk sees it: a symlinked folder is never followed
            continue
        add_file(result, rel, os.fspath(root / rel), real_root, absent=absent)
    return result, absent


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's contents (raises OSError)."""
    with open(path, "rb") as handle:  # noqa: PTH123 - buffered binary read is the point
        return hashlib.file_digest(handle, "sha256").hexdigest()


def join(directory: str, name: str) -> str:
    return f"{directory}{name}" if directory.endswith("/") else f"{directory}/{name}"


def utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(rel: str) -> str:
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def why(err: OSError) -> str:
    return err.strerror or str(err)
