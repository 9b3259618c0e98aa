"""Walking the library (or a subtree of it): every eligible file, one `lstat` each.

The walk does one `lstat` per eligible file (names are filtered before any syscall), so an
unchanged reconcile costs about what a bare scandir+stat walk costs. Symlinks to files are
followed only when they resolve inside the root; symlinked directories are never descended
(no loops, nothing outside the library). Anything unreadable becomes a Problem, not a crash.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from objlibd.engine.disk import (
    LINKED_FOLDER,
    WalkResult,
    add_file,
    join,
    printable,
    utf8,
    why,
)
from objlibd.engine.filters import Filters
from objlibd.models import Listing, Problem

# Every folder below the root is opened relative to its parent's descriptor with O_NOFOLLOW:
# a folder swapped for a symlink at any point of the walk is refused, never followed out of
# the library. The root itself may be reached through a symlink.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_CHILD_FLAGS = _DIR_FLAGS | getattr(os, "O_NOFOLLOW", 0)


# A walk keeps at most this many folders open (their descriptors) at once; a folder deeper
# than that below the one being read is closed and re-opened from the root when its next
# subfolder comes up. Depth is no limit, descriptors are (macOS allows 256 by default).
OPEN_FOLDERS = 64


def walk(root: Path, filters: Filters, prefix: str = "") -> WalkResult:
    """Walk the library (or the subtree `prefix`) and return its eligible files.

    This is the reconcile's hot loop. Each folder is opened once and its entries are
    stat-ed relative to that descriptor (`fstatat`), which spares the kernel a full path
    lookup per file: the walk costs about what a bare scandir+stat walk does, or less.
    It is iterative: any depth works, with at most OPEN_FOLDERS descriptors open.
    """
    result = WalkResult(real_root=os.path.realpath(root))
    root_text = os.fspath(root)
    fd = _open_start(root_text, prefix, result)
    if fd is not None:
        start = os.fspath(root / prefix) if prefix else root_text
        _walk_tree(root_text, fd, start, prefix, filters=filters, result=result)
    return result


class _Folder:
    """A folder on the walk's stack: its descriptor (None once closed) and subfolders left."""

    __slots__ = ("directory", "fd", "left", "rel_dir")

    def __init__(self, fd: int, directory: str, rel_dir: str, left: list[str]) -> None:
        self.fd: int | None = fd
        self.directory = directory
        self.rel_dir = rel_dir
        self.left = left  # reversed: the next subfolder is last


def _walk_tree(
    root: str, fd: int, directory: str, rel_dir: str, *, filters: Filters, result: WalkResult
) -> None:
    """Read the open folder `fd` and everything below it, depth first, without recursion.

    Every subfolder is opened relative to its parent's descriptor with O_NOFOLLOW (never
    through a symlink), so a folder keeps its descriptor while subfolders are left to visit.
    """
    stack: list[_Folder] = []
    current: int | None = fd
    try:
        while current is not None:
            subfolders: list[str] = []
            listing = _read_folder(
                current, directory, rel_dir, filters=filters, subfolders=subfolders, result=result
            )
            result.extend(rel_dir, listing)
            if subfolders:
                subfolders.reverse()
                stack.append(_Folder(current, directory, rel_dir, subfolders))
                if len(stack) > OPEN_FOLDERS:
                    _close(stack[-OPEN_FOLDERS - 1])
            else:
                os.close(current)
            current = None
            while stack and current is None:
                folder = stack[-1]
                if not folder.left:
                    _close(folder)
                    stack.pop()
                    continue
                name = folder.left.pop()
                rel_dir = f"{folder.rel_dir}/{name}" if folder.rel_dir else name
                parent = folder.fd if folder.fd is not None else _reopen(root, folder, result)
                if parent is None:
                    _unreadable(rel_dir, "cannot list folder: it vanished", result)
                    continue
                current = _open_child(parent, name, rel_dir, result)
                directory = join(folder.directory, name)
    finally:
        if current is not None:
            os.close(current)
        for folder in stack:
            _close(folder)


def _close(folder: _Folder) -> None:
    if folder.fd is not None:
        os.close(folder.fd)
        folder.fd = None


def _reopen(root: str, folder: _Folder, result: WalkResult) -> int | None:
    """Open a folder closed to spare descriptors again, from the root, never via a symlink."""
    folder.fd = _open_start(root, folder.rel_dir, WalkResult())
    if folder.fd is None:  # gone or swapped since it was read: nothing below it is believed
        base = f"{folder.rel_dir}/" if folder.rel_dir else ""
        for name in folder.left:
            _unreadable(base + name, "cannot list folder: it vanished", result)
        folder.left.clear()
    return folder.fd


def _unreadable(rel: str, reason: str, result: WalkResult) -> None:
    result.unreadable_dirs.append(rel)
    result.problems.append(Problem(printable(rel), reason))


