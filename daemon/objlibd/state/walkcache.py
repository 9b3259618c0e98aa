"""What a reconcile reads of the files table: the diff's index, and the walk saved beside it.

`index` is the diff's view of every file (settled ones by signature, unsettled by status);
the walk cache is the last quiet walk, saved with the `files_generation` it matched, so a
reconcile whose walk equals it skips reading the index at all (`cached_walk`).
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from objlibd.models import Listing, StateIndex
from objlibd.state.files import SETTLED, UNSETTLED
from objlibd.state.part import Part, in_lists


class CachedWalk(NamedTuple):
    """The last quiet walk, and the unsettled files of the same files table."""

    folders: dict[str, Listing]
    unsettled: dict[str, str]


class WalkCache(Part):
    """The diff's index of the files table, and the cached walk that stands in for it."""

    def index(self, paths: Iterable[str] | None = None) -> StateIndex:
        """Return the diff's view of every file, or of just `paths` (cost O(paths))."""
        if paths is None:
            return self._index_where("", ())
        index = StateIndex()
        wanted = list(dict.fromkeys(paths))
        for marks, params in in_lists(wanted):
            index.update(self._index_where(f"path IN ({marks})", params))
        return index

    def index_under(self, prefix: str) -> StateIndex:
        """Return the diff's view of the files at or below folder `prefix` ('' = all)."""
        if not prefix:
            return self.index()
        # "/" sorts just before "0": [prefix + "/", prefix + "0") is exactly the subtree, and
        # the range uses the unique index on path (cost O(subtree), not O(library)).
        return self._index_where(
            "(path = ? OR (path >= ? AND path < ?))", (prefix, prefix + "/", prefix + "0")
        )

    def _index_where(self, condition: str, params: Sequence[Any]) -> StateIndex:
        where = f"AND {condition}" if condition else ""
        with self._db.read() as conn:
            # Rows come back as (path, size, mtime_ns) tuples: the DiskEntry shape.
            settled = conn.execute(
                f"SELECT path, size, mtime_ns FROM files WHERE {SETTLED} {where}",
                tuple(params),
            ).fetchall()
            unsettled = conn.execute(
                f"SELECT path, status FROM files WHERE {UNSETTLED} {where}",
                tuple(params),
            ).fetchall()
            generation = None if condition else self._generation(conn)
        return StateIndex(
            dict(zip(map(itemgetter(0), settled), settled, strict=True)),
            dict(unsettled),
            generation,
        )

    def cached_walk(self) -> CachedWalk | None:
        """Return the walk saved with `save_walk` and the unsettled files, read together.

        None when any file row changed since the save (or there is none): only then do the
        two describe the same files table.
        """
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT c.listing FROM walk_cache c "
                "JOIN files_generation g ON c.generation = g.value"
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(f"SELECT path, status FROM files WHERE {UNSETTLED}")
            unsettled = {str(path): str(status) for path, status in rows}
        try:
            folders = marshal.loads(row[0])  # noqa: S302 - our own blob, in our own DB
        except (EOFError, ValueError, TypeError):
            return None  # written by another Python: the next quiet reconcile rewrites it
        return CachedWalk(folders, unsettled) if isinstance(folders, dict) else None

    def save_walk(self, folders: dict[str, Listing], generation: int) -> bool:
        """Save a walk that equals the settled index read at `generation`.

        The caller vouches that, at `generation`, the settled files were exactly `folders`.
        Nothing is saved (False) if any file row changed since: the claim no longer holds.
        """
        blob = marshal.dumps(folders)
        with self._db.transaction() as conn:
            if self._generation(conn) != generation:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO walk_cache(id, generation, listing) VALUES (1, ?, ?)",
                (generation, blob),
            )
        return True

    def forget_walk(self) -> None:
        """Drop the cached walk: the next reconcile reads the per-file index."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM walk_cache")

    @staticmethod
    def _generation(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM files_generation").fetchone()[0])
