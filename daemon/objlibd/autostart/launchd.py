"""launchd: the LaunchAgent objlibd runs as on macOS, and the launchctl calls that manage it.

The plist is built as a dict and rendered with plistlib (never pasted XML), so paths with
spaces, quotes or `&` survive. `launchd/com.objlib.objlibd.plist` in the repository is a
reference copy of the same dict; a test keeps the two from drifting apart.

Why the keys are what they are (watch-sync-notes §3):
- a LaunchAgent in `gui/<uid>`, not a LaunchDaemon: only the login session reaches the Keychain;
- KeepAlive {SuccessfulExit: false}: restart after a crash or an error exit, not after the
  clean exit 0 that SIGTERM produces (`objlibd stop`, `launchctl bootout`);
- StartOnMount is only a nudge (it fires for any mount); the daemon detects the drive itself;
- ExitTimeOut 30 s: the daemon drains within about 10 s of SIGTERM, launchd waits this long
  before SIGKILL; ThrottleInterval 30 s keeps a crash loop slow;
- stdout/stderr files hold crash output only (launchd never rotates them); the real log is
  the daemon's rotating JSON file; WorkingDirectory is the state dir, never the drive, so
  the job holds nothing open on the volume and cannot block an eject.

Every launchctl call goes through one injected `Runner` (argv list, no shell). The plan for a
command is a list of `Step`s built from what launchctl reports, then executed (or, with
--dry-run, printed) by `autostart.plan`; what every backend shares is `autostart.backend`.
"""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path
from typing import Any

from objlibd.autostart import plan
from objlibd.autostart.backend import ServiceBackend

__all__ = [
    "LABEL",
    "Launchd",
    "build_plist",
    "domain",
    "parse_pid",
    "plist_path",
    "render",
    "service_target",
]

LABEL = "com.objlib.objlibd"
THROTTLE_SECONDS = 30
PROCESS_TYPE = "Standard"  # Background would throttle hashing and uploads
STDOUT_NAME = "launchd.stdout.log"
STDERR_NAME = "launchd.stderr.log"
SAFE_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
LAUNCHCTL = "launchctl"


def build_plist(spec: plan.ServiceSpec, label: str = LABEL) -> dict[str, Any]:
    """Return the LaunchAgent as a plist dict (no secrets: the key stays in the Keychain)."""
    return {
        "Label": label,
        "ProgramArguments": spec.program_arguments(),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "StartOnMount": True,
        "ThrottleInterval": THROTTLE_SECONDS,
        "ExitTimeOut": plan.EXIT_TIMEOUT_SECONDS,
        "ProcessType": PROCESS_TYPE,
        "StandardOutPath": str(spec.log_dir / STDOUT_NAME),
        "StandardErrorPath": str(spec.log_dir / STDERR_NAME),
        "WorkingDirectory": str(spec.state_dir),
        "EnvironmentVariables": {
            "PATH": SAFE_PATH,
            "PYTHONUNBUFFERED": "1",  # crash output reaches the stderr file before exit
            "PYTHONFAULTHANDLER": "1",  # a hard crash still leaves a traceback there
        },
    }


def render(spec: plan.ServiceSpec, label: str = LABEL) -> bytes:
    """Return the LaunchAgent plist as XML bytes."""
    return plistlib.dumps(build_plist(spec, label), fmt=plistlib.FMT_XML, sort_keys=True)


def plist_path(home: Path, label: str = LABEL) -> Path:
    """Return where the LaunchAgent lives: ~/Library/LaunchAgents/<label>.plist."""
    return home / "Library" / "LaunchAgents" / f"{label}.plist"


def domain(uid: int) -> str:
    """Return the launchd domain of the user's login session."""
    return f"gui/{uid}"


def service_target(uid: int, label: str = LABEL) -> str:
    """Return the launchctl service target, gui/<uid>/<label>."""
    return f"{domain(uid)}/{label}"


def parse_pid(print_output: str) -> int | None:
    """Return the pid from `launchctl print` output, if it shows one (the output is not API)."""
    for line in print_output.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "pid" and value.strip().isdigit():
            return int(value.strip())
    return None


