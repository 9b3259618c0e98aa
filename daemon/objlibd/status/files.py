"""The files the daemon publishes and the CLI reads or leaves for it: one contract, one module.

In the state dir: the daemon's **heartbeat** (its live facts, rewritten every few seconds; the
writer that survives a full disk is `runtime.heartbeat`), its **pidfile** (`runtime.pidfile`),
the **pause** flag (`objlibd pause` writes it; the daemon notices within a second) and the
**confirm request** (`objlibd missing --confirm` leaves it; the daemon takes it). In the user
cache dir: the **pointer** the daemon writes at start, naming its config file and state dir,
so `objlibd status` can skip loading the config (`status.cache`).

The daemon counts as running only when the pidfile's pid is alive *and* the heartbeat is fresh
and written by that pid (`live_beat`). Every file is JSON, written atomically (temp file and
rename: readers never see half of one) and read tolerantly (absent or torn: None).

`status` imports this on its hot path: standard builtins only (even `typing`, `pathlib` and
`dataclasses` cost milliseconds, so they are only named for the type checker).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib

from objlibd.state import dbtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TypedDict

    from objlibd.config import Config

    class Settings(TypedDict, total=False):
        """The few config values the snapshot needs (the daemon puts them in its heartbeat)."""

        backend: str
        store: str
        drive: str
        state_dir: str
        unreachable_after_s: float


HEARTBEAT_NAME = "daemon.heartbeat.json"
PIDFILE_NAME = "objlibd.pid"
PAUSE_NAME = "paused.json"
CONFIRM_MISSING_NAME = "confirm-missing.request"


# -- JSON files ----------------------------------------------------------------------------------


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` via a temp file and rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as out:
            out.write(json.dumps(data, sort_keys=True, default=str))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk leaves no half-written temp files behind
        raise


def read_json(path: str | Path, *, tries: int = 1) -> dict[str, Any] | None:
    """Return a JSON object file, or None when absent; `tries` > 1 re-reads a torn one."""
    for _ in range(tries):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            continue
        return data if isinstance(data, dict) else None
    return None


iso = dbtime.iso_seconds  # the heartbeat's, the pause flag's and the requests' times


# -- pause and confirm requests ------------------------------------------------------------------


def read_pause(state_dir: str | Path) -> dict[str, Any] | None:
    """Return the pause record ({since, by}) or None when not paused."""
    return read_json(os.path.join(state_dir, PAUSE_NAME))


def is_paused(state_dir: Path) -> bool:
    """Return True while the pause flag is there (the daemon checks this every tick)."""
    return (state_dir / PAUSE_NAME).exists()


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


def request_confirm(state_dir: Path, revision: int) -> None:
    """Leave the daemon a person's confirmation of the held mass-missing `revision`."""
    write_json_atomic(state_dir / CONFIRM_MISSING_NAME, {"revision": revision})


def take_confirm_request(state_dir: Path) -> tuple[bool, int | None]:
    """Take (read and remove) a confirm request: (whether there was one, its hold revision)."""
    request = state_dir / CONFIRM_MISSING_NAME
    if not request.exists():
        return False, None
    revision = (read_json(request) or {}).get("revision")
    request.unlink(missing_ok=True)
    return True, revision if isinstance(revision, int) else None


# -- the heartbeat and the pidfile ---------------------------------------------------------------


def stale_after(config: Config) -> float:
    """Return how old a heartbeat may be before the daemon counts as not running."""
    return max(10.0, 5 * config.sync.heartbeat_seconds)


def settings_of(config: Config) -> Settings:
    """Return the few config values the snapshot needs (the daemon puts them in its heartbeat)."""
    return {
        "backend": config.store.backend, "store": config.store.name,
        "drive": config.library.mount_point.name, "state_dir": str(config.state.dir),
        "unreachable_after_s": config.health.store_unreachable_minutes * 60,
    }  # fmt: skip


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
    beat = read_json(os.path.join(state_dir, HEARTBEAT_NAME), tries=3)
    if owner is None or beat is None or beat.get("pid") != owner.get("pid"):
        return None
    if not _pid_alive(int(beat["pid"])) or beat.get("stopped"):
        return None
    if now - float(beat.get("updated_epoch", 0)) > stale:
        return None
    return beat


# -- the pointer ---------------------------------------------------------------------------------


def pointer_file(config_path: str) -> str:
    """Return where the daemon notes which state dir its config file names."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(
        "~/Library/Caches" if sys.platform == "darwin" else "~/.cache"
    )
    return os.path.join(cache, "objlibd", f"status-{zlib.crc32(config_path.encode()):08x}.json")


def write_pointer(config: Config) -> None:
    """Note (for `status.cache.quick`) the config file this daemon runs with, as it is now."""
    if config.source is None:
        return
    path = os.path.abspath(config.source)
    info = os.stat(path)
    pointer = {
        "config": path, "mtime_ns": info.st_mtime_ns, "size": info.st_size,
        "state_dir": str(config.state.dir), "stale_after": stale_after(config),
        "backend": config.store.backend, "store": config.store.name,
        "settings": settings_of(config),
    }  # fmt: skip
    from pathlib import Path

    target = Path(pointer_file(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, pointer)
