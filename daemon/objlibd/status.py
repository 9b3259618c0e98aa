"""`objlibd status`: a read-only snapshot, fast, whether or not the daemon runs.

Facts come from three places: the state DB opened read-only (file counts, duplicates,
orphans, jobs, hold, last batch), the daemon's heartbeat file (live facts: watcher, queue,
breaker, next runs, RSS), rewritten atomically every few seconds, and the pidfile. While the
daemon runs, its heartbeat also carries the DB facts (refreshed after each batch or job), so
`status` does not even open SQLite; the queries grow with the library, the heartbeat does not. The daemon
counts as running only when the pidfile's pid is alive *and* the heartbeat is fresh and
written by that pid. Nothing here imports google-genai, watchdog, structlog or psutil.

This module also owns the small files the daemon shares with the CLI: the heartbeat and the
pause flag (`objlibd pause` writes it; the daemon notices within a second).

Healthy (exit 0) means: running, the volume is not "degraded" (a wrong or unmarked drive),
the watch is alive while the volume is available, no mass-missing hold waits for a person,
the store's breaker is not open, and the daemon reports no problem. A drive that is simply
not connected is healthy: the daemon is doing its job, waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib

# `status` is the command people run most: even `typing`, `pathlib` and `dataclasses` cost
# milliseconds, so they are only named for the type checker here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from objlibd.config import Config
    from objlibd.state import StateStore

HEARTBEAT_NAME = "daemon.heartbeat.json"
PIDFILE_NAME = "objlibd.pid"
PAUSE_NAME = "paused.json"
CONFIRM_MISSING_NAME = "confirm-missing.request"
LAST_BATCH_KEY = "daemon.last_batch"
SCHEDULE_KEY = "daemon.schedule"
PENDING_KEY = "daemon.pending"
CONFIRM_PENDING_KEY = "daemon.confirm_pending"  # a confirmation stored while objlibd could not act
PACE_KEY = "remote.pace"  # the request pace learned for the store (remote/pace.py)
JOB_KINDS = {"orphan_cleanup": "orphan_cleanup", "prune": "prune", "reconcile": "sync"}


# -- shared files ------------------------------------------------------------------------------


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` via a temp file and rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def read_json(path: str | Path) -> dict[str, Any] | None:
    """Return a JSON object file, or None when absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_pause(state_dir: str | Path) -> dict[str, Any] | None:
    """Return the pause record ({since, by}) or None when not paused."""
    return read_json(os.path.join(state_dir, PAUSE_NAME))


def set_pause(state_dir: Path, paused: bool, *, now: float | None = None) -> bool:
    """Pause or resume; return True if that changed anything."""
    path = state_dir / PAUSE_NAME
    was = path.exists()
    if paused and not was:
        state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"since": iso(now or time.time()), "by": f"pid {os.getpid()}"})
    elif not paused and was:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return paused != was


def iso(epoch: float) -> str:
    """Return a UTC ISO time with seconds precision and Z."""
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- snapshot ------------------------------------------------------------------------------------


def stale_after(config: Config) -> float:
    """Return how old a heartbeat may be before the daemon counts as not running."""
    return max(10.0, 5 * config.sync.heartbeat_seconds)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_heartbeat(config: Config, now: float) -> dict[str, Any] | None:
    """Return the heartbeat if the daemon that wrote it is alive and it is fresh."""
    return live_beat(config.state.dir, now, stale_after(config))


def live_beat(state_dir: str | Path, now: float, stale: float) -> dict[str, Any] | None:
    """Return the heartbeat in `state_dir` if its pid owns the pidfile, lives, and is fresh."""
    owner = read_json(os.path.join(state_dir, PIDFILE_NAME))
    beat = read_json(os.path.join(state_dir, HEARTBEAT_NAME))
    if owner is None or beat is None or beat.get("pid") != owner.get("pid"):
        return None
    if not _pid_alive(int(beat["pid"])) or beat.get("stopped"):
        return None
    if now - float(beat.get("updated_epoch", 0)) > stale:
        return None
    return beat