class Launchd(ServiceBackend):
    """Manage objlibd's LaunchAgent through launchctl (launchctl 2 syntax)."""

    name = "launchd"
    kind = "a LaunchAgent"
    unavailable = "launchctl is not available here ({why})"
    unavailable_hint = "launchd exists only on macOS; on Linux objlibd uses a systemd user unit"

    def __init__(self, spec: plan.ServiceSpec, runner: plan.Runner, label: str = LABEL) -> None:
        super().__init__(spec, runner, plist_path(spec.home, label))
        self.label = label
        self.target = service_target(spec.uid, label)

    def _run(self, *args: str, hint: str = "") -> plan.Run:
        return plan.Run((LAUNCHCTL, *args), hint)

    def _bootstrap(self) -> list[plan.Step]:
        # enable first: a `launchctl disable` left behind would make bootstrap fail
        hint = (
            f"check the plist with `plutil -lint {shlex.quote(str(self.path))}`; "
            f"see `launchctl print {self.target}`; if it is loaded already, "
            f"`launchctl bootout {self.target}` and retry"
        )
        return [
            self._run("enable", self.target),
            self._run("bootstrap", domain(self.spec.uid), str(self.path), hint=hint),
        ]

    def definition(self) -> bytes:
        """Return the plist `objlibd install` writes."""
        return render(self.spec, self.label)

    def status(self) -> plan.ServiceStatus:
        """Ask launchctl whether the agent is loaded (and its pid)."""
        result = self.runner([LAUNCHCTL, "print", self.target])
        installed = self.path.is_file()
        if result.returncode == plan.NOT_FOUND:
            return plan.ServiceStatus(
                self.name, False, installed, False, None, plan.first_line(result)
            )
        loaded = result.returncode == 0
        pid = parse_pid(result.stdout) if loaded else None
        if loaded:
            detail = f"loaded in {domain(self.spec.uid)}" + (f", pid {pid}" if pid else "")
        else:
            detail = f"not loaded in {domain(self.spec.uid)}"
        return plan.ServiceStatus(self.name, True, installed, loaded, pid, detail)

    def install_steps(self, *, dry_run: bool = False) -> list[plan.Step]:
        """Plan `objlibd install`: dirs, plist (if changed), and a (re)bootstrap when needed.

        With `dry_run` and no launchctl, plan as on a Mac where nothing is loaded yet.
        """
        status = self.status()
        steps, changed = self._install_files(
            available=status.available, why=status.detail, running=status.loaded,
            dry_run=dry_run, elsewhere="on a Mac install would:",
        )  # fmt: skip
        if status.loaded and changed:
            steps.append(self._run("bootout", self.target))
            steps.append(self._wait_drained())
        if changed or not status.loaded:
            steps.extend(self._bootstrap())
        return steps

    def uninstall_steps(self, *, purge: bool) -> list[plan.Step]:
        """Plan `objlibd uninstall`: bootout, remove the plist; state and logs only with purge."""
        status = self._require()
        steps: list[plan.Step] = []
        if status.loaded:
            steps.append(self._run("bootout", self.target))
            steps.append(self._wait_drained())
        if self.path.exists():
            steps.append(plan.RemovePath(self.path))
        return steps + self._purge(purge)

    def start_steps(self) -> list[plan.Step]:
        """Plan `objlibd start`: bootstrap if unloaded (RunAtLoad starts it), else kickstart."""
        status = self._require()
        if not status.loaded:
            self._require_installed()
            self._refuse_unmanaged()
            return self._bootstrap()
        return [self._run("kickstart", self.target)]

    def stop_steps(self) -> list[plan.Step]:
        """Plan `objlibd stop`: bootout (SIGTERM, then wait for the drain), else the pidfile."""
        status = self.status()
        why = f"{self.label} is not loaded" if status.available else status.detail
        return self._stop(self._run("bootout", self.target) if status.loaded else None, why)

    def restart_steps(self) -> list[plan.Step]:
        """Plan `objlibd restart`: kickstart -k (kill and start again), or start if unloaded."""
        status = self._require()
        if not status.loaded:
            return self.start_steps()
        return [self._run("kickstart", "-k", self.target)]

    def _require(self) -> plan.ServiceStatus:
        status = self.status()
        if not status.available:
            raise self._unavailable(status.detail)
        return status
