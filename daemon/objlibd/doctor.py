"""`objlibd doctor`: one screen of checks, each OK / WARN / FAIL with the fix.

Each check is a small function of values (and, where it must, of one probe of the world)
returning a `Check`. The probes a test cannot reproduce on Linux (the service manager, the
keychain, the network) are injected through `Probes`; everything else is real: the config
file, the mount, the library root, the state DB, the log dir, the disk.

Levels: FAIL means objlibd cannot do its job until a person acts; WARN means something is
off or not yet set up but nothing is broken (a drive that is simply not connected is a WARN:
the daemon waits for it and changes nothing meanwhile); exit 0 when no check FAILs.
The API key is never shown, only where it was found.
"""

from __future__ import annotations

import enum
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from objlibd import config as config_module
from objlibd import pidfile, volume
from objlibd.config import Config, LibrarySettings
from objlibd.errors import CredentialsMissingError, ObjlibdError, StateError
from objlibd.serviceplan import ServiceStatus
from objlibd.state import StateStore

API_KEY_ENV = "GEMINI_API_KEY"
KEYRING_SERVICE = "objlibd"
KEYRING_USER = "gemini-api-key"
FAIL_BELOW_BYTES = 100 * 1024**2
WARN_BELOW_BYTES = 1024**3


class Level(enum.StrEnum):
    """How bad a finding is."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    level: Level
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return the check as JSON-ready data."""
        return {
            "name": self.name,
            "level": self.level.value,
            "detail": self.detail,
            "fix": self.fix,
        }


class KeyStore(Protocol):
    """The slice of `keyring` objlibd uses (the OS keychain)."""

    def get_password(self, service_name: str, username: str) -> str | None: ...

    def set_password(self, service_name: str, username: str, password: str) -> None: ...

    def delete_password(self, service_name: str, username: str) -> None: ...


class ServiceManager(Protocol):
    """What doctor asks launchd/systemd (objlibd.launchd.Launchd, objlibd.systemd.Systemd)."""

    name: str
    path: Path

    def status(self) -> ServiceStatus: ...

    def definition(self) -> bytes: ...


class DiskUsage(NamedTuple):
    """shutil.disk_usage's answer."""

    total: int
    used: int
    free: int