def snapshot(config: Config, *, now: float | None = None) -> dict[str, Any]:
    """Return the status as a dict with stable keys (see module doc)."""
    moment = time.time() if now is None else now
    beat = live_heartbeat(config, moment)
    cached = (beat or {}).get("db")
    db = cached if isinstance(cached, dict) else _db_facts(config)
    return assemble(
        beat, db, moment, backend=config.store.backend, store=config.store.name,
        paused=read_pause(config.state.dir) is not None, volume=_volume(config, beat, db),
    )  # fmt: skip


def assemble(
    beat: dict[str, Any] | None,
    db: dict[str, Any],
    now: float,
    *,
    backend: str,
    store: str,
    paused: bool,
    volume: dict[str, Any],
) -> dict[str, Any]:
    """Build the snapshot from the heartbeat (or None), the DB facts and the config's names."""
    snap: dict[str, Any] = {
        "daemon": _daemon(beat, now),
        "volume": volume,
        "watcher": {"alive": bool(beat and beat.get("watcher", {}).get("alive"))},
        "paused": paused,
        "hold": (db["hold"] or {}).get("reason") if db["hold"] else None,
        "confirm_pending": bool(db.get("confirm_pending")),
        "queue": {"pending_paths": int(beat.get("queue", {}).get("pending_paths", 0)) if beat
                  else len((db["pending"] or {}).get("paths", []))},
        "last_batch": (beat or {}).get("last_batch") or db["last_batch"],
        "files": db["files"],
        "duplicates": db["duplicates"],
        "orphans": db["orphans"],
        "jobs": _jobs(db["jobs"], (beat or {}).get("next_runs") or {}),
        "remote": _remote(backend, store, beat, db.get("pace")),
        "errors": db["errors"],
        "quarantined": db.get("quarantined", []),
        "problem": (beat or {}).get("problem") or db["problem"],
    }  # fmt: skip
    snap["healthy"] = healthy(snap)
    return snap


def _daemon(beat: dict[str, Any] | None, now: float) -> dict[str, Any]:
    if beat is None:
        return {"running": False, "pid": None, "uptime_s": None, "rss_mb": None}
    started = float(beat.get("started_epoch", now))
    return {
        "running": True,
        "pid": beat.get("pid"),
        "uptime_s": round(now - started, 1),
        "rss_mb": beat.get("rss_mb"),
    }


def _beat_volume(beat: dict[str, Any] | None) -> dict[str, Any] | None:
    if beat is not None and isinstance(beat.get("volume"), dict):
        return {"state": beat["volume"].get("state"), "reason": beat["volume"].get("reason")}
    return None


def _volume(config: Config, beat: dict[str, Any] | None, db: dict[str, Any]) -> dict[str, Any]:
    seen = _beat_volume(beat)
    if seen is not None:
        return seen
    from objlibd import volume  # only without a running daemon: the heartbeat has it otherwise

    found = volume.probe(config.library, db["library_id"])
    return {"state": found.availability.value, "reason": found.reason}


def _remote(
    backend: str, store: str, beat: dict[str, Any] | None, learned: Any = None
) -> dict[str, Any]:
    health = (beat or {}).get("remote") or {}
    breaker = health.get("breaker") if isinstance(health, dict) else None
    if isinstance(breaker, dict):
        breaker = breaker.get("state")
    remote = {"backend": backend, "store": store, "breaker": breaker}
    # The live pace (with the ETA of pending uploads) while the daemon runs; else the learned one.
    pace = health.get("pace") if isinstance(health, dict) else None
    if not isinstance(pace, dict) and isinstance(learned, dict) and backend == "gemini":
        pace = {"rpm": learned.get("rpm"), "source": "learned",
                "quota_429s": learned.get("quota_429s", 0)}  # fmt: skip
    if isinstance(pace, dict):
        remote["pace"] = pace
    return remote


def _jobs(rows: dict[str, Any], next_runs: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "last_run": (rows.get(name) or {}).get("last_run"),
            "last_result": (rows.get(name) or {}).get("last_result"),
            "next_run": next_runs.get(name),
        }
        for name in JOB_KINDS
    }


def _empty_db() -> dict[str, Any]:
    return {
        "files": {}, "duplicates": 0, "orphans": 0, "errors": [], "jobs": {}, "hold": None,
        "last_batch": None, "pending": None, "library_id": None, "problem": None,
        "confirm_pending": None,
        "quarantined": [],
    }  # fmt: skip


