"""The state database: one SQLite file under state.dir, the single source of local truth.

Only the engine's thread writes (one writer); `status`, `doctor` and the CLI open it
read-only, which WAL allows while the daemon runs. Every write is its own short
transaction, so a crash loses at most the file in flight, never the run.
"""

from __future__ import annotations

import json
import marshal
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from objlibd import migrations
from objlibd.errors import StateError
from objlibd.models import FileRecord, FileStatus, Listing, StateIndex

_RECORD_COLUMNS = (
    "path, status, content_hash, size, mtime_ns, remote_id, remote_file_id, upload_hash, "
    "enrichment_version, orphaned_remote_id, missing_since, attempts, last_error"
)
_CHUNK = 500  # SQLite's default limit on bound variables is far above this
_SETTLED = "('uploaded', 'skipped')"
_UNSETTLED = (
    "(" + ", ".join(f"'{s}'" for s in migrations.STATUSES if s not in ("uploaded", "skipped")) + ")"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    """A row of the jobs table."""

    id: int
    kind: str
    status: str
    trigger: str | None
    done: int
    total: int
    counts: dict[str, Any]
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True, slots=True)
class PendingOperation:
    """A remote import a previous process started and checkpointed."""

    operation: str
    path: str
    remote_file_id: str | None
    content_hash: str | None