@dataclass(frozen=True, slots=True)
class DaemonHealth:
    """Is a daemon running for this state dir, and is its watcher alive."""

    running: bool
    pid: int | None = None
    watcher_alive: bool | None = None  # None: the daemon does not report it (yet)
    volume: str = ""
    volume_reason: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """All checks for one config."""

    config_path: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Return True when no check failed."""
        return all(check.level is not Level.FAIL for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "config": str(self.config_path),
            "ok": self.ok,
            "checks": [check.as_dict() for check in self.checks],
        }


# -- the run ------------------------------------------------------------------------------------


def run(config_path: Path, probes: Probes, *, offline: bool = False) -> Report:
    """Run every check for the config at `config_path`."""
    first, config = check_config(config_path)
    if config is None:
        return Report(config_path, (first,))
    library = config.library
    mounted = check_mount(library)
    readable = check_root(library, mounted.level is Level.OK)
    db = read_db(config)
    key = check_api_key(config, probes.environ, probes.keystore)
    service, status = service_for(probes.manager, config)
    checks = (
        first,
        mounted,
        readable,
        check_marker(library, db, readable.level is Level.OK),
        check_state_db(config, db),
        key,
        check_store(config, db, probes.reach_store, offline=offline, key_ok=key.level is Level.OK),
        service,
        check_daemon(config, probes.daemon(config), status, readable.level is Level.OK),
        check_log_dir(config.logs.dir),
        check_disk(config.state.dir, probes.disk_usage),
    )
    return Report(config_path, checks)


def render_text(report: Report) -> str:
    """Return the report for people: one line per check, the fix indented under it."""
    width = max(len(check.name) for check in report.checks)
    lines = [f"objlibd doctor ({report.config_path})"]
    for check in report.checks:
        lines.append(f"  {check.level.value:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.level is not Level.OK:
            lines.append(f"        {'':<{width}}  fix: {check.fix}")
    counts = {level: sum(c.level is level for c in report.checks) for level in Level}
    summary = ", ".join(f"{n} {level.value}" for level, n in counts.items() if n)
    lines.append(f"{summary}: {'healthy' if report.ok else 'needs attention'}")
    return "\n".join(lines)


# -- the checks -----------------------------------------------------------------------------------


def check_config(path: Path) -> tuple[Check, Config | None]:
    """Is the config file there and valid?"""
    name = "config valid"
    try:
        config = config_module.load(path)
    except ObjlibdError as err:
        fix = f"{err.hint}; the other checks need a valid config" if err.hint else ""
        return Check(name, Level.FAIL, err.message, fix or "fix the config, then run doctor"), None
    detail = f'{path} (backend {config.store.backend}, store "{config.store.name}")'
    return Check(name, Level.OK, detail), config


def check_mount(library: LibrarySettings) -> Check:
    """Is something mounted at the mount point (or did the drive get pushed to "<name> 1")?"""
    name = "mount point mounted"
    mount = library.mount_point
    if os.path.ismount(mount):
        return Check(name, Level.OK, f"{mount}")
    moved = renamed_mounts(mount)
    if moved:
        return Check(
            name,
            Level.FAIL,
            f'nothing at "{mount}", but a volume is mounted at "{moved[0]}": a leftover '
            f'folder "{mount}" probably took the name',
            f'eject the drive, remove the empty leftover folder (sudo rmdir "{mount}"), '
            "and connect the drive again",
        )
    return Check(
        name,
        Level.WARN,
        f'drive not connected: nothing is mounted at "{mount}"',
        f'connect "{mount.name}"; meanwhile objlibd waits and changes nothing in the store',
    )


def renamed_mounts(mount: Path) -> list[Path]:
    """Return mounts named like `mount` plus a number ("U32 Shadow 1"): a name collision."""
    try:
        siblings = list(mount.parent.iterdir())
    except OSError:
        return []
    prefix = mount.name + " "
    return sorted(
        path
        for path in siblings
        if path.name.startswith(prefix)
        and path.name[len(prefix) :].isdigit()
        and os.path.ismount(path)
    )


def check_root(library: LibrarySettings, mounted: bool) -> Check:
    """Can this process list the library root? (EPERM on macOS: TCC, per binary path)."""
    name = "library root readable"
    if not mounted:
        return Check(name, Level.WARN, "not checked: the drive is not mounted")
    found = volume.probe(library, None)
    if found.available:
        return Check(name, Level.OK, str(library.root))
    return Check(name, Level.FAIL, found.reason, binary_hint(found.hint))


def binary_hint(hint: str) -> str:
    """Add the resolved interpreter when TCC is the cause: the grant is per binary path."""
    real = os.path.realpath(sys.executable)
    if "Full Disk Access" in hint and real != sys.executable:
        return f"{hint} (if that is not enough, also grant the real binary {real})"
    return hint


@dataclass(frozen=True, slots=True)
class DbFacts:
    """What doctor read from the state DB."""

    exists: bool
    integrity: str = ""
    library_id: str | None = None
    store_name: str | None = None
    error: StateError | None = None


def read_db(config: Config) -> DbFacts:
    """Open the state DB read-only, run integrity_check and read the library id."""
    if not config.db_path.exists():
        return DbFacts(exists=False)
    try:
        state = StateStore.open(config.db_path, readonly=True)
    except StateError as err:
        return DbFacts(exists=True, error=err)
    try:
        return DbFacts(
            True,
            state.integrity_check(),
            state.get_config(volume.LIBRARY_ID_KEY),
            state.get_config("store_name"),
        )
    except StateError as err:
        return DbFacts(exists=True, error=err)
    except Exception as err:  # noqa: BLE001 - sqlite3 errors from a damaged file
        return DbFacts(exists=True, error=StateError(f"{config.db_path}: {err}"))
    finally:
        state.close()


def check_marker(library: LibrarySettings, db: DbFacts, readable: bool) -> Check:
    """Does the marker on the drive carry the library id the state DB synced?"""
    name = "marker matches the DB"
    if not readable:
        return Check(name, Level.WARN, "not checked: the library root is not readable")
    if db.error is not None:
        return Check(name, Level.WARN, "not checked: the state DB cannot be read")
    if db.library_id is None:
        return Check(name, Level.OK, "nothing to match yet: the first sync writes the marker")
    found = volume.probe(library, db.library_id)
    if found.available:
        return Check(name, Level.OK, f"library id {db.library_id[:12]}")
    return Check(name, Level.FAIL, found.reason, found.hint)


def check_state_db(config: Config, db: DbFacts) -> Check:
    """Is the state DB there and intact (PRAGMA integrity_check)?"""
    name = "state DB integrity"
    if not db.exists:
        return Check(
            name,
            Level.WARN,
            f"no state DB yet at {config.db_path}",
            "start the daemon (`objlibd start`) or run `objlibd sync` once to create it",
        )
    if db.error is not None:
        return Check(name, Level.FAIL, db.error.message, db.error.hint)
    if db.integrity != "ok":
        return Check(
            name,
            Level.FAIL,
            f"{config.db_path}: integrity_check: {db.integrity[:200]}",
            "stop objlibd, move the DB aside (keep it for diagnosis), start again: documents "
            "already in the store are adopted, not uploaded twice",
        )
    return Check(name, Level.OK, f"{config.db_path}: ok")


def find_api_key(environ: Mapping[str, str], keystore: Callable[[], KeyStore]) -> tuple[str, str]:
    """Return (key, where) the gemini backend would use, or ("", why not); never log the key."""
    value = environ.get(API_KEY_ENV, "").strip()
    if value:
        return value, f"${API_KEY_ENV}"
    try:
        stored = keystore().get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception as err:  # noqa: BLE001 - any keychain failure means "no key there"
        return "", f"no usable keychain ({type(err).__name__})"
    if stored and stored.strip():
        return stored.strip(), f"the keychain (service {KEYRING_SERVICE}, account {KEYRING_USER})"
    return "", "not in the keychain"


def check_api_key(
    config: Config, environ: Mapping[str, str], keystore: Callable[[], KeyStore]
) -> Check:
    """Is a Gemini API key available (shown never; only where it comes from)?"""
    name = "API key present"
    if config.store.backend != "gemini":
        return Check(name, Level.OK, f"not needed ({config.store.backend} backend)")
    key, where = find_api_key(environ, keystore)
    if key:
        return Check(name, Level.OK, f"found in {where} (not shown)")
    return Check(
        name,
        Level.FAIL,
        f"no Gemini API key: ${API_KEY_ENV} is not set, {where}",
        "run `objlibd key set` (it asks without echo and stores it in the keychain), "
        "then `objlibd restart`",
    )


def check_store(
    config: Config,
    db: DbFacts,
    reach: Callable[[Config], str],
    *,
    offline: bool,
    key_ok: bool,
) -> Check:
    """Does the store answer? (network; skipped with --offline)"""
    name = "store reachable"
    skipped = _store_not_checked(config, db, offline=offline, key_ok=key_ok)
    if skipped is not None:
        return Check(name, skipped[0], skipped[1], skipped[2])
    try:
        return Check(name, Level.OK, reach(config))
    except CredentialsMissingError as err:
        return Check(name, Level.WARN, f"not checked: {err.message}")
    except ObjlibdError as err:
        return Check(name, Level.FAIL, err.message, err.hint)
    except Exception as err:  # noqa: BLE001 - a network or SDK failure, said in one line
        return Check(name, Level.FAIL, f"{type(err).__name__}: {err}"[:300], "check the network")


def _store_not_checked(
    config: Config, db: DbFacts, *, offline: bool, key_ok: bool
) -> tuple[Level, str, str] | None:
    if config.store.backend != "gemini":
        return Level.OK, f"{config.store.backend} store, no network needed", ""
    if offline:
        return Level.OK, "not checked (--offline)", ""
    if not key_ok:
        return Level.WARN, "not checked: no API key", ""
    if db.store_name != config.store.name:
        # ensure_store would create it: doctor looks, it never creates remote things
        why = f'not checked: store "{config.store.name}" was not created by objlibd yet'
        return Level.WARN, why, "the first `objlibd sync` (or the daemon) creates it"
    return None


def reach_store(config: Config) -> str:
    """Find the configured store (one listing call); return a line saying so."""
    from objlibd.remote import open_store

    store = open_store(config)
    try:
        store_id = store.ensure_store(config.store.name)
    finally:
        store.close()
    return f'store "{config.store.name}" answers ({store_id})'


def service_for(
    factory: Callable[[Config], ServiceManager | None], config: Config
) -> tuple[Check, ServiceStatus | None]:
    """Build the platform's service manager for `config`, then check the service."""
    try:
        manager = factory(config)
    except ObjlibdError as err:  # e.g. a relative [state] dir cannot become a service
        return Check("service installed", Level.FAIL, err.message, err.hint), None
    return check_service(manager)