def _db_facts(config: Config) -> dict[str, Any]:
    facts = _empty_db()
    if not config.db_path.exists():
        return facts
    from objlibd.errors import StateError
    from objlibd.state import StateStore

    try:
        state = StateStore.open(config.db_path, readonly=True)
    except StateError as err:
        facts["problem"] = err.message
        return facts
    try:
        facts.update(db_facts(state))
    finally:
        state.close()
    return facts


def db_facts(state: StateStore) -> dict[str, Any]:
    """Return the DB part of the status (the daemon caches it in its heartbeat)."""
    facts = _empty_db()
    facts["files"] = state.counts_by_status()
    facts["duplicates"] = len(state.duplicates())
    facts["orphans"] = state.orphan_count()
    facts["errors"] = [
        {"path": path, "status": status, "error": error[:200]}
        for path, status, error in state.recent_errors(5)
    ]
    facts["quarantined"] = [
        {"path": row.path, "failures": row.failures, "since": row.quarantined_at,
         "error": (row.error or "")[:200]}
        for row in state.failure_rows(limit=5) if row.quarantined_at is not None
    ]  # fmt: skip
    facts["hold"] = state.get_json("hold")
    facts["last_batch"] = state.get_json(LAST_BATCH_KEY)
    facts["pending"] = state.get_json(PENDING_KEY)
    facts["confirm_pending"] = state.get_json(CONFIRM_PENDING_KEY)
    facts["pace"] = state.get_json(PACE_KEY)
    facts["library_id"] = state.get_config("library_id")  # volume.LIBRARY_ID_KEY
    for name, kind in JOB_KINDS.items():
        row = state.last_job(kind)
        if row is not None:
            result = row.status if not row.error else f"{row.status}: {row.error}"
            facts["jobs"][name] = {
                "last_run": row.finished_at or row.started_at,
                "last_result": result[:200],
            }
    return facts


def healthy(snap: dict[str, Any]) -> bool:
    """Return True when nothing needs a person (see module doc)."""
    if not snap["daemon"]["running"] or snap["problem"] or snap["hold"]:
        return False
    if snap["volume"]["state"] == "degraded" or snap["remote"]["breaker"] == "open":
        return False
    return not (snap["volume"]["state"] == "available" and not snap["watcher"]["alive"])


# -- human rendering -----------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def pace_text(pace: dict[str, Any]) -> str:
    """Return e.g. '300 rpm (learned), 4 quota 429s absorbed; 120 uploads left, about 1m 12s'."""
    rpm = pace.get("rpm")
    text = f"{rpm:g} rpm" if isinstance(rpm, int | float) else "? rpm"
    text += f" ({pace.get('source') or 'configured'}), "
    text += f"{pace.get('quota_429s') or 0} quota 429s absorbed"
    pending, eta = pace.get("pending_uploads") or 0, pace.get("eta_s")
    if pending and isinstance(eta, int | float):
        text += f"; {pending} uploads left, about {_duration(eta)} at this pace"
    return text


def _hold_line(snap: dict[str, Any]) -> str:
    if not snap["hold"]:
        return "none"
    if snap.get("confirm_pending"):
        return f"{snap['hold']} (confirmed; applied once objlibd can act: resume / drive)"
    return f"{snap['hold']} (`objlibd missing` shows the files)"


