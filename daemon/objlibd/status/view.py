"""`objlibd status`: a read-only snapshot, fast, whether or not the daemon runs.

Facts come from three places: the state DB opened read-only (file counts, duplicates,
orphans, jobs, hold, last batch), the daemon's heartbeat file (live facts: volume, watcher,
queue, breaker, store reachability, progress, next runs, RSS), rewritten atomically every few
seconds, and the pidfile. While the daemon runs, its heartbeat also carries the DB facts
(refreshed after each batch or job), so `status` does not even open SQLite; the queries grow
with the library, the heartbeat does not. The daemon counts as running only when the
pidfile's pid is alive *and* the heartbeat is fresh and written by that pid. Nothing here
imports google-genai, watchdog, structlog or psutil.

Whether objlibd is healthy is the health model's call (`objlibd.health.assess`): this module
turns the facts into its input, and the snapshot carries its verdict (`state`, `problems`,
`healthy`). The daemon runs the same `assemble` on its own facts for the notifications.

The files this reads (heartbeat, pidfile, pause flag, the daemon's pointer) and how they are
written are `status.files`.
"""

from __future__ import annotations

import os
import time

from objlibd.engine import progress
from objlibd.state import keys
from objlibd.status import files, health

# `status` is the command people run most: even `typing`, `pathlib` and `dataclasses` cost
# milliseconds, so they are only named for the type checker here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypedDict

    class DaemonFacts(TypedDict):
        """The snapshot's `daemon`: whether it runs, its pid, uptime and memory."""

        running: bool
        pid: int | None
        uptime_s: float | None
        rss_mb: float | None

    class JobFacts(TypedDict):
        """One job in the snapshot's `jobs`: its last run and result, its next run (ISO)."""

        last_run: str | None
        last_result: str | None
        next_run: str | None

    from objlibd.config import Config
    from objlibd.state.store import StateStore

# -- snapshot ------------------------------------------------------------------------------------


def snapshot(config: Config, *, now: float | None = None) -> dict[str, Any]:
    """Return the status as a dict with stable keys (see module doc)."""
    moment = time.time() if now is None else now
    beat = files.live_heartbeat(config, moment)
    cached = (beat or {}).get("db")
    if isinstance(cached, dict):
        db, db_key = cached, None
    else:
        db_key = db_stamp(str(config.db_path))  # taken first: a write meanwhile changes it
        db = _db_facts(config)
    volume = _volume(config, beat, db)
    snap = assemble(
        beat, db, moment, settings=files.settings_of(config), volume=volume,
        pause=files.read_pause(config.state.dir),
    )  # fmt: skip
    if beat is None and config.source is not None:
        from objlibd.status import cache as statuscache

        statuscache.remember(config, db, db_key, volume)
    return snap


def assemble(
    beat: dict[str, Any] | None,
    db: dict[str, Any],
    now: float,
    *,
    settings: Mapping[str, Any],
    volume: dict[str, Any],
    pause: dict[str, Any] | None,
) -> dict[str, Any]:
    """Build the snapshot from the heartbeat (or None), the DB facts and the config's values."""
    live = beat or {}
    settings = {**settings, **(live.get("settings") or {})}  # what the daemon runs with
    snap: dict[str, Any] = {
        "daemon": _daemon(beat, now),
        "volume": {"state": volume.get("state"), "reason": volume.get("reason")},
        "watcher": {"alive": bool(live.get("watcher", {}).get("alive"))},
        "paused": pause is not None,
        "hold": (db["hold"] or {}).get("reason") if db["hold"] else None,
        "confirm_pending": bool(db.get("confirm_pending")),
        "queue": {"pending_paths": int(live.get("queue", {}).get("pending_paths", 0)) if beat
                  else len((db["pending"] or {}).get("paths", []))},
        "last_batch": live.get("last_batch") or db["last_batch"],
        "files": db["files"],
        "duplicates": db["duplicates"],
        "orphans": db["orphans"],
        "jobs": _jobs(db["jobs"], live.get("next_runs") or {}),
        "remote": _remote(settings, beat, db.get("pace")),
        "progress": progress.of_heartbeat(beat, now),
        "errors": db["errors"],
        "quarantined": db.get("quarantined", []),
        "state_rebuilt": db.get("rebuilt"),
    }  # fmt: skip
    verdict = health.assess(facts(beat, db, now, settings=settings, volume=volume, pause=pause))
    snap["state"] = verdict["state"]
    snap["problems"] = verdict["problems"]
    snap["healthy"] = verdict["state"] != health.UNHEALTHY
    return snap