def _read_folder(
    fd: int,
    directory: str,
    rel_dir: str,
    *,
    filters: Filters,
    subfolders: list[str],
    result: WalkResult,
) -> Listing:
    """List one open folder: collect its subfolders, return its eligible regular files.

    Per entry: the name checks first, then at most one `lstat`. Rare cases (symlinks, odd
    names, errors) leave the loop for `_visit`, which reports them with the right words.
    """
    base = f"{rel_dir}/" if rel_dir else ""
    include, is_reg = filters.include, stat.S_ISREG
    names_x, prefixes, suffixes, other = (
        filters.names, filters.prefixes, filters.suffixes, filters.other
    )  # fmt: skip
    names: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    for entry in _list(fd, rel_dir, result):
        name = entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                if not filters.excluded(name):
                    _descend(name, base, subfolders, result)
                continue
        except OSError as err:  # no type from the listing, and no stat either
            if not isinstance(err, FileNotFoundError):
                # Folder or file, it is unknown: nothing at or under it is believed missing.
                result.unreadable_dirs.append(base + name)
                result.problems.append(Problem(printable(base + name), f"cannot read: {why(err)}"))
            continue
        # The extension test rejects most non-documents before anything else.
        dot = name.rfind(".")
        if dot <= 0 or name[dot:].lower() not in include:
            if entry.is_symlink() and not filters.excluded(name):
                _report_linked_folder(entry, base, result)
            continue
        # Filters.excluded, inlined: this runs once per document in the library.
        if (
            name in names_x
            or name.startswith(prefixes)
            or name.endswith(suffixes)
            or (other is not None and other.match(name) is not None)
        ):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            info = None
        if info is not None and is_reg(info.st_mode) and (name.isascii() or utf8(name)):
            names.append(name)
            sizes.append(info.st_size)
            mtimes.append(info.st_mtime_ns)
        else:
            _visit(entry, directory, base, result)
    return names, sizes, mtimes


def _open_start(root: str, prefix: str, result: WalkResult) -> int | None:
    """Open the root, then each folder of `prefix` below it, never through a symlink."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as err:  # the drive went away, or the root is unreadable: nothing missing
        reason = "it vanished" if isinstance(err, FileNotFoundError) else why(err)
        result.unreadable_dirs.append("")
        result.problems.append(Problem(".", f"cannot list folder: {reason}"))
        return None
    done: list[str] = []
    for part in prefix.split("/") if prefix else ():
        done.append(part)
        rel = "/".join(done)
        try:
            child = _open_child(fd, part, rel, result, start=True)
        finally:
            os.close(fd)
        if child is None:
            return None
        fd = child
    return fd


def _open_child(
    parent: int, name: str, rel: str, result: WalkResult, *, start: bool = False
) -> int | None:
    """Open folder `name` of the open folder `parent`; report it and return None if not.

    A folder that is no longer one (or is now a symlink) is absent: what was in it is gone.
    A folder that cannot be opened otherwise is unreadable, so nothing under it is believed
    missing; the same for one that vanished mid-walk, unless it is the subtree asked for.
    """
    try:
        return os.open(name, _CHILD_FLAGS, dir_fd=parent)
    except OSError as err:
        if isinstance(err, NotADirectoryError) or err.errno == errno.ELOOP:
            if _is_link(name, parent):
                result.problems.append(Problem(printable(rel), LINKED_FOLDER))
            return None
        if start and isinstance(err, FileNotFoundError):
            return None  # the subtree itself is gone: its files are simply absent
        reason = "it vanished" if isinstance(err, FileNotFoundError) else why(err)
    result.unreadable_dirs.append(rel)
    result.problems.append(Problem(printable(rel), f"cannot list folder: {reason}"))
    return None


def _is_link(name: str, parent: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode)
    except OSError:
        return False


def _list(fd: int, rel_dir: str, result: WalkResult) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(fd) as iterator:
            return list(iterator)
    except OSError as err:
        result.unreadable_dirs.append(rel_dir)
        result.problems.append(Problem(rel_dir or ".", f"cannot list folder: {why(err)}"))
    return []


def _descend(name: str, base: str, subfolders: list[str], result: WalkResult) -> None:
    if name.isascii() or utf8(name):
        subfolders.append(name)
    else:
        result.problems.append(
            Problem(printable(base + name), "folder name is not valid UTF-8: rename it")
        )


def _report_linked_folder(entry: os.DirEntry[str], base: str, result: WalkResult) -> None:
    try:
        if entry.is_dir():  # follows the link
            result.problems.append(Problem(printable(base + entry.name), LINKED_FOLDER))
    except OSError:
        pass  # a broken link with no document extension: not ours to report


def _visit(entry: os.DirEntry[str], directory: str, base: str, result: WalkResult) -> None:
    """Handle what the fast path did not: non-ASCII names, symlinks, specials, errors."""
    name = entry.name
    if not utf8(name):
        result.problems.append(
            Problem(printable(base + name), "file name is not valid UTF-8: rename it")
        )
        return
    add_file(result, base + name, join(directory, name), result.real_root, entry=entry)
