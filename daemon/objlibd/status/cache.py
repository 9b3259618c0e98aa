"""`objlibd status` without loading the config: the daemon's pointer, and a cache with exact keys.

Loading and validating the config (tomllib, dataclasses, realpath checks) and opening the state
DB cost most of a `status`. Two notes in the user cache dir let it skip them:

- the **pointer** a running daemon writes at start (`status.files.write_pointer`): its config
  file's path, mtime and size, and its state dir. While the config file is exactly that one,
  the daemon's heartbeat carries every fact and the config is not read at all;
- the **cache** a full daemon-less `status` writes (`remember`): the config's values it needs,
  keyed by the config file's path, mtime and size and the environment the config expands
  (HOME, XDG dirs, every `$VAR` it names); the DB facts, keyed by (inode, size, mtime)
  of the DB and its WAL, taken *before* they were read so that a write meanwhile invalidates
  them; and the volume probe, only when its answer follows from what `lstat` sees (the drive
  is not connected, or it is available: mount, library folder and marker unchanged, same
  user), for at most VOLUME_TTL seconds. Any other answer (unreadable, degraded) is probed
  afresh.

Anything that does not match returns None and `status` takes the full path, which loads and
validates the config and notes the new values. A live daemon always wins over the cache.
Standard builtins only.
"""

from __future__ import annotations

import os
import re
import time

from objlibd.status import files, view

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from objlibd.config import Config

VOLUME_TTL = 300.0
_ENV = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


def quick(config_arg: str | None, *, now: float | None = None) -> dict[str, Any] | None:
    """Return the snapshot without loading the config; None when the full path must decide.

    With a running daemon: only when the config file is byte-for-byte the one the daemon
    loaded (same path, mtime and size as it noted at start) is the config not read again: the
    daemon validated it, and the heartbeat carries every fact. Without one, `statuscache`
    answers when neither the config, nor the state DB, nor the drive changed since the last
    full `status`. Anything else returns None and `status` loads and validates the config.
    """
    path = _config_file(config_arg)
    try:
        info = os.stat(path)
    except OSError:
        return None
    stamp = [info.st_mtime_ns, info.st_size]
    moment = time.time() if now is None else now
    pointer = files.read_json(files.pointer_file(path)) or {}
    if pointer.get("config") == path and stamp == [pointer.get("mtime_ns"), pointer.get("size")]:
        beat = files.live_beat(pointer["state_dir"], moment, float(pointer["stale_after"]))
        volume = view.beat_volume(beat)
        if beat is not None and volume is not None and isinstance(beat.get("db"), dict):
            names = {"backend": pointer["backend"], "store": pointer["store"]}
            return view.assemble(
                beat, beat["db"], moment, settings=pointer.get("settings") or names, volume=volume,
                pause=files.read_pause(pointer["state_dir"]),
            )  # fmt: skip
    return recall(path, stamp, moment)


def _config_file(explicit: str | None) -> str:
    """Resolve the config path as `config.resolve_path` does, without importing it."""
    chosen = explicit or os.environ.get("OBJLIBD_CONFIG")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    import platformdirs

    folder = platformdirs.user_config_dir("objlibd", appauthor=False)
    return os.path.abspath(os.path.join(folder, "objlibd.toml"))


def cache_file(config_path: str) -> str:
    """Return the cache file of the config at `config_path` (beside the daemon's pointer)."""
    return files.pointer_file(config_path).replace("status-", "status-cache-", 1)


def recall(config_path: str, stamp: list[int], now: float) -> dict[str, Any] | None:
    """Return the snapshot from the cache, or None when anything it depends on changed."""
    cached = files.read_json(cache_file(config_path))
    if cached is None or cached.get("config") != config_path or cached.get("stamp") != stamp:
        return None
    if cached.get("env") != {name: os.environ.get(name) for name in cached.get("env") or {}}:
        return None
    settings = cached["settings"]
    state_dir = settings["state_dir"]
    if files.live_beat(state_dir, now, float(settings["stale_after"])) is not None:
        return None  # a daemon runs: its heartbeat, through the full path
    db = cached.get("db") or {}
    if not isinstance(db.get("facts"), dict) or db.get("stamp") != view.db_stamp(
        settings["db_path"]
    ):
        return None
    volume = _cached_volume(cached.get("volume"), settings["library"], db["facts"], now)
    if volume is None:
        return None
    return view.assemble(
        None, db["facts"], now, settings=settings, volume=volume,
        pause=files.read_pause(state_dir),
    )  # fmt: skip


def remember(
    config: Config, db: dict[str, Any], db_stamp: list[list[int]] | None, volume: dict[str, Any]
) -> None:
    """Note what a full daemon-less `status` read, for the next one (never fails `status`)."""
    if config.source is None or db_stamp is None:
        return
    path = os.path.abspath(config.source)
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return
    library = {
        "mount_point": str(config.library.mount_point), "root": str(config.library.root),
        "marker": str(config.library.root / config.library.marker_name),
    }  # fmt: skip
    names = sorted({*_ENV, *re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text)})
    entry: dict[str, Any] = {
        "config": path, "stamp": [info.st_mtime_ns, info.st_size],
        "env": {name: os.environ.get(name) for name in names},
        "settings": {**files.settings_of(config), "stale_after": files.stale_after(config),
                     "db_path": str(config.db_path), "library": library},
        "db": {"stamp": db_stamp, "facts": db},
    }  # fmt: skip
    if _cacheable(volume):
        entry["volume"] = {"key": volume_key(library, db.get("library_id")),
                           "at": time.time(), "result": volume}  # fmt: skip
    target = cache_file(path)
    try:  # private: it holds paths from the library (recent errors, quarantined files)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        files.write_json_atomic(_path(target), entry)
        os.chmod(target, 0o600)
    except OSError:
        return


def _cacheable(volume: dict[str, Any]) -> bool:
    return volume.get("state") == "available" or volume.get("cause") == "not_connected"


def volume_key(library: dict[str, str], library_id: str | None) -> list[object]:
    """Return what the probe's answer depends on, as far as `lstat` can see it."""
    mount, root = library["mount_point"], library["root"]
    key: list[object] = [os.path.ismount(mount), os.path.realpath(root), library_id,
                      os.geteuid(), os.getegid(), sorted(os.getgroups())]  # fmt: skip
    for path in (mount, root, library["marker"]):
        try:
            info = os.lstat(path)
        except OSError as err:
            key.append(err.errno)
            continue
        key.append([info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_gid,
                    info.st_size, info.st_mtime_ns, info.st_ctime_ns])  # fmt: skip
    return key


def _cached_volume(
    cached: dict[str, Any] | None, library: dict[str, str], db: dict[str, Any], now: float
) -> dict[str, Any] | None:
    if not cached or now - float(cached.get("at") or 0) > VOLUME_TTL:
        return None
    if cached.get("key") != volume_key(library, db.get("library_id")):
        return None
    result = cached.get("result")
    return result if isinstance(result, dict) else None


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)