def render_text(snap: dict[str, Any]) -> str:
    """Return the status for people."""
    d = snap["daemon"]
    lines = [
        f"daemon:     running (pid {d['pid']}, up {_duration(d['uptime_s'])}, {d['rss_mb']} MB)"
        if d["running"] else "daemon:     NOT RUNNING",
        f"volume:     {snap['volume']['state']}: {snap['volume']['reason']}",
        f"watcher:    {'alive' if snap['watcher']['alive'] else 'not watching'}",
        f"paused:     {'YES (objlibd resume to continue)' if snap['paused'] else 'no'}",
        f"hold:       {_hold_line(snap)}",
        f"queue:      {snap['queue']['pending_paths']} paths pending",
    ]  # fmt: skip
    batch = snap["last_batch"]
    if batch:
        counts = (
            ", ".join(f"{v} {k}" for k, v in batch.get("counts", {}).items() if v) or "no changes"
        )
        lines.append(f"last batch: {batch.get('time')} {counts} in {batch.get('duration_s')}s")
    files = ", ".join(f"{v} {k}" for k, v in snap["files"].items() if v) or "none tracked"
    lines += [
        f"files:      {files}",
        f"duplicates: {snap['duplicates']}    orphans: {snap['orphans']}",
        "jobs:",
    ]
    for name, job in snap["jobs"].items():
        lines.append(
            f"  {name:<15} last {job['last_run'] or '-'} {job['last_result'] or ''}".rstrip()
            + f"  next {job['next_run'] or '-'}"
        )
    r = snap["remote"]
    lines.append(f'remote:     {r["backend"]} store "{r["store"]}" (breaker {r["breaker"] or "-"})')
    if r.get("pace"):
        lines.append(f"pace:       {pace_text(r['pace'])}")
    if snap["problem"]:
        lines.append(f"PROBLEM:    {snap['problem']}")
    for err in snap["errors"]:
        lines.append(f"  error: {err['path']}: {err['error']}")
    for held in snap["quarantined"]:
        lines.append(
            f"  quarantined: {held['path']} ({held['failures']} failures): {held['error']}"
        )
    if snap["quarantined"]:
        lines.append("    (`objlibd failures` lists them all; `objlibd retry PATH` after a fix)")
    lines.append("healthy" if snap["healthy"] else "NOT HEALTHY")
    return "\n".join(lines)


# -- the quick path: a running daemon's own view, without loading the config ---------------------


def pointer_file(config_path: str) -> str:
    """Return where the daemon notes which state dir its config file names."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(
        "~/Library/Caches" if sys.platform == "darwin" else "~/.cache"
    )
    return os.path.join(cache, "objlibd", f"status-{zlib.crc32(config_path.encode()):08x}.json")


def write_pointer(config: Config) -> None:
    """Note (for `quick`) the config file this daemon runs with, as it is now on disk."""
    if config.source is None:
        return
    path = os.path.abspath(config.source)
    info = os.stat(path)
    pointer = {
        "config": path, "mtime_ns": info.st_mtime_ns, "size": info.st_size,
        "state_dir": str(config.state.dir), "stale_after": stale_after(config),
        "backend": config.store.backend, "store": config.store.name,
    }  # fmt: skip
    from pathlib import Path

    target = Path(pointer_file(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, pointer)


def quick(config_arg: str | None, *, now: float | None = None) -> dict[str, Any] | None:
    """Return the snapshot from a live daemon's heartbeat; None when the full path must decide.

    Only when the config file is byte-for-byte the one the running daemon loaded (same path,
    mtime and size as it noted at start) is the config not read again: the daemon validated
    it, and the heartbeat carries every fact. Anything else (no daemon, an edited config, a
    missing note) returns None and `status` loads and validates the config as usual.
    """
    path = _config_file(config_arg)
    pointer = read_json(pointer_file(path))
    try:
        info = os.stat(path)
    except OSError:
        return None
    if pointer is None or pointer.get("config") != path:
        return None
    if (info.st_mtime_ns, info.st_size) != (pointer.get("mtime_ns"), pointer.get("size")):
        return None
    moment = time.time() if now is None else now
    beat = live_beat(pointer["state_dir"], moment, float(pointer["stale_after"]))
    volume = _beat_volume(beat)
    if beat is None or volume is None or not isinstance(beat.get("db"), dict):
        return None
    return assemble(
        beat, beat["db"], moment, backend=pointer["backend"], store=pointer["store"],
        paused=read_pause(pointer["state_dir"]) is not None, volume=volume,
    )  # fmt: skip


def _config_file(explicit: str | None) -> str:
    """Resolve the config path as `config.resolve_path` does, without importing it."""
    chosen = explicit or os.environ.get("OBJLIBD_CONFIG")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    import platformdirs

    folder = platformdirs.user_config_dir("objlibd", appauthor=False)
    return os.path.abspath(os.path.join(folder, "objlibd.toml"))
