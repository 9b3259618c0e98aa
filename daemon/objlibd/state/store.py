"""The state database: one SQLite file under state.dir, the single source of local truth.

`StateStore` is what the engine, the daemon and the CLI open: the files table (what was
synced, and how), the walk cache and the checkpointed remote operations, on top of the
connection (`database.py`) and the jobs and decisions (`joblog.py`). Every write is its own
short transaction, so a crash loses at most the file in flight, never the run.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from objlibd.models import FileRecord, FileStatus, Listing, StateIndex
from objlibd.state import dbtime, migrations
from objlibd.state.failurelog import FailureLog
from objlibd.state.joblog import JobLog

if TYPE_CHECKING:  # status reads the DB without loading the store package
    from objlibd.remote.base import RemoteDoc

_RECORD_COLUMNS = (
    "path, status, content_hash, size, mtime_ns, remote_id, remote_file_id, upload_hash, "
    "enrichment_version, orphaned_remote_id, missing_since, attempts, last_error, failures, "
    "failed_hash, quarantined_at, transient_failures, retry_after"
)
# A moved file's old row: gone for good (no 7-day missing), and its document recorded as an
# orphan before anyone deletes it, so a crash between this and the delete loses nothing.
_RETIRE = (
    "UPDATE files SET status = 'deleted', orphaned_remote_id = remote_id, remote_id = NULL, "
    "remote_file_id = NULL, missing_since = NULL WHERE path = ? AND orphaned_remote_id IS NULL"
)
_CHUNK = 512  # SQLite's default limit on bound variables is far above this
# A quarantined file is settled too: it is looked at again only when its stat changes.
_QUARANTINED = "(status = 'failed' AND quarantined_at IS NOT NULL)"
_SETTLED = f"(status IN ('uploaded', 'skipped') OR {_QUARANTINED})"
# Not 'deleted': a pruned file's row only says its document is gone, and to the diff a
# deleted row and no row are the same (new if on disk). Left out, the tombstones of every file
# ever pruned stay on disk instead of in each reconcile's memory.
_UNSETTLED = (
    "(status IN ("
    + ", ".join(
        f"'{s}'" for s in migrations.STATUSES if s not in ("uploaded", "skipped", "deleted")
    )
    + f") AND NOT {_QUARANTINED})"
)


def _in_list(values: list[str]) -> tuple[str, list[str | None]]:
    """Return the placeholders and parameters of `IN (...)` for `values`, padded to a power of two.

    The padding is NULL, which matches nothing. Each distinct SQL text is a prepared statement
    that the connection caches (Python keeps 128); one per batch size would slowly fill that
    cache with ~20 KB statements. Padded, a query has at most 10 shapes.
    """
    size = 1 << max(len(values) - 1, 0).bit_length()
    return ",".join("?" * size), [*values, *[None] * (size - len(values))]


class CachedWalk(NamedTuple):
    """The last quiet walk, and the unsettled files of the same files table."""

    folders: dict[str, Listing]
    unsettled: dict[str, str]


@dataclass(frozen=True, slots=True)
class PendingOperation:
    """A remote import a previous process started and checkpointed."""

    operation: str
    path: str
    remote_file_id: str | None
    content_hash: str | None


class StateStore(JobLog, FailureLog):
    """Typed access to the state database: files, the walk cache, remote operations."""

    # -- files: reads ------------------------------------------------------------------------

    def all_records(self) -> dict[str, FileRecord]:
        """Return every tracked file by path, all columns (for inspection; O(library))."""
        rows = self._query(f"SELECT {_RECORD_COLUMNS} FROM files")
        return {row[0]: _record(row) for row in rows}

    def index(self, paths: Iterable[str] | None = None) -> StateIndex:
        """Return the diff's view of every file, or of just `paths` (cost O(paths))."""
        if paths is None:
            return self._index_where("", ())
        index = StateIndex()
        wanted = list(dict.fromkeys(paths))
        for start in range(0, len(wanted), _CHUNK):
            marks, params = _in_list(wanted[start : start + _CHUNK])
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
        with self._read() as conn:
            # Rows come back as (path, size, mtime_ns) tuples: the DiskEntry shape.
            settled = conn.execute(
                f"SELECT path, size, mtime_ns FROM files WHERE {_SETTLED} {where}",
                tuple(params),
            ).fetchall()
            unsettled = conn.execute(
                f"SELECT path, status FROM files WHERE {_UNSETTLED} {where}",
                tuple(params),
            ).fetchall()
            generation = None if condition else self._generation(conn)
        return StateIndex(
            dict(zip(map(itemgetter(0), settled), settled, strict=True)),
            dict(unsettled),
            generation,
        )

    # -- the walk cache ------------------------------------------------------------------------

    def cached_walk(self) -> CachedWalk | None:
        """Return the walk saved with `save_walk` and the unsettled files, read together.

        None when any file row changed since the save (or there is none): only then do the
        two describe the same files table.
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT c.listing FROM walk_cache c "
                "JOIN files_generation g ON c.generation = g.value"
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(f"SELECT path, status FROM files WHERE {_UNSETTLED}")
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
        with self.transaction() as conn:
            if self._generation(conn) != generation:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO walk_cache(id, generation, listing) VALUES (1, ?, ?)",
                (generation, blob),
            )
        return True

    def forget_walk(self) -> None:
        """Drop the cached walk: the next reconcile reads the per-file index."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM walk_cache")

    @staticmethod
    def _generation(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM files_generation").fetchone()[0])

    def records(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        """Return the records for `paths` (cost O(len(paths)))."""
        wanted = list(dict.fromkeys(paths))
        found: dict[str, FileRecord] = {}
        for start in range(0, len(wanted), _CHUNK):
            marks, params = _in_list(wanted[start : start + _CHUNK])
            sql = f"SELECT {_RECORD_COLUMNS} FROM files WHERE path IN ({marks})"
            found.update((row[0], _record(row)) for row in self._query(sql, params))
        return found

    def record(self, path: str) -> FileRecord | None:
        """Return one record."""
        return self.records([path]).get(path)

    def with_status(self, *statuses: FileStatus) -> list[FileRecord]:
        """Return the records in any of `statuses`."""
        marks = ",".join("?" * len(statuses))
        rows = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM files WHERE status IN ({marks}) ORDER BY path",
            [s.value for s in statuses],
        )
        return [_record(row) for row in rows]

    def with_orphans(self) -> list[FileRecord]:
        """Return records that still point at an old remote document to delete."""
        rows = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM files WHERE orphaned_remote_id IS NOT NULL"
        )
        return [_record(row) for row in rows]

    def missing_before(self, cutoff_iso: str) -> list[FileRecord]:
        """Return missing files whose missing_since is older than `cutoff_iso`."""
        rows = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM files WHERE status = 'missing' "
            "AND missing_since IS NOT NULL AND missing_since < ? ORDER BY path",
            (cutoff_iso,),
        )
        return [_record(row) for row in rows]

    def with_contents(self, hashes: Iterable[str]) -> list[FileRecord]:
        """Return the rows (not deleted) holding any of these contents (indexed lookup)."""
        wanted = sorted(set(hashes))
        found: list[FileRecord] = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT {_RECORD_COLUMNS} FROM files "
                f"WHERE content_hash IN ({marks}) AND status != 'deleted'"
            )
            found.extend(_record(row) for row in self._query(sql, chunk))
        return found

    def referenced_remote_ids(self) -> set[str]:
        """Return every remote id the DB still points at (current or orphaned)."""
        rows = self._query(
            "SELECT remote_id FROM files WHERE remote_id IS NOT NULL "
            "UNION SELECT orphaned_remote_id FROM files WHERE orphaned_remote_id IS NOT NULL"
        )
        return {str(row[0]) for row in rows}

    def counts_by_status(self) -> dict[str, int]:
        """Return the number of files per status (every status present, zeros included)."""
        counts = dict.fromkeys(migrations.STATUSES, 0)
        for status, count in self._query("SELECT status, COUNT(*) FROM files GROUP BY status"):
            counts[str(status)] = int(count)
        return counts

    def count_tracked(self) -> int:
        """Return how many files the library has (not deleted, not skipped)."""
        rows = self._query("SELECT COUNT(*) FROM files WHERE status NOT IN ('deleted', 'skipped')")
        return int(rows[0][0])

    def count_present(self) -> int:
        """Return how many files are believed present (what the mass-missing limits measure).

        Not the ones already missing, deleted or skipped: a library that lost most of its
        files long ago must not make a new mass disappearance look small.
        """
        rows = self._query(
            "SELECT COUNT(*) FROM files WHERE status NOT IN ('missing', 'deleted', 'skipped')"
        )
        return int(rows[0][0])

    def orphan_count(self) -> int:
        """Return how many old remote documents wait for cleanup."""
        rows = self._query("SELECT COUNT(*) FROM files WHERE orphaned_remote_id IS NOT NULL")
        return int(rows[0][0])

    def duplicates(self) -> list[tuple[str, list[str]]]:
        """Return (content hash, paths) for content present under more than one path."""
        rows = self._query(
            "SELECT content_hash, path FROM files WHERE content_hash IN ("
            "  SELECT content_hash FROM files WHERE content_hash IS NOT NULL "
            "  AND status NOT IN ('missing', 'deleted') "
            "  GROUP BY content_hash HAVING COUNT(*) > 1) "
            "AND status NOT IN ('missing', 'deleted') ORDER BY content_hash, path"
        )
        groups: dict[str, list[str]] = {}
        for digest, path in rows:
            groups.setdefault(str(digest), []).append(str(path))
        return list(groups.items())

    def recent_errors(self, limit: int = 5) -> list[tuple[str, str, str]]:
        """Return (path, status, last_error) of the most recently failed files."""
        rows = self._query(
            "SELECT path, status, last_error FROM files WHERE status IN ('failed', 'error') "
            "AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [(str(p), str(s), str(e)) for p, s, e in rows]

    # -- files: writes (each one transaction) -------------------------------------------------

    def begin_upload(self, path: str, content_hash: str, size: int, mtime_ns: int) -> None:
        """Record the intent to upload `path` with this content (before any remote call)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO files(path, status, content_hash, size, mtime_ns, attempts) "
                "VALUES (?, 'uploading', ?, ?, ?, 1) ON CONFLICT(path) DO UPDATE SET "
                "status = 'uploading', content_hash = excluded.content_hash, "
                "size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "attempts = files.attempts + 1, missing_since = NULL",
                (path, content_hash, size, mtime_ns),
            )

    def record_uploaded(
        self,
        path: str,
        *,
        remote_id: str,
        remote_file_id: str | None,
        upload_hash: str,
        enrichment_version: str,
        replaced_remote_id: str | None,
        moved_from: str | None = None,
    ) -> None:
        """Record a finished upload; a replaced document becomes an orphan to delete.

        `moved_from`: the upload is a move of that path, retired in the same transaction.
        """
        with self.transaction() as conn:
            if moved_from is not None:
                conn.execute(_RETIRE, (moved_from,))
            conn.execute(
                "UPDATE files SET status = 'uploaded', remote_id = ?, remote_file_id = ?, "
                "upload_hash = ?, enrichment_version = ?, last_error = NULL, attempts = 0, "
                "failures = 0, failed_hash = NULL, quarantined_at = NULL, "
                "transient_failures = 0, retry_after = NULL, "
                "orphaned_remote_id = COALESCE(?, orphaned_remote_id), missing_since = NULL "
                "WHERE path = ?",
                (remote_id, remote_file_id, upload_hash, enrichment_version,
                 _if_different(replaced_remote_id, remote_id), path),
            )  # fmt: skip
            conn.execute(
                "UPDATE remote_operations SET state = 'succeeded', "
                f"finished_at = {dbtime.NOW} WHERE state = 'polling' AND file_id = "
                "(SELECT id FROM files WHERE path = ?)",
                (path,),
            )

    def adopt_documents(self, docs: Iterable[RemoteDoc]) -> None:
        """Record store documents as uploaded files of unknown size (a rebuilt DB's start).

        The first diff then hashes each file on disk: same content is kept, other content
        replaced, and an absent file is missing (hold rules apply).
        """
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO files(path, status, content_hash, upload_hash, "
                "remote_id, remote_file_id) VALUES (?, 'uploaded', ?, ?, ?, ?)",
                [(d.path, d.sha256, d.sha256, d.doc_id, d.file_id) for d in docs],
            )

    def record_failure(self, path: str, status: FileStatus, error: str) -> None:
        """Record that `path` failed (upload refused, unreadable...), keeping its remote ids."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO files(path, status, last_error) VALUES (?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET status = excluded.status, "
                "last_error = excluded.last_error",
                (path, status.value, error[:2000]),
            )
            conn.execute(
                "UPDATE remote_operations SET state = 'failed', "
                f"finished_at = {dbtime.NOW} WHERE state = 'polling' AND file_id = "
                "(SELECT id FROM files WHERE path = ?)",
                (path,),
            )

    def record_skipped(self, path: str, reason: str, size: int, mtime_ns: int) -> None:
        """Record a file that will not be uploaded (too big, unsupported) and why."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO files(path, status, size, mtime_ns, last_error) "
                "VALUES (?, 'skipped', ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                "status = 'skipped', size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "last_error = excluded.last_error, missing_since = NULL",
                (path, size, mtime_ns, reason),
            )

    def record_stat(self, path: str, size: int, mtime_ns: int) -> None:
        """Refresh size/mtime of a file whose content turned out unchanged."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def restore_present(self, path: str, status: FileStatus) -> None:
        """Bring a missing file back (it reappeared unchanged)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = ?, missing_since = NULL WHERE path = ?",
                (status.value, path),
            )

    def mark_missing(self, paths: Iterable[str], now_iso: str) -> int:
        """Mark `paths` missing since `now_iso` (already-missing rows keep their date)."""
        count = 0
        with self.transaction() as conn:
            for path in paths:
                cursor = conn.execute(
                    "UPDATE files SET status = 'missing', missing_since = ? "
                    "WHERE path = ? AND status NOT IN ('missing', 'deleted')",
                    (now_iso, path),
                )
                count += cursor.rowcount
        return count

    def forget(self, paths: Iterable[str]) -> None:
        """Drop rows that never reached the store (nothing remote to keep track of)."""
        with self.transaction() as conn:
            conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def mark_deleted(self, path: str) -> None:
        """Record that a missing file's document was deleted from the store (pruned)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = 'deleted', remote_id = NULL, remote_file_id = NULL "
                "WHERE path = ?",
                (path,),
            )

    def clear_orphan(self, path: str, remote_id: str) -> None:
        """Forget an orphaned document once it is deleted."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET orphaned_remote_id = NULL "
                "WHERE path = ? AND orphaned_remote_id = ?",
                (path, remote_id),
            )

    def record_orphan(self, path: str, remote_id: str) -> None:
        """Retire a file's document: keep it as an orphan to delete, the file has none now."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET orphaned_remote_id = ?, remote_id = NULL WHERE path = ?",
                (remote_id, path),
            )

    def clear_remote(self, path: str) -> None:
        """Forget a remote id that turned out not to exist (it will be uploaded again)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET remote_id = NULL, remote_file_id = NULL, status = 'pending' "
                "WHERE path = ?",
                (path,),
            )

    # -- remote operations (resumable imports) -----------------------------------------------

    def save_operation(
        self, path: str, operation: str, remote_file_id: str, content_hash: str
    ) -> None:
        """Checkpoint a started remote import so a restart polls it instead of importing again."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO remote_operations"
                "(operation, file_id, remote_file_id, content_hash) "
                "SELECT ?, id, ?, ? FROM files WHERE path = ?",
                (operation, remote_file_id, content_hash, path),
            )

    def pending_operations(self) -> list[PendingOperation]:
        """Return imports still being polled when the last process stopped."""
        rows = self._query(
            "SELECT o.operation, f.path, o.remote_file_id, o.content_hash "
            "FROM remote_operations o JOIN files f ON f.id = o.file_id "
            "WHERE o.state = 'polling' ORDER BY o.created_at"
        )
        return [PendingOperation(str(o), str(p), fid, h) for o, p, fid, h in rows]

    def finish_operation(self, operation: str, *, succeeded: bool) -> None:
        """Close a checkpointed operation."""
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE remote_operations SET state = ?, finished_at = {dbtime.NOW} "
                "WHERE operation = ?",
                ("succeeded" if succeeded else "failed", operation),
            )


def _record(row: sqlite3.Row | tuple[Any, ...]) -> FileRecord:
    return FileRecord(
        path=row[0], status=FileStatus(row[1]), content_hash=row[2], size=row[3],
        mtime_ns=row[4], remote_id=row[5], remote_file_id=row[6], upload_hash=row[7],
        enrichment_version=row[8], orphaned_remote_id=row[9], missing_since=row[10],
        attempts=row[11], last_error=row[12], failures=row[13], failed_hash=row[14],
        quarantined_at=row[15], transient_failures=row[16], retry_after=row[17],
    )  # fmt: skip


def _if_different(old: str | None, new: str) -> str | None:
    return old if old and old != new else None