class StateStore:
    """Typed access to the state database."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> StateStore:
        """Open (and for writers create and migrate) the database at `path`.

        Raises:
            StateError: corrupt, locked, unreadable, or written by a newer objlibd.
        """
        if readonly and not path.exists():
            raise StateError(
                f"state database {path} does not exist yet",
                hint="run `objlibd sync` (or start the daemon) once to create it",
            )
        try:
            conn = _connect(path, readonly=readonly)
            found = migrations.version(conn)
            if found > migrations.LATEST:
                raise StateError(
                    f"state database {path} has schema version {found}, newer than this "
                    f"objlibd understands ({migrations.LATEST})",
                    hint="upgrade objlibd, or point [state] dir at a fresh directory",
                )
            if not readonly:
                migrations.migrate(conn, path)
        except sqlite3.DatabaseError as err:
            raise _state_error(path, err) from None
        return cls(conn, path)

    @classmethod
    def memory(cls) -> StateStore:
        """Return a migrated in-memory store (for pure-ish tests)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        migrations.migrate(conn)
        return cls(conn, None)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def integrity_check(self) -> str:
        """Return 'ok' or SQLite's description of what is broken."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    @property
    def schema_version(self) -> int:
        """Return the schema version."""
        with self._lock:
            return migrations.version(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one IMMEDIATE transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Run a block of reads against one consistent snapshot of the database."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, tuple(params)).fetchall())

    # -- library_config ----------------------------------------------------------------------

    def get_config(self, key: str) -> str | None:
        """Return a library_config value."""
        rows = self._query("SELECT value FROM library_config WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_config(self, key: str, value: str) -> None:
        """Set a library_config value."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO library_config(key, value) VALUES (?, ?) ON CONFLICT(key) "
                "DO UPDATE SET value = excluded.value, "
                f"updated_at = {migrations.NOW}",
                (key, value),
            )

    def delete_config(self, key: str) -> None:
        """Remove a library_config key."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM library_config WHERE key = ?", (key,))

    def get_json(self, key: str) -> Any:
        """Return a JSON library_config value (None when unset)."""
        raw = self.get_config(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any) -> None:
        """Store a JSON library_config value."""
        self.set_config(key, json.dumps(value, sort_keys=True))

    # -- files: reads ------------------------------------------------------------------------

    def all_records(self) -> dict[str, FileRecord]:
        """Return every tracked file by path (the reconcile's view of the DB)."""
        rows = self._query(f"SELECT {_RECORD_COLUMNS} FROM files")
        return {row[0]: _record(row) for row in rows}

    def index(self, paths: Iterable[str] | None = None) -> StateIndex:
        """Return the diff's view of every file, or of just `paths` (cost O(paths))."""
        if paths is None:
            return self._index_where("", ())
        index = StateIndex()
        wanted = list(dict.fromkeys(paths))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            index.update(self._index_where(f"path IN ({marks})", chunk))
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
                f"SELECT path, size, mtime_ns FROM files WHERE status IN {_SETTLED} {where}",
                tuple(params),
            ).fetchall()
            unsettled = conn.execute(
                f"SELECT path, status FROM files WHERE status IN {_UNSETTLED} {where}",
                tuple(params),
            ).fetchall()
            generation = None if condition else self._generation(conn)
        return StateIndex(
            dict(zip(map(itemgetter(0), settled), settled, strict=True)),
            dict(unsettled),
            generation,
        )

    def unsettled(self) -> dict[str, str]:
        """Return the status of every file that is neither uploaded nor skipped."""
        sql = f"SELECT path, status FROM files WHERE status IN {_UNSETTLED}"
        return {str(path): str(status) for path, status in self._query(sql)}

    # -- the walk cache ------------------------------------------------------------------------

    def cached_walk(self) -> dict[str, Listing] | None:
        """Return the walk saved with `save_walk`, if no file row has changed since; else None."""
        rows = self._query(
            "SELECT c.listing FROM walk_cache c JOIN files_generation g ON c.generation = g.value"
        )
        if not rows:
            return None
        try:
            folders = marshal.loads(rows[0][0])  # noqa: S302 - our own blob, in our own DB
        except (EOFError, ValueError, TypeError):
            return None  # written by another Python: the next quiet reconcile rewrites it
        return folders if isinstance(folders, dict) else None

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
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_RECORD_COLUMNS} FROM files WHERE path IN ({marks})"
            found.update((row[0], _record(row)) for row in self._query(sql, chunk))
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
    ) -> None:
        """Record a finished upload; a replaced document becomes an orphan to delete."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = 'uploaded', remote_id = ?, remote_file_id = ?, "
                "upload_hash = ?, enrichment_version = ?, last_error = NULL, attempts = 0, "
                "orphaned_remote_id = COALESCE(?, orphaned_remote_id), missing_since = NULL "
                "WHERE path = ?",
                (remote_id, remote_file_id, upload_hash, enrichment_version,
                 _if_different(replaced_remote_id, remote_id), path),
            )  # fmt: skip
            conn.execute(
                "UPDATE remote_operations SET state = 'succeeded', "
                f"finished_at = {migrations.NOW} WHERE state = 'polling' AND file_id = "
                "(SELECT id FROM files WHERE path = ?)",
                (path,),
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
                f"finished_at = {migrations.NOW} WHERE state = 'polling' AND file_id = "
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
                f"UPDATE remote_operations SET state = ?, finished_at = {migrations.NOW} "
                "WHERE operation = ?",
                ("succeeded" if succeeded else "failed", operation),
            )

    # -- jobs and decisions ------------------------------------------------------------------

    def start_job(self, kind: str, *, trigger: str = "manual", total: int = 0) -> int:
        """Create a running job row and return its id."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO jobs(kind, status, trigger, total, started_at) "
                f"VALUES (?, 'running', ?, ?, {migrations.NOW})",
                (kind, trigger, total),
            )
            return int(cursor.lastrowid or 0)

    def job_progress(self, job_id: int, done: int, total: int) -> None:
        """Record a job's progress."""
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET done = ?, total = ? WHERE id = ?", (done, total, job_id))

    def finish_job(
        self,
        job_id: int,
        status: str,
        counts: dict[str, Any],
        error: str | None = None,
        *,
        progress: tuple[int, int] | None = None,
    ) -> None:
        """Close a job as completed, failed or skipped, with its counts (and final progress)."""
        done, total = progress if progress is not None else (None, None)
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE jobs SET status = ?, counts = ?, error = ?, finished_at = {migrations.NOW},"
                " done = COALESCE(?, done), total = COALESCE(?, total) WHERE id = ?",
                (status, json.dumps(counts, sort_keys=True), error, done, total, job_id),
            )

    def last_job(self, kind: str) -> JobRow | None:
        """Return the most recent job of `kind`."""
        rows = self._query(
            "SELECT id, kind, status, trigger, done, total, counts, error, created_at, "
            "started_at, finished_at FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT 1",
            (kind,),
        )
        return _job(rows[0]) if rows else None

    def jobs(self, limit: int = 50) -> list[JobRow]:
        """Return recent jobs, newest first."""
        rows = self._query(
            "SELECT id, kind, status, trigger, done, total, counts, error, created_at, "
            "started_at, finished_at FROM jobs ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_job(row) for row in rows]

    def record_decision(self, kind: str, detail: dict[str, Any]) -> None:
        """Record an operator decision (e.g. confirming a held mass-missing)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO decisions(kind, detail) VALUES (?, ?)",
                (kind, json.dumps(detail, sort_keys=True)),
            )

    def decisions(self) -> list[tuple[str, dict[str, Any], str]]:
        """Return (kind, detail, decided_at) of every recorded decision, oldest first."""
        rows = self._query("SELECT kind, detail, decided_at FROM decisions ORDER BY id")
        return [(str(k), json.loads(d or "{}"), str(at)) for k, d, at in rows]


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
            check_same_thread=False, timeout=5.0,
        )  # fmt: skip
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _state_error(path: Path, err: sqlite3.DatabaseError) -> StateError:
    text = str(err)
    if "locked" in text or "busy" in text:
        return StateError(
            f"state database {path} is locked by another process",
            hint="is another `objlibd sync` or the daemon running? (`objlibd status`)",
        )
    return StateError(
        f"state database {path} cannot be used: {text}",
        hint="move the file aside (keep it for diagnosis) and run `objlibd sync` again; "
        "documents already in the store are adopted, not uploaded twice",
    )


def _record(row: sqlite3.Row | tuple[Any, ...]) -> FileRecord:
    return FileRecord(
        path=row[0], status=FileStatus(row[1]), content_hash=row[2], size=row[3],
        mtime_ns=row[4], remote_id=row[5], remote_file_id=row[6], upload_hash=row[7],
        enrichment_version=row[8], orphaned_remote_id=row[9], missing_since=row[10],
        attempts=row[11], last_error=row[12],
    )  # fmt: skip


def _job(row: sqlite3.Row | tuple[Any, ...]) -> JobRow:
    return JobRow(
        id=row[0], kind=row[1], status=row[2], trigger=row[3], done=row[4], total=row[5],
        counts=json.loads(row[6] or "{}"), error=row[7], created_at=row[8],
        started_at=row[9], finished_at=row[10],
    )  # fmt: skip


def _if_different(old: str | None, new: str) -> str | None:
    return old if old and old != new else None
