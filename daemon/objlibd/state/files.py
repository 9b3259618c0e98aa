"""The files table: one row per library file, what was synced and how.

Reads answer the engine (records, contents, orphans), `status` (counts, duplicates, recent
errors) and `objlibd` commands; writes record each step of a file's life (upload intent,
upload, skip, failure, missing, pruned, orphaned), each one short transaction, so a crash
loses at most the file in flight. The diff's index of this table is `walkcache.py`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from objlibd.models import FileRecord, FileStatus
from objlibd.state import migrations
from objlibd.state.operations import close_operations
from objlibd.state.part import Part, in_lists

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
# A quarantined file is settled too: it is looked at again only when its stat changes.
_QUARANTINED = "(status = 'failed' AND quarantined_at IS NOT NULL)"
SETTLED = f"(status IN ('uploaded', 'skipped') OR {_QUARANTINED})"
# Not 'deleted': a pruned file's row only says its document is gone, and to the diff a
# deleted row and no row are the same (new if on disk). Left out, the tombstones of every file
# ever pruned stay on disk instead of in each reconcile's memory.
UNSETTLED = (
    "(status IN ("
    + ", ".join(
        f"'{s}'" for s in migrations.STATUSES if s not in ("uploaded", "skipped", "deleted")
    )
    + f") AND NOT {_QUARANTINED})"
)


class Files(Part):
    """Typed reads and writes of the files table."""

    def all_records(self) -> dict[str, FileRecord]:
        """Return every tracked file by path, all columns (for inspection; O(library))."""
        rows = self._db.query(f"SELECT {_RECORD_COLUMNS} FROM files")
        return {row[0]: _record(row) for row in rows}

    def records(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        """Return the records for `paths` (cost O(len(paths)))."""
        wanted = list(dict.fromkeys(paths))
        found: dict[str, FileRecord] = {}
        for marks, params in in_lists(wanted):
            sql = f"SELECT {_RECORD_COLUMNS} FROM files WHERE path IN ({marks})"
            found.update((row[0], _record(row)) for row in self._db.query(sql, params))
        return found

    def record(self, path: str) -> FileRecord | None:
        """Return one record."""
        return self.records([path]).get(path)

    def with_status(self, *statuses: FileStatus) -> list[FileRecord]:
        """Return the records in any of `statuses`."""
        marks = ",".join("?" * len(statuses))
        rows = self._db.query(
            f"SELECT {_RECORD_COLUMNS} FROM files WHERE status IN ({marks}) ORDER BY path",
            [s.value for s in statuses],
        )
        return [_record(row) for row in rows]

    def with_orphans(self) -> list[FileRecord]:
        """Return records that still point at an old remote document to delete."""
        rows = self._db.query(
            f"SELECT {_RECORD_COLUMNS} FROM files WHERE orphaned_remote_id IS NOT NULL"
        )
        return [_record(row) for row in rows]

    def missing_before(self, cutoff_iso: str) -> list[FileRecord]:
        """Return missing files whose missing_since is older than `cutoff_iso`."""
        rows = self._db.query(
            f"SELECT {_RECORD_COLUMNS} FROM files WHERE status = 'missing' "
            "AND missing_since IS NOT NULL AND missing_since < ? ORDER BY path",
            (cutoff_iso,),
        )
        return [_record(row) for row in rows]

    def with_contents(self, hashes: Iterable[str]) -> list[FileRecord]:
        """Return the rows (not deleted) holding any of these contents (indexed lookup)."""
        wanted = sorted(set(hashes))
        found: list[FileRecord] = []
        for marks, params in in_lists(wanted):
            sql = (
                f"SELECT {_RECORD_COLUMNS} FROM files "
                f"WHERE content_hash IN ({marks}) AND status != 'deleted'"
            )
            found.extend(_record(row) for row in self._db.query(sql, params))
        return found

    def referenced_remote_ids(self) -> set[str]:
        """Return every remote id the DB still points at (current or orphaned)."""
        rows = self._db.query(
            "SELECT remote_id FROM files WHERE remote_id IS NOT NULL "
            "UNION SELECT orphaned_remote_id FROM files WHERE orphaned_remote_id IS NOT NULL"
        )
        return {str(row[0]) for row in rows}

    def counts_by_status(self) -> dict[str, int]:
        """Return the number of files per status (every status present, zeros included)."""
        counts = dict.fromkeys(migrations.STATUSES, 0)
        for status, count in self._db.query("SELECT status, COUNT(*) FROM files GROUP BY status"):
            counts[str(status)] = int(count)
        return counts

    def count_tracked(self) -> int:
        """Return how many files the library has (not deleted, not skipped)."""
        rows = self._db.query(
            "SELECT COUNT(*) FROM files WHERE status NOT IN ('deleted', 'skipped')"
        )
        return int(rows[0][0])

    def count_present(self) -> int:
        """Return how many files are believed present (what the mass-missing limits measure).

        Not the ones already missing, deleted or skipped: a library that lost most of its
        files long ago must not make a new mass disappearance look small.
        """
        rows = self._db.query(
            "SELECT COUNT(*) FROM files WHERE status NOT IN ('missing', 'deleted', 'skipped')"
        )
        return int(rows[0][0])

    def orphan_count(self) -> int:
        """Return how many old remote documents wait for cleanup."""
        rows = self._db.query("SELECT COUNT(*) FROM files WHERE orphaned_remote_id IS NOT NULL")
        return int(rows[0][0])

    def duplicates(self) -> list[tuple[str, list[str]]]:
        """Return (content hash, paths) for content present under more than one path."""
        rows = self._db.query(
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
        rows = self._db.query(
            "SELECT path, status, last_error FROM files WHERE status IN ('failed', 'error') "
            "AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [(str(p), str(s), str(e)) for p, s, e in rows]

    def begin_upload(self, path: str, content_hash: str, size: int, mtime_ns: int) -> None:
        """Record the intent to upload `path` with this content (before any remote call)."""
        with self._db.transaction() as conn:
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
        with self._db.transaction() as conn:
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
            close_operations(conn, path, succeeded=True)

    def adopt_documents(self, docs: Iterable[RemoteDoc]) -> None:
        """Record store documents as uploaded files of unknown size (a rebuilt DB's start).

        The first diff then hashes each file on disk: same content is kept, other content
        replaced, and an absent file is missing (hold rules apply).
        """
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO files(path, status, content_hash, upload_hash, "
                "remote_id, remote_file_id) VALUES (?, 'uploaded', ?, ?, ?, ?)",
                [(d.path, d.sha256, d.sha256, d.doc_id, d.file_id) for d in docs],
            )

    def record_failure(self, path: str, status: FileStatus, error: str) -> None:
        """Record that `path` failed (upload refused, unreadable...), keeping its remote ids."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO files(path, status, last_error) VALUES (?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET status = excluded.status, "
                "last_error = excluded.last_error",
                (path, status.value, error[:2000]),
            )
            close_operations(conn, path, succeeded=False)

    def record_skipped(self, path: str, reason: str, size: int, mtime_ns: int) -> None:
        """Record a file that will not be uploaded (too big, unsupported) and why."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO files(path, status, size, mtime_ns, last_error) "
                "VALUES (?, 'skipped', ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                "status = 'skipped', size = excluded.size, mtime_ns = excluded.mtime_ns, "
                "last_error = excluded.last_error, missing_since = NULL",
                (path, size, mtime_ns, reason),
            )

    def record_stat(self, path: str, size: int, mtime_ns: int) -> None:
        """Refresh size/mtime of a file whose content turned out unchanged."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
            )

    def restore_present(self, path: str, status: FileStatus) -> None:
        """Bring a missing file back (it reappeared unchanged)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = ?, missing_since = NULL WHERE path = ?",
                (status.value, path),
            )

    def mark_missing(self, paths: Iterable[str], now_iso: str) -> int:
        """Mark `paths` missing since `now_iso` (already-missing rows keep their date)."""
        count = 0
        with self._db.transaction() as conn:
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
        with self._db.transaction() as conn:
            conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def mark_deleted(self, path: str) -> None:
        """Record that a missing file's document was deleted from the store (pruned)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = 'deleted', remote_id = NULL, remote_file_id = NULL "
                "WHERE path = ?",
                (path,),
            )

    def clear_orphan(self, path: str, remote_id: str) -> None:
        """Forget an orphaned document once it is deleted."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET orphaned_remote_id = NULL "
                "WHERE path = ? AND orphaned_remote_id = ?",
                (path, remote_id),
            )

    def record_orphan(self, path: str, remote_id: str) -> None:
        """Retire a file's document: keep it as an orphan to delete, the file has none now."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET orphaned_remote_id = ?, remote_id = NULL WHERE path = ?",
                (remote_id, path),
            )

    def clear_remote(self, path: str) -> None:
        """Forget a remote id that turned out not to exist (it will be uploaded again)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET remote_id = NULL, remote_file_id = NULL, status = 'pending' "
                "WHERE path = ?",
                (path,),
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
