"""Moves and renames: which disappeared files reappeared under a new path (pure, no I/O).

A path that disappeared plus a path that arrived with the same size and then the same
SHA-256 is a **move**: the engine uploads the new path (its identity metadata differs, and a
document cannot be updated in place), then deletes the old document at once. The old path is
neither marked missing nor counted by the mass-missing limits, and no duplicate waits 7 days
for the prune. A copy (both paths present) never gets here: only a disappeared path can be
the source of a move.

`pair` decides. Only arrivals whose size matches a disappeared file are hashed (through
`sha_of`, which the engine answers from the hashes it computed for the upload anyway), so an
arrival of a new size costs nothing. Among equal contents, a source that still has its
document pairs first (that document is the duplicate a move saves; a source that never
reached the store, say an earlier move interrupted before its import, has nothing to
delete), then the same file name (a folder rename keeps the names), then path order: the
result is deterministic.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from objlibd.models import DiskEntry, FileRecord, FileStatus


@dataclass(frozen=True, slots=True)
class Gone:
    """A file believed present that is no longer at its path.

    `sha256` is the content its document holds (the record's upload hash), or for a file
    that never reached the store, the content last seen (`kept` False).
    """

    path: str
    size: int
    sha256: str
    kept: bool = True  # its document is in the store


@dataclass(frozen=True, slots=True)
class Move:
    """`old` disappeared and its content arrived at `new`."""

    old: str
    new: str


def pair(
    gone: Iterable[Gone],
    arrived: Iterable[DiskEntry],
    sha_of: Callable[[DiskEntry], str | None],
) -> list[Move]:
    """Pair disappeared files with arrivals of the same size and SHA-256 (one to one).

    `sha_of` is asked only for arrivals whose size matches a disappeared file; None means
    the arrival could not be hashed (it is then no move).
    """
    by_size: dict[int, list[Gone]] = defaultdict(list)
    for item in gone:
        by_size[item.size].append(item)
    if not by_size:
        return []
    sources: dict[tuple[int, str], list[Gone]] = defaultdict(list)
    for items in by_size.values():
        for item in items:
            sources[(item.size, item.sha256)].append(item)
    targets: dict[tuple[int, str], list[str]] = defaultdict(list)
    for entry in sorted(arrived):
        if entry.size not in by_size:
            continue  # no disappeared file has this size: never hashed for a move
        digest = sha_of(entry)
        if digest is not None and (entry.size, digest) in sources:
            targets[(entry.size, digest)].append(entry.path)
    moves: list[Move] = []
    for key, arrivals in targets.items():
        olds, news = sources[key], arrivals
        for kept in (True, False):  # sources with a document first
            tier = sorted({item.path for item in olds if item.kept is kept})
            paired, news = _match(tier, news)
            moves.extend(paired)
    return sorted(moves, key=lambda move: move.new)


def _match(olds: list[str], news: list[str]) -> tuple[list[Move], list[str]]:
    """Pair equal contents: the same file name first, then in path order; return the rest."""
    left = list(olds)
    unpaired: list[str] = []
    moves: list[Move] = []
    for new in news:
        name = posixpath.basename(new)
        same = next((old for old in left if posixpath.basename(old) == name), None)
        if same is None:
            unpaired.append(new)
            continue
        left.remove(same)
        moves.append(Move(same, new))
    moves.extend(Move(old, new) for old, new in zip(left, unpaired, strict=False))
    return moves, unpaired[len(left) :]


def source_hash(record: FileRecord) -> str | None:
    """Return the content a disappeared file can be a move of, or None if it cannot be one.

    A file with a document moves its document's content (`upload_hash`); one that never
    reached the store, the content last seen. A row already deleted, or still holding an
    orphan to delete (one orphan per row), is no source.
    """
    if record.status is FileStatus.DELETED or record.orphaned_remote_id is not None:
        return None
    if record.size is None:
        return None
    return record.upload_hash if record.remote_id else record.content_hash
