"""The remote_operations table: checkpointed remote imports, so a restart resumes them.

An import is saved (`save_operation`) before it is polled, closed when it ends, and one
still `polling` when a process stopped is polled again by the next (`pending_operations`)
instead of importing twice. The files table's writes that end an upload close its
operation in their own transaction (`close_operations`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from objlibd.state import dbtime
from objlibd.state.part import Part


@dataclass(frozen=True, slots=True)
class PendingOperation:
    """A remote import a previous process started and checkpointed."""

    operation: str
    path: str
    remote_file_id: str | None
    content_hash: str | None


class Operations(Part):
    """Reads and writes of the remote_operations table."""

    def save_operation(
        self, path: str, operation: str, remote_file_id: str, content_hash: str
    ) -> None:
        """Checkpoint a started remote import so a restart polls it instead of importing again."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO remote_operations"
                "(operation, file_id, remote_file_id, content_hash) "
                "SELECT ?, id, ?, ? FROM files WHERE path = ?",
                (operation, remote_file_id, content_hash, path),
            )

    def pending_operations(self) -> list[PendingOperation]:
        """Return imports still being polled when the last process stopped."""
        rows = self._db.query(
            "SELECT o.operation, f.path, o.remote_file_id, o.content_hash "
            "FROM remote_operations o JOIN files f ON f.id = o.file_id "
            "WHERE o.state = 'polling' ORDER BY o.created_at"
        )
        return [PendingOperation(str(o), str(p), fid, h) for o, p, fid, h in rows]

    def finish_operation(self, operation: str, *, succeeded: bool) -> None:
        """Close a checkpointed operation."""
        with self._db.transaction() as conn:
            conn.execute(
                f"UPDATE remote_operations SET state = ?, finished_at = {dbtime.NOW} "
                "WHERE operation = ?",
                ("succeeded" if succeeded else "failed", operation),
            )


def close_operations(conn: sqlite3.Connection, path: str, *, succeeded: bool) -> None:
    """Close the operations of `path` still polling, inside the caller's transaction."""
    conn.execute(
        "UPDATE remote_operations SET state = ?, "
        f"finished_at = {dbtime.NOW} WHERE state = 'polling' AND file_id = "
        "(SELECT id FROM files WHERE path = ?)",
        ("succeeded" if succeeded else "failed", path),
    )
