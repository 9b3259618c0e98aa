"""What every service backend shares: the definition file, the install preamble, stop's
pidfile fallback, uninstall's purge, and the "not available" / "not installed" errors.

A backend (`launchd.Launchd`, `systemd.Systemd`) says only what differs: where its file
lives, what it contains, how its manager reports state and which commands it runs. The
steps themselves and the executor are `plan`'s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from objlibd.autostart.plan import (
    Note,
    Run,
    Runner,
    ServiceSpec,
    ServiceStatus,
    Step,
    definition_steps,
    purge_steps,
    refuse_unmanaged_daemon,
    stop_fallback_steps,
    terminate_steps,
    wait_step,
)
from objlibd.errors import ServiceError


class ServiceBackend(ABC):
    """One OS's service manager, planning objlibd's service commands as `Step`s."""

    name: str  # the manager, as people know it ("launchd", "systemd")
    kind: str  # what objlibd is installed as ("a LaunchAgent")
    unavailable: str  # why nothing works here; "{why}" is the manager's own answer
    unavailable_hint: str

    def __init__(self, spec: ServiceSpec, runner: Runner, path: Path) -> None:
        self.spec = spec
        self.runner = runner
        self.path = path  # the definition file `objlibd install` writes

    @abstractmethod
    def definition(self) -> bytes:
        """Return the definition file `objlibd install` writes."""

    @abstractmethod
    def status(self) -> ServiceStatus:
        """Ask the manager about objlibd."""

    def _install_files(
        self, *, available: bool, why: str, running: bool, dry_run: bool, elsewhere: str
    ) -> tuple[list[Step], bool]:
        """Plan install up to the manager's own commands: dirs and the definition file.

        Without a manager, raise, or with `dry_run` say so and plan as `elsewhere` describes.
        Refuse while a daemon runs outside the manager. Return the steps and whether the
        definition changes.
        """
        notes: list[Step] = []
        if not available:
            if not dry_run:
                raise self._unavailable(why)
            notes.append(Note(f"{self._unavailable(why).message}; {elsewhere}"))
        if not running:
            self._refuse_unmanaged()
        files, changed = definition_steps(self.spec, self.path, self.definition())
        return [*notes, *files], changed

    def _stop(self, stop: Run | None, why: str) -> list[Step]:
        """Plan a stop: the manager's `stop` and the wait for the drain, else the pidfile."""
        if stop is not None:
            return [stop, self._wait_drained()]
        return stop_fallback_steps(self.spec, why)

    def _refuse_unmanaged(self) -> None:
        refuse_unmanaged_daemon(self.spec, self.name)

    def _wait_drained(self) -> Step:
        return wait_step(self.spec)

    def _purge(self, purge: bool) -> list[Step]:
        """Plan uninstall's purge: SIGTERM a daemon still running, then state and logs."""
        return [*terminate_steps(self.spec), *purge_steps(self.spec)] if purge else []

    def _unavailable(self, why: str) -> ServiceError:
        return ServiceError(self.unavailable.format(why=why), hint=self.unavailable_hint)

    def _require_installed(self) -> None:
        if not self.path.is_file():
            raise ServiceError(
                f"objlibd is not installed as {self.kind} ({self.path} does not exist)",
                hint="run `objlibd install` first",
            )
