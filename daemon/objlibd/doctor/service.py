"""The doctor's checks of what runs objlibd: the API key, the store, the service, the daemon.

These touch what a Linux test cannot reproduce (the keychain, the network, launchd, a running
daemon), so each check takes the probe it needs as an argument: `objlibd.doctor` passes in its
`Probes`, whose real defaults (`reach_store`, `daemon_health`) live here too. The API key is
never shown, only where it was found.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from objlibd.autostart.plan import ServiceStatus
from objlibd.config import Config
from objlibd.credentials import API_KEY_ENV, KeyStore, find_api_key
from objlibd.doctor.checks import Check, Level, binary_hint
from objlibd.errors import CredentialsMissingError, ObjlibdError
from objlibd.runtime import pidfile


class ServiceManager(Protocol):
    """What doctor asks launchd/systemd (objlibd.launchd.Launchd, objlibd.systemd.Systemd)."""

    name: str
    path: Path

    def status(self) -> ServiceStatus: ...

    def definition(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DaemonHealth:
    """Is a daemon running for this state dir, and is its watcher alive."""

    running: bool
    pid: int | None = None
    watcher_alive: bool | None = None  # None: the daemon does not report it (yet)
    volume: str = ""
    volume_reason: str = ""
    problems: tuple[dict[str, Any], ...] = ()  # the health model's, from its heartbeat


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
    reach: Callable[[Config], str],
    *,
    offline: bool,
    key_ok: bool,
) -> Check:
    """Does the store answer? (network; skipped with --offline)"""
    name = "store reachable"
    skipped = _store_not_checked(config, offline=offline, key_ok=key_ok)
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
    config: Config, *, offline: bool, key_ok: bool
) -> tuple[Level, str, str] | None:
    if config.store.backend != "gemini":
        return Level.OK, f"{config.store.backend} store, no network needed", ""
    if offline:
        return Level.OK, "not checked (--offline)", ""
    if not key_ok:
        return Level.WARN, "not checked: no API key", ""
    return None


def reach_store(config: Config) -> str:
    """Look the configured store up (a listing; doctor never creates it); say what answered.

    Also before the first sync: a wrong base_url, a dead network or a refused key shows
    here, not hours later as parked work. Two attempts at most: a person is waiting.
    """
    import dataclasses

    from objlibd.remote.gemini import open_gemini

    settings = config.gemini
    quick = dataclasses.replace(settings, max_attempts=min(settings.max_attempts, 2))
    store = open_gemini(quick)
    try:
        store_id = store.find_store(config.store.name)
    finally:
        store.close()
    if store_id is None:
        return (
            f'Gemini answers; store "{config.store.name}" does not exist yet '
            "(the first sync creates it)"
        )
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
    from objlibd.status import files
    from objlibd.status import view as status

    owner = pidfile.live_owner(config.state.dir / pidfile.PIDFILE_NAME)
    if owner is None:
        return DaemonHealth(running=False)
    beat = files.live_heartbeat(config, time.time())
    if beat is None:
        return DaemonHealth(running=True, pid=owner.pid, watcher_alive=None)
    watcher = beat.get("watcher")
    alive = bool(watcher.get("alive")) if isinstance(watcher, dict) else None
    vol = beat.get("volume")
    vol = vol if isinstance(vol, dict) else {}
    problems = tuple(status.snapshot(config)["problems"])
    return DaemonHealth(
        True, owner.pid, alive, str(vol.get("state") or ""), str(vol.get("reason") or ""),
        problems,
    )  # fmt: skip


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
    return _verdict(name, detail, health)


def _verdict(name: str, detail: str, health: DaemonHealth) -> Check:
    """The health model's verdict on the running daemon, as `objlibd status` shows it."""
    found = [p for p in health.problems if p.get("severity") in ("warning", "error")]
    if found:
        level = Level.FAIL if any(p["severity"] == "error" for p in found) else Level.WARN
        said = "; ".join(f"{p['code']}: {p['message']}" for p in found)
        fix = " | ".join(f"{p['code']}: {p['fix']}" for p in found)
        return Check(name, level, f"{detail}; {said}", found[0]["fix"] if len(found) == 1 else fix)
    watching = (
        "watcher alive" if health.watcher_alive else f"waiting for the drive ({health.volume})"
    )
    return Check(name, Level.OK, f"{detail}, {watching}")
