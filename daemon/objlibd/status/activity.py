"""`objlibd activity`: what objlibd did, newest first, from the jobs and decisions tables.

Every sync, daemon batch and scheduled job leaves a row in `jobs` (kind, trigger, status,
counts, times); every decision a person made (confirming a held disappearance, retrying
quarantined files, adopting or re-marking a drive) leaves one in `decisions`. This module turns
both into one timeline of plain dicts (the `--json` form) and renders it for people.
Reading only: nothing here writes the state DB.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from objlibd.state.joblog import JobRow
from objlibd.state.store import StateStore

# What each job kind is, in the words people use.
KINDS = {
    "batch": "batch", "sync": "sync", "prune": "prune", "orphan_cleanup": "orphan cleanup",
    "confirm_missing": "confirm",
}  # fmt: skip
DECISIONS = {
    "confirm_missing": "confirmed a held disappearance", "retry": "retried held-back files",
    "marker_adopted": "adopted the drive's library", "marker_written": "re-marked the drive",
}  # fmt: skip


def timeline(state: StateStore, *, limit: int, since: str | None = None) -> list[dict[str, Any]]:
    """Return the newest `limit` jobs and decisions (at or after `since`), newest first."""
    # DB times have millisecond resolution: a job can end in the millisecond the next one
    # begins, so ties on `at` go by when each began (a decision is made inside the job that
    # records it, after the jobs before that one began).
    keyed = [((row.finished_at or row.started_at or row.created_at or "",
               row.started_at or row.created_at or ""), job_entry(row))
             for row in state.jobs.recent(limit, since=since)]  # fmt: skip
    keyed += [((at, at), decision_entry(kind, detail, at))
              for kind, detail, at in state.jobs.decisions(limit, since=since)]  # fmt: skip
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _, item in keyed[:limit]]


def job_entry(row: JobRow) -> dict[str, Any]:
    """Return one job as an activity entry: what, why, how it ended, counts, duration."""
    return {
        "at": row.finished_at or row.started_at or row.created_at,
        "type": "job",
        "kind": row.kind,
        "trigger": row.trigger,
        "status": row.status,
        "counts": {name: value for name, value in row.counts.items() if value},
        "duration_s": duration(row.started_at, row.finished_at),
        "error": row.error,
        "progress": [row.done, row.total] if row.total else None,
    }


def decision_entry(kind: str, detail: dict[str, Any], at: str) -> dict[str, Any]:
    """Return one decision as an activity entry."""
    return {"at": at, "type": "decision", "kind": kind, "detail": detail}


def duration(started: str | None, finished: str | None) -> float | None:
    """Return the seconds between two DB times (None when either is missing)."""
    if not started or not finished:
        return None
    try:
        return round((parse(finished) - parse(started)).total_seconds(), 3)
    except ValueError:
        return None


def parse(text: str) -> dt.datetime:
    """Parse a DB time ('2026-11-23T12:18:18.123Z') as UTC."""
    return dt.datetime.fromisoformat(text)


def db_time(moment: dt.datetime) -> str:
    """Return `moment` in the DB's time format, for comparisons with its columns."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def render(items: list[dict[str, Any]]) -> list[str]:
    """Return one line per entry for people."""
    return [_line(item) for item in items]


def _line(item: dict[str, Any]) -> str:
    when = (item["at"] or "-")[:19].replace("T", " ")
    if item["type"] == "decision":
        what = DECISIONS.get(item["kind"], item["kind"])
        detail = ", ".join(f"{k} {v}" for k, v in sorted(item["detail"].items())
                           if not isinstance(v, list | dict))  # fmt: skip
        return f"{when}  decision  {what}" + (f" ({detail})" if detail else "")
    kind = KINDS.get(item["kind"], item["kind"])
    head = f"{when}  {kind:<14} {item['status']:<9}"
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in item["counts"].items())
    text = f"{head} {counts or 'no changes'}"
    if item["duration_s"] is not None:
        text += f" in {item['duration_s']:g} s"
    if item["trigger"]:
        text += f"  [{item['trigger']}]"
    if item["error"]:
        text += f": {item['error'][:120]}"
    return text
