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
from objlibd.models import DiskEntry, Problem, Signature, StateIndex

HASH_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class Filters:
    """Which names count as library files.

    Exclude globs are split into the shapes a walk can test in C (exact names, `prefix*`,
    `*suffix`) and a regex for the rest, because every name in the library passes here.
    """

    include: frozenset[str]
    names: frozenset[str]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    other: re.Pattern[str] | None
    marker_name: str

    @classmethod
    def from_settings(cls, library: LibrarySettings) -> Filters:
        """Build filters from [library] include/exclude."""
        names, prefixes, suffixes, other = {library.marker_name}, [], [], []
        for glob in library.exclude:
            body = glob.strip("*")
            if any(c in body for c in "*?[]"):
                other.append(fnmatch.translate(glob))
            elif glob.endswith("*") and not glob.startswith("*"):
                prefixes.append(body)
            elif glob.startswith("*") and not glob.endswith("*"):
                suffixes.append(body)
            elif "*" not in glob:
                names.add(glob)
            else:
                other.append(fnmatch.translate(glob))
        return cls(
            include=frozenset(ext.lower() for ext in library.include),
            names=frozenset(names),
            prefixes=tuple(prefixes),
            suffixes=tuple(suffixes),
            other=re.compile("|".join(other)) if other else None,
            marker_name=library.marker_name,
        )

    def excluded(self, name: str) -> bool:
        """Return True for names never to look at (hidden, temp files, the marker)."""
        return (
            name in self.names
            or name.startswith(self.prefixes)
            or name.endswith(self.suffixes)
            or (self.other is not None and self.other.match(name) is not None)
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

    entries: dict[str, Signature] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)

    def covers(self, rel_path: str) -> bool:
        """Return True if the walk really looked where `rel_path` would be."""
        return not any(
            d in ("", rel_path) or rel_path.startswith(d + "/") for d in self.unreadable_dirs
        )


def walk(root: Path, filters: Filters, prefix: str = "") -> WalkResult:
    """Walk the library (or the subtree `prefix`) and return its eligible files.

    This is the reconcile's hot loop: per entry it does the name checks first and at most one
    `lstat` (the DirEntry's), so it stays close to a bare scandir+stat walk. Rare cases
    (symlinks, odd names, errors) leave the loop for `_visit`.
    """
    result = WalkResult()
    entries = result.entries
    real_root = os.path.realpath(root)
    start = root / prefix if prefix else root
    stack = [(os.fspath(start), prefix)]
    include, is_reg = filters.include, stat.S_ISREG
    names, prefixes, suffixes, other = (
        filters.names, filters.prefixes, filters.suffixes, filters.other
    )  # fmt: skip
    while stack:
        directory, rel_dir = stack.pop()
        base = f"{rel_dir}/" if rel_dir else ""
        for entry in _list(directory, rel_dir, prefix, result):
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not filters.excluded(name):
                        _descend(entry, base, stack, result)
                    continue
            except OSError:
                _visit(entry, base, real_root=real_root, result=result)
                continue
            # The extension test rejects most non-documents before anything else.
            dot = name.rfind(".")
            if dot <= 0 or name[dot:].lower() not in include:
                continue
            # Filters.excluded, inlined: this runs once per document in the library.
            if (
                name in names
                or name.startswith(prefixes)
                or name.endswith(suffixes)
                or (other is not None and other.match(name) is not None)
            ):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                info = None
            if info is not None and is_reg(info.st_mode) and (name.isascii() or _utf8(name)):
                rel = base + name
                entries[rel] = (rel, info.st_size, info.st_mtime_ns)
            else:  # symlinks, specials, undecodable names, errors: reported with the right words
                _visit(entry, base, real_root=real_root, result=result)
    return result


def _descend(
    entry: os.DirEntry[str], base: str, stack: list[tuple[str, str]], result: WalkResult
) -> None:
    name = entry.name
    if name.isascii() or _utf8(name):
        stack.append((entry.path, base + name))
    else:
        result.problems.append(
            Problem(_printable(base + name), "folder name is not valid UTF-8: rename it")
        )


def _list(directory: str, rel_dir: str, prefix: str, result: WalkResult) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as iterator:
            return list(iterator)
    except FileNotFoundError:
        if rel_dir == prefix and prefix:
            return []  # the subtree itself is gone: its files are simply absent
        result.unreadable_dirs.append(rel_dir)
        result.problems.append(Problem(rel_dir or ".", "cannot list folder: it vanished"))
    except OSError as err:
        result.unreadable_dirs.append(rel_dir)
        result.problems.append(Problem(rel_dir or ".", f"cannot list folder: {_why(err)}"))
    return []


def _visit(entry: os.DirEntry[str], base: str, *, real_root: str, result: WalkResult) -> None:
    """Handle what the fast path did not: non-ASCII names, symlinks, specials, errors."""
    name = entry.name
    if not _utf8(name):
        result.problems.append(
            Problem(_printable(base + name), "file name is not valid UTF-8: rename it")
        )
        return
    rel = base + name
    try:
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            info = _follow_link(entry.path, real_root)
        elif not stat.S_ISREG(info.st_mode):
            return
    except _LinkSkippedError as skip:
        result.problems.append(Problem(rel, str(skip)))
        return
    except OSError as err:
        result.problems.append(Problem(rel, f"cannot read: {_why(err)}"))
        return
    result.entries[rel] = (rel, info.st_size, info.st_mtime_ns)


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


@dataclass(slots=True)
class Diff:
    """How the disk differs from the DB.

    `new`: no usable record. `check`: content may have changed (stat differs, a retry, a
    missing file back, or --force): hash and compare. `missing`: recorded paths not on disk.
    `unchanged`: same size and mtime as recorded (not re-hashed).
    """

    new: list[DiskEntry] = field(default_factory=list)
    check: list[DiskEntry] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unchanged: int = 0


def diff(
    disk: Mapping[str, Signature],
    known: StateIndex,
    *,
    force: bool = False,
) -> Diff:
    """Compare what the walk saw with the DB's index (both keyed by relative path).

    Everything in `known` is in scope: a full reconcile passes the whole index, a batch only
    the rows of the paths it looked at. Settled files whose recorded (path, size, mtime) is
    identical are unchanged: one dict lookup and one tuple comparison each.
    """
    result = Diff()
    if force:
        changed: Iterable[tuple[str, Signature]] = disk.items()
    else:
        settled = known.settled.get
        changed = [(path, sig) for path, sig in disk.items() if settled(path) != sig]
    for path, signature in changed:
        entry = DiskEntry(*signature)  # type: ignore[arg-type]  # walk tuples are never None
        if path in known.settled:
            result.check.append(entry)
        elif known.unsettled.get(path, "deleted") == "deleted":
            result.new.append(entry)
        else:
            result.check.append(entry)  # a retry, or a missing file that is back
    result.unchanged = len(disk) - len(result.new) - len(result.check)
    gone = known.settled.keys() - disk.keys()
    gone.update(p for p, status in known.unsettled.items() if status != "deleted" and p not in disk)
    result.missing = sorted(gone)
    result.new.sort()
    result.check.sort()
    return result


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
