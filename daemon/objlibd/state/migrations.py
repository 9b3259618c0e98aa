"""The state database schema as an ordered list of migrations (`PRAGMA user_version`).

Each migration runs in one transaction together with the version bump, so a crash leaves
the DB at the old version, never half-migrated. Append new migrations; never edit old ones.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from objlibd.state.dbtime import NOW

STATUSES = (
    "pending", "uploading", "uploaded", "failed", "skipped", "missing", "error", "deleted",
)  # fmt: skip
_STATUS_CHECK = ", ".join(f"'{s}'" for s in STATUSES)

V1_FILES = f"""
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_hash TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_STATUS_CHECK})),
    remote_id TEXT,
    remote_file_id TEXT,
    upload_hash TEXT,
    enrichment_version TEXT,
    orphaned_remote_id TEXT,
    missing_since TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL DEFAULT ({NOW}),
    updated_at TEXT NOT NULL DEFAULT ({NOW})
);
CREATE INDEX idx_files_status ON files(status);
CREATE INDEX idx_files_content_hash ON files(content_hash);
CREATE INDEX idx_files_orphan ON files(orphaned_remote_id) WHERE orphaned_remote_id IS NOT NULL;

CREATE TABLE status_log (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    old_status TEXT,
    new_status TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT ({NOW})
);
CREATE INDEX idx_status_log_file ON status_log(file_id);

CREATE TRIGGER files_touch AFTER UPDATE ON files
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE files SET updated_at = {NOW} WHERE id = NEW.id;
END;

CREATE TRIGGER files_status_insert AFTER INSERT ON files
BEGIN
    INSERT INTO status_log(file_id, old_status, new_status) VALUES (NEW.id, NULL, NEW.status);
END;

CREATE TRIGGER files_status_change AFTER UPDATE OF status ON files
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO status_log(file_id, old_status, new_status)
    VALUES (NEW.id, OLD.status, NEW.status);
END;

CREATE TABLE library_config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT ({NOW})
);
"""

V2_JOBS = f"""
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
    trigger TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    counts TEXT,
    error TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT ({NOW}),
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX idx_jobs_kind ON jobs(kind, id);

CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    detail TEXT,
    decided_at TEXT NOT NULL DEFAULT ({NOW})
);
"""

V3_OPERATIONS = f"""
CREATE TABLE remote_operations (
    operation TEXT PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    remote_file_id TEXT,
    content_hash TEXT,
    state TEXT NOT NULL DEFAULT 'polling'
        CHECK (state IN ('polling', 'succeeded', 'failed')),
    created_at TEXT NOT NULL DEFAULT ({NOW}),
    finished_at TEXT
);
CREATE INDEX idx_remote_operations_file ON remote_operations(file_id, state);
"""

# The walk cache lets a reconcile of a quiet library skip reading the per-file index. Its
# validity is a generation number that triggers bump, in the same transaction, on every
# change to a column the index reads: a cached walk is only ever trusted for the exact
# files table it was checked against.
V4_WALK_CACHE = f"""
CREATE TABLE files_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO files_generation(id, value) VALUES (1, 0);
CREATE TRIGGER files_generation_insert AFTER INSERT ON files
BEGIN
    UPDATE files_generation SET value = value + 1;
END;
CREATE TRIGGER files_generation_delete AFTER DELETE ON files
BEGIN
    UPDATE files_generation SET value = value + 1;
END;
CREATE TRIGGER files_generation_update AFTER UPDATE OF path, size, mtime_ns, status ON files
BEGIN
    UPDATE files_generation SET value = value + 1;
END;
CREATE TABLE walk_cache (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    listing BLOB NOT NULL,
    saved_at TEXT NOT NULL DEFAULT ({NOW})
);
"""

# Failure memory (issue #10): permanent failures counted per content hash (`failures` for
# `failed_hash`), quarantine once they reach the limit, and a per-file backoff after transient
# failures (`transient_failures` in a row, not before `retry_after`). A quarantined file counts
# as settled for the walk cache, so its change is a generation change too.
V5_FAILURE_MEMORY = """
ALTER TABLE files ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN failed_hash TEXT;
ALTER TABLE files ADD COLUMN quarantined_at TEXT;
ALTER TABLE files ADD COLUMN transient_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN retry_after TEXT;
CREATE INDEX idx_files_quarantined ON files(quarantined_at) WHERE quarantined_at IS NOT NULL;
CREATE INDEX idx_files_retry_after ON files(retry_after) WHERE retry_after IS NOT NULL;
CREATE TRIGGER files_generation_quarantine AFTER UPDATE OF quarantined_at ON files
BEGIN
    UPDATE files_generation SET value = value + 1;
END;
"""

MIGRATIONS: tuple[str, ...] = (
    V1_FILES, V2_JOBS, V3_OPERATIONS, V4_WALK_CACHE, V5_FAILURE_MEMORY,
)  # fmt: skip
LATEST = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    """Return the schema version recorded in the database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, db_path: Path | None = None, *, upto: int = LATEST) -> int:
    """Bring `conn` up to version `upto`; back the file up first if it holds data.

    Returns the number of migrations applied (0 when already current).
    """
    current = version(conn)
    if current >= upto:
        return 0
    if current > 0 and db_path is not None:
        backup(conn, db_path.with_name(f"{db_path.name}.bak-v{current}"))
    for number in range(current + 1, upto + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return upto - current


def backup(conn: sqlite3.Connection, target: Path) -> None:
    """Copy the live database to `target` with SQLite's backup API (consistent while open)."""
    with sqlite3.connect(target) as copy:
        conn.backup(copy)
    copy.close()


def _statements(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
