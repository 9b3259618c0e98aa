"""Failure memory, the stored part: the files table's failure columns (schema v5).

`failures.py` decides; this records what it decided, each write one transaction, and answers
the questions `status`, `objlibd failures` and `objlibd retry` ask.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from objlibd.state.operations import close_operations
from objlibd.state.part import Part, in_lists


@dataclass(frozen=True, slots=True)
class FailureRow:
    """A file that failed: quarantined, or backing off until `retry_after`."""

    path: str
    status: str
    error: str | None
    failures: int
    quarantined_at: str | None
    transient_failures: int
    retry_after: str | None


class FailureLog(Part):
    """Reads and writes of the files table's failure memory."""

    def record_permanent_failure(
        self, path: str, content_hash: str, error: str, *, failures: int, quarantined_at: str | None
    ) -> None:
        """Record a refusal of `content_hash`: its count, and the quarantine if it is reached."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = 'failed', last_error = ?, failures = ?, "
                "failed_hash = ?, quarantined_at = ?, transient_failures = 0, retry_after = NULL "
                "WHERE path = ?",
                (error[:2000], failures, content_hash, quarantined_at, path),
            )
            close_operations(conn, path, succeeded=False)

    def record_transient_failure(
        self, path: str, error: str, *, in_a_row: int, retry_after: str, settled: bool
    ) -> None:
        """Record a transient failure and the backoff; `settled` False keeps the doubt.

        A file whose import may have landed stays `uploading` (the next run looks it up
        before anything else); one that surely did not becomes `failed`.
        """
        status = "failed" if settled else "uploading"
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET status = ?, last_error = ?, transient_failures = ?, "
                "retry_after = ? WHERE path = ?",
                (status, error[:2000], in_a_row, retry_after, path),
            )
            if settled:
                close_operations(conn, path, succeeded=False)

    def release(self, path: str) -> None:
        """Lift a quarantine because the content changed (the new content starts at zero)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE files SET quarantined_at = NULL, failures = 0, failed_hash = NULL "
                "WHERE path = ?",
                (path,),
            )

    def retry(self, paths: Iterable[str] | None) -> list[str]:
        """Let quarantined or backing-off files (all, or `paths`) be tried at the next run.

        The count of failures stays: one more refusal quarantines the file again at once.
        Returns the paths released.
        """
        held = "(quarantined_at IS NOT NULL OR retry_after IS NOT NULL)"
        wanted = None if paths is None else list(dict.fromkeys(paths))
        released: list[str] = []
        with self._db.transaction() as conn:
            lists: Iterable[tuple[str, list[str | None]]]
            lists = [("", [])] if wanted is None else in_lists(wanted)
            for marks, params in lists:
                where = f"{held} AND path IN ({marks})" if marks else held
                rows = conn.execute(f"SELECT path FROM files WHERE {where}", params).fetchall()
                released.extend(str(row[0]) for row in rows)
                conn.execute(
                    "UPDATE files SET quarantined_at = NULL, retry_after = NULL, "
                    f"transient_failures = 0 WHERE {where}",
                    params,
                )
        return sorted(released)

    def failure_rows(self, *, limit: int | None = None) -> list[FailureRow]:
        """Return quarantined files, then files backing off (most recent first in each)."""
        sql = (
            "SELECT path, status, last_error, failures, quarantined_at, transient_failures, "
            "retry_after FROM files WHERE quarantined_at IS NOT NULL OR retry_after IS NOT NULL "
            "ORDER BY quarantined_at IS NULL, COALESCE(quarantined_at, retry_after) DESC, path"
        )
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        rows = self._db.query(sql, params)
        return [
            FailureRow(str(r[0]), str(r[1]), r[2], int(r[3]), r[4], int(r[5]), r[6]) for r in rows
        ]

    def count_quarantined(self) -> int:
        """Return how many files are quarantined."""
        rows = self._db.query("SELECT COUNT(*) FROM files WHERE quarantined_at IS NOT NULL")
        return int(rows[0][0])
