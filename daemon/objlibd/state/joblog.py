"""Jobs and operator decisions: what ran, how it ended, and what a person decided."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from objlibd.state import dbtime
from objlibd.state.part import Part


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


class JobLog(Part):
    """The jobs and decisions tables (seed 004): one row per sync, batch or scheduled job."""

    def start_job(self, kind: str, *, trigger: str = "manual", total: int = 0) -> int:
        """Create a running job row and return its id."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO jobs(kind, status, trigger, total, started_at) "
                f"VALUES (?, 'running', ?, ?, {dbtime.NOW})",
                (kind, trigger, total),
            )
            return int(cursor.lastrowid or 0)

    def job_progress(self, job_id: int, done: int, total: int) -> None:
        """Record a job's progress."""
        with self._db.transaction() as conn:
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
        with self._db.transaction() as conn:
            conn.execute(
                f"UPDATE jobs SET status = ?, counts = ?, error = ?, finished_at = {dbtime.NOW},"
                " done = COALESCE(?, done), total = COALESCE(?, total) WHERE id = ?",
                (status, json.dumps(counts, sort_keys=True), error, done, total, job_id),
            )

    def last_job(self, kind: str) -> JobRow | None:
        """Return the most recent job of `kind`."""
        rows = self._db.query(
            "SELECT id, kind, status, trigger, done, total, counts, error, created_at, "
            "started_at, finished_at FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT 1",
            (kind,),
        )
        return _job(rows[0]) if rows else None

    def recent(self, limit: int = 50, *, since: str | None = None) -> list[JobRow]:
        """Return recent jobs, newest first (only those created at or after `since`)."""
        rows = self._db.query(
            "SELECT id, kind, status, trigger, done, total, counts, error, created_at, "
            "started_at, finished_at FROM jobs WHERE created_at >= ? ORDER BY id DESC LIMIT ?",
            (since or "", limit),
        )
        return [_job(row) for row in rows]

    def last_success(self) -> str | None:
        """Return when the last sync or batch completed (None if none ever did)."""
        rows = self._db.query(
            "SELECT finished_at FROM jobs WHERE status = 'completed' AND kind IN ('sync', 'batch')"
            " ORDER BY id DESC LIMIT 1"
        )
        return str(rows[0][0]) if rows and rows[0][0] else None

    def record_decision(self, kind: str, detail: dict[str, Any]) -> None:
        """Record an operator decision (e.g. confirming a held mass-missing)."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO decisions(kind, detail) VALUES (?, ?)",
                (kind, json.dumps(detail, sort_keys=True)),
            )

    def decisions(
        self, limit: int | None = None, *, since: str | None = None
    ) -> list[tuple[str, dict[str, Any], str]]:
        """Return (kind, detail, decided_at) of recorded decisions, oldest first.

        With `limit`, the newest `limit` of them (still oldest first); with `since`, only
        those decided at or after it.
        """
        rows = self._db.query(
            "SELECT kind, detail, decided_at FROM (SELECT id, kind, detail, decided_at FROM "
            "decisions WHERE decided_at >= ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (since or "", -1 if limit is None else limit),
        )
        return [(str(k), json.loads(d or "{}"), str(at)) for k, d, at in rows]


def _job(row: sqlite3.Row | tuple[Any, ...]) -> JobRow:
    return JobRow(
        id=row[0], kind=row[1], status=row[2], trigger=row[3], done=row[4], total=row[5],
        counts=json.loads(row[6] or "{}"), error=row[7], created_at=row[8],
        started_at=row[9], finished_at=row[10],
    )  # fmt: skip
