"""`objlibd doctor`: one screen of checks, each OK / WARN / FAIL with the fix.

This module runs the checks and renders the report (text or JSON). The checks themselves
live in `objlibd.checks` (config, drive, state DB, log dir, disk) and `objlibd.servicechecks`
(API key, store, service manager, daemon). The probes a test cannot reproduce on Linux (the
service manager, the keychain, the network) are injected through `Probes`; everything else
is real.

Levels: FAIL means objlibd cannot do its job until a person acts; WARN means something is
off or not yet set up but nothing is broken (a drive that is simply not connected is a WARN:
the daemon waits for it and changes nothing meanwhile); exit 0 when no check FAILs.
The API key is never shown, only where it was found.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from objlibd.config import Config, LibrarySettings
from objlibd.credentials import API_KEY_ENV, KEYRING_SERVICE, KEYRING_USER, KeyStore
from objlibd.doctor.checks import (
    Check,
    DbFacts,
    DiskUsage,
    Level,
    binary_hint,
    check_config,
    check_disk,
    check_log_dir,
    check_marker,
    check_mount,
    check_root,
    check_state_db,
    read_db,
)
from objlibd.doctor.search import check_search
from objlibd.doctor.service import (
    DaemonHealth,
    ServiceManager,
    check_api_key,
    check_daemon,
    check_store,
    daemon_health,
    reach_store,
    service_for,
)
from objlibd.engine import volume
from objlibd.models import VolumeState

# What callers and tests know as doctor.<name>; the checks moved to objlibd.checks and
# objlibd.servicechecks, the key's names to objlibd.credentials.
__all__ = [
    "API_KEY_ENV",
    "KEYRING_SERVICE",
    "KEYRING_USER",
    "Check",
    "DaemonHealth",
    "DiskUsage",
    "Level",
    "Probes",
    "Report",
    "binary_hint",
    "check_disk",
    "check_log_dir",
    "check_mount",
    "daemon_health",
    "render_report",
    "run",
]


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


def run(config_path: Path, probes: Probes, *, offline: bool = False, deep: bool = False) -> Report:
    """Run every check for the config at `config_path` (`deep`: also search the store)."""
    first, config = check_config(config_path)
    if config is None:
        return Report(config_path, (first,))
    db = read_db(config)
    found = _found_beside(config.library, db)
    mounted = check_mount(config.library, found.found_at if found else "")
    library = volume.located(config.library, found) if found else config.library
    readable = check_root(library, mounted.level is Level.OK or found is not None)
    key = check_api_key(config, probes.environ, probes.keystore)
    service, status = service_for(probes.manager, config)
    checks: tuple[Check, ...] = (
        first,
        mounted,
        readable,
        check_marker(library, db, readable.level is Level.OK),
        check_state_db(config, db),
        key,
        check_store(config, probes.reach_store, offline=offline, key_ok=key.level is Level.OK),
        service,
        check_daemon(config, probes.daemon(config), status, readable.level is Level.OK),
        check_log_dir(config.logs.dir),
        check_disk(config.state.dir, probes.disk_usage),
    )
    if deep:
        checks += (check_search(config, probes.environ, probes.keystore, offline=offline),)
    return Report(config_path, checks)


def _found_beside(library: LibrarySettings, db: DbFacts) -> VolumeState | None:
    """This library's drive mounted beside its mount point ("U32 Shadow 1"), or None."""
    if db.library_id is None or os.path.ismount(library.mount_point):
        return None
    found = volume.probe(library, db.library_id)
    return found if found.available and found.found_at else None


def render_report(report: Report) -> str:
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