def check_service(manager: ServiceManager | None) -> tuple[Check, ServiceStatus | None]:
    """Is the LaunchAgent / user unit installed, current, and loaded?"""
    name = "service installed"
    if manager is None:
        return Check(
            name, Level.WARN, "no service manager for this platform", "run `objlibd run`"
        ), None
    status = manager.status()
    where = manager.path
    if not status.available:
        fix = "run `objlibd run` yourself; `objlibd stop` stops it through its pidfile"
        return Check(
            name, Level.WARN, f"{manager.name} not available: {status.detail}", fix
        ), status
    if not status.installed:
        return Check(name, Level.WARN, f"not installed ({where})", "run `objlibd install`"), status
    if _read(where) != manager.definition():
        detail = f"{where} differs from what this objlibd would install (moved python or config?)"
        return Check(name, Level.WARN, detail, "run `objlibd install` again"), status
    if not status.loaded:
        return Check(name, Level.WARN, f"installed, {status.detail}", "run `objlibd start`"), status
    return Check(name, Level.OK, f"{where}: {status.detail}"), status


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def daemon_health(config: Config) -> DaemonHealth:
    """Ask the pidfile and the daemon's heartbeat (objlibd.status) whether it runs."""
    from objlibd import status

    owner = pidfile.live_owner(config.state.dir / pidfile.PIDFILE_NAME)
    if owner is None:
        return DaemonHealth(running=False)
    beat = status.live_heartbeat(config, time.time())
    if beat is None:
        return DaemonHealth(running=True, pid=owner.pid, watcher_alive=None)
    watcher = beat.get("watcher")
    alive = bool(watcher.get("alive")) if isinstance(watcher, dict) else None
    vol = beat.get("volume")
    vol = vol if isinstance(vol, dict) else {}
    return DaemonHealth(
        True, owner.pid, alive, str(vol.get("state") or ""), str(vol.get("reason") or "")
    )