def facts(
    beat: dict[str, Any] | None,
    db: dict[str, Any],
    now: float,
    *,
    settings: Mapping[str, Any],
    volume: dict[str, Any],
    pause: dict[str, Any] | None,
) -> health.Facts:
    """Return the health model's input from the heartbeat, the DB facts and the settings."""
    live = beat or {}
    store = live.get("store") or {}
    hold = db.get("hold")
    return {
        "now": now, "running": beat is not None, "volume": volume,
        "watcher_alive": bool(live.get("watcher", {}).get("alive")),
        "watch_failed": live.get("watch_failed"), "paused": pause is not None,
        "paused_since": (pause or {}).get("since"),
        "pending_paths": int(live.get("queue", {}).get("pending_paths", 0)),
        "files": db.get("files") or {}, "breaker": _breaker(beat),
        "hold": hold if isinstance(hold, dict) else None,
        "confirm_pending": db.get("confirm_pending") or None,
        "quarantined": int(db.get("quarantined_count") or len(db.get("quarantined") or ())),
        "store_failing_since": store.get("failing_since"), "store_error": store.get("error"),
        "store_full": store.get("full"),
        "unreachable_after_s": float(settings.get("unreachable_after_s") or
                                     health.DEFAULT_UNREACHABLE_S),
        "state_disk_full": live.get("state_disk_full"), "state_db": db.get("problem"),
        "daemon_problem": live.get("problem"), "daemon_problem_fix": live.get("problem_fix") or "",
        "config_changed": bool(live.get("config_changed")),
        "last_success": db.get("last_success"), "seen": live.get("seen") or {},
        "state_dir": str(settings.get("state_dir") or ""), "drive": str(settings.get("drive") or ""),
    }  # fmt: skip


def _daemon(beat: dict[str, Any] | None, now: float) -> DaemonFacts:
    if beat is None:
        return {"running": False, "pid": None, "uptime_s": None, "rss_mb": None}
    started = float(beat.get("started_epoch", now))
    return {
        "running": True,
        "pid": beat.get("pid"),
        "uptime_s": round(now - started, 1),
        "rss_mb": beat.get("rss_mb"),
    }


def beat_volume(beat: dict[str, Any] | None) -> dict[str, Any] | None:
    if beat is not None and isinstance(beat.get("volume"), dict):
        return dict(beat["volume"])
    return None


def _volume(config: Config, beat: dict[str, Any] | None, db: dict[str, Any]) -> dict[str, Any]:
    seen = beat_volume(beat)
    if seen is not None:
        return seen
    from objlibd.engine import volume

    found = volume.probe(config.library, db["library_id"])
    return {"state": found.availability.value, "reason": found.reason, "hint": found.hint,
            "cause": found.cause}  # fmt: skip


def _breaker(beat: dict[str, Any] | None) -> str | None:
    remote = (beat or {}).get("remote") or {}
    breaker = remote.get("breaker") if isinstance(remote, dict) else None
    if isinstance(breaker, dict):
        breaker = breaker.get("state")
    return breaker if isinstance(breaker, str) else None


def _remote(
    settings: Mapping[str, Any], beat: dict[str, Any] | None, learned: object = None
) -> dict[str, Any]:
    stats = ((beat or {}).get("store") or {}).get("stats") or {}
    remote = {
        "backend": settings.get("backend"), "store": settings.get("store"),
        "breaker": _breaker(beat), "documents": stats.get("documents"),
        "size_bytes": stats.get("size_bytes"), "stats_at": stats.get("at"),
    }  # fmt: skip
    # The request pace: the daemon's live one, else the one learned by the last run.
    live = ((beat or {}).get("remote") or {}).get("pace")
    if isinstance(live, dict):
        remote["pace"] = live
    elif isinstance(learned, dict) and settings.get("backend") == "gemini":
        remote["pace"] = {"rpm": learned.get("rpm"), "source": "learned",
                          "quota_429s": learned.get("quota_429s", 0)}  # fmt: skip
    return remote


def _jobs(rows: dict[str, Any], next_runs: dict[str, str | None]) -> dict[str, JobFacts]:
    return {
        name: {
            "last_run": (rows.get(name) or {}).get("last_run"),
            "last_result": (rows.get(name) or {}).get("last_result"),
            "next_run": next_runs.get(name),
        }
        for name in keys.JOBS
    }


def _empty_db() -> dict[str, Any]:
    return {
        "files": {}, "duplicates": 0, "orphans": 0, "errors": [], "jobs": {}, "hold": None,
        "last_batch": None, "pending": None, "library_id": None, "problem": None,
        "confirm_pending": None, "quarantined": [], "quarantined_count": 0, "last_success": None,
        "rebuilt": None,
    }  # fmt: skip


def db_stamp(db_path: str) -> list[list[int]]:
    """Return what changes whenever the DB does: (inode, size, mtime) of it and its WAL.

    Not ctime: SQLite running as root re-owns the WAL on every open, even a read-only one;
    and an empty WAL counts as none (a reader may create it, and holds no change).
    """
    stamp: list[list[int]] = []
    for path in (db_path, db_path + "-wal"):
        try:
            info = os.stat(path)
        except OSError:
            stamp.append([])
            continue
        stamp.append([info.st_ino, info.st_size, info.st_mtime_ns] if info.st_size else [])
    return stamp


def _db_facts(config: Config) -> dict[str, Any]:
    facts = _empty_db()
    if not config.db_path.exists():
        return facts
    from objlibd.errors import StateError
    from objlibd.state import migrations
    from objlibd.state.store import StateStore

    try:
        state = StateStore.open(config.db_path, readonly=True)
        try:  # a DB still being created or migrated by its writer has no facts yet
            if state.db.schema_version >= migrations.LATEST:
                facts.update(db_facts(state))
        finally:
            state.close()
    except StateError as err:  # damaged, locked...: say so (the next writer rebuilds it)
        facts["problem"] = err.message
    except Exception as err:  # noqa: BLE001 - created or damaged under us (sqlite3): say so
        facts["problem"] = f"state database {config.db_path}: {err}"
    return facts


def db_facts(state: StateStore) -> dict[str, Any]:
    """Return the DB part of the status (the daemon caches it in its heartbeat)."""
    facts = _empty_db()
    facts["files"] = state.files.counts_by_status()
    facts["duplicates"] = len(state.files.duplicates())
    facts["orphans"] = state.files.orphan_count()
    facts["errors"] = [
        {"path": path, "status": status, "error": error[:200]}
        for path, status, error in state.files.recent_errors(5)
    ]
    facts["quarantined"] = [
        {"path": row.path, "failures": row.failures, "since": row.quarantined_at,
         "error": (row.error or "")[:200]}
        for row in state.failures.failure_rows(limit=5) if row.quarantined_at is not None
    ]  # fmt: skip
    facts["quarantined_count"] = state.failures.count_quarantined()
    hold = state.values.get_json(keys.HOLD)
    if isinstance(hold, dict):  # without its paths: the heartbeat carries this every beat
        facts["hold"] = {key: hold.get(key) for key in ("since", "reason", "count", "revision")}
    facts["last_batch"] = state.values.get_json(keys.LAST_BATCH)
    facts["pending"] = state.values.get_json(keys.PENDING)
    facts["confirm_pending"] = state.values.get_json(keys.CONFIRM_PENDING)
    facts["pace"] = state.values.get_json(keys.PACE)
    facts["library_id"] = state.values.get_config(keys.LIBRARY_ID)  # keys.LIBRARY_ID
    facts["last_success"] = state.jobs.last_success()
    facts["rebuilt"] = state.values.get_json(keys.REBUILT)  # keys.REBUILT
    for name, kind in keys.JOBS.items():
        row = state.jobs.last_job(kind)
        if row is not None:
            result = row.status if not row.error else f"{row.status}: {row.error}"
            facts["jobs"][name] = {
                "last_run": row.finished_at or row.started_at,
                "last_result": result[:200],
            }
    return facts


def render_text(snap: dict[str, Any]) -> str:
    """Return the status for people (`objlibd.statustext`)."""
    from objlibd.status import text as statustext

    return statustext.render(snap)