def check_daemon(
    config: Config, health: DaemonHealth, status: ServiceStatus | None, readable_here: bool
) -> Check:
    """Is a daemon running for this state dir, does it see the drive, is its watcher alive?"""
    name = "daemon running"
    if not health.running:
        if status is not None and status.loaded:
            return Check(
                name,
                Level.FAIL,
                f"the service is loaded but no daemon runs for {config.state.dir}",
                f"see `objlibd logs` and {config.logs.dir}/launchd.stderr.log (macOS) or "
                "`journalctl --user -u objlibd` (Linux); `objlibd restart`",
            )
        return Check(name, Level.WARN, "not running", "`objlibd start` (or `objlibd install`)")
    detail = f"pid {health.pid}"
    if readable_here and health.volume == "unavailable":
        # this shell reads the drive, the daemon cannot: TCC charges launchd's binary
        return Check(
            name,
            Level.FAIL,
            f"{detail}; this shell can read the library but the daemon cannot: "
            f"{health.volume_reason}",
            binary_hint(
                f"grant Full Disk Access (or Removable Volumes) to {sys.executable} in System "
                "Settings > Privacy & Security, then `objlibd restart`"
            ),
        )
    if health.watcher_alive is None:
        return Check(name, Level.WARN, f"{detail}; no fresh heartbeat", "see `objlibd status`")
    if not health.watcher_alive and health.volume == "available":
        return Check(
            name,
            Level.FAIL,
            f"{detail}; the drive is available but the watcher is not alive",
            "`objlibd restart`; if it persists, see `objlibd logs --level warning`",
        )
    watching = (
        "watcher alive" if health.watcher_alive else f"waiting for the drive ({health.volume})"
    )
    return Check(name, Level.OK, f"{detail}, {watching}")


def check_log_dir(log_dir: Path) -> Check:
    """Can objlibd write its log dir?"""
    name = "log dir writable"
    if not log_dir.is_dir():
        return Check(
            name, Level.WARN, f"{log_dir} does not exist yet", "`objlibd install` creates it"
        )
    try:
        with tempfile.TemporaryFile(dir=log_dir):
            pass
    except OSError as err:
        return Check(
            name,
            Level.FAIL,
            f"cannot write in {log_dir}: {err.strerror or err}",
            f'make it yours again: sudo chown -R "$USER" "{log_dir}"',
        )
    return Check(name, Level.OK, str(log_dir))


def check_disk(state_dir: Path, usage: Callable[[Path], DiskUsage]) -> Check:
    """Is there room for the state DB to grow (and SQLite to checkpoint)?"""
    name = "free disk (state dir)"
    where = _existing_ancestor(state_dir)
    try:
        free = usage(where).free
    except OSError as err:
        return Check(name, Level.WARN, f"cannot tell for {where}: {err.strerror or err}")
    text = f"{_size(free)} free for {state_dir}"
    if free < FAIL_BELOW_BYTES:
        return Check(name, Level.FAIL, text, "free some space on that disk")
    if free < WARN_BELOW_BYTES:
        return Check(name, Level.WARN, text, "free some space on that disk soon")
    return Check(name, Level.OK, text)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass
class Probes:
    """The outside world doctor consults; tests replace what cannot exist on Linux."""

    manager: Callable[[Config], ServiceManager | None]
    keystore: Callable[[], KeyStore]
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    reach_store: Callable[[Config], str] = field(default=reach_store)
    daemon: Callable[[Config], DaemonHealth] = field(default=daemon_health)
    disk_usage: Callable[[Path], DiskUsage] = field(
        default=lambda p: DiskUsage(*shutil.disk_usage(p))
    )
    python: Path = field(default_factory=lambda: Path(sys.executable))
