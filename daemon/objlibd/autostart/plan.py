"""The service plan launchd and systemd share: the runner, the spec, the steps, the executor.

A service command (`objlibd install`, `stop`, ...) is planned first and carried out second.
The manager (`objlibd.launchd`, `objlibd.systemd`) reads what launchctl/systemctl report and
returns a list of `Step`s built from a `ServiceSpec`; the `Executor` runs them in order,
echoing each command as `$ ...` so people learn what they can type themselves, or with
--dry-run only prints them. Every launchctl/systemctl call goes through one injected `Runner`
(argv list, no shell), so tests hand in fakes. Without a service manager, `stop` falls back to
SIGTERM through the daemon's pidfile.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from objlibd.errors import ServiceError
from objlibd.runtime import pidfile

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]
Echo = Callable[[str], None]
NOT_FOUND = 127
EXIT_TIMEOUT_SECONDS = 30  # SIGTERM to SIGKILL (launchd ExitTimeOut, systemd TimeoutStopSec)
STOP_WAIT_SECONDS = EXIT_TIMEOUT_SECONDS + 5  # by then the manager has killed it for sure


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` (no shell) and capture its output; a missing program is exit code 127."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, NOT_FOUND, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]}: timed out after 120 s")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """What a service definition needs: the interpreter, the config, the dirs, the user."""

    python: Path
    config_path: Path
    state_dir: Path
    log_dir: Path
    home: Path
    uid: int
    stop_timeout: float = STOP_WAIT_SECONDS

    def program_arguments(self) -> list[str]:
        """Return the daemon's argv: the stable interpreter path, never a resolved symlink.

        TCC grants Full Disk Access per binary path, so the path must survive upgrades
        (a venv's bin/python does; a versioned Cellar path would not).
        """
        return [str(self.python), "-m", "objlibd", "run", "--config", str(self.config_path)]

    @property
    def pidfile(self) -> Path:
        """Return the daemon's pidfile (objlibd.pidfile's format)."""
        return self.state_dir / pidfile.PIDFILE_NAME


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What the service manager says about objlibd."""

    manager: str
    available: bool  # the manager answers (launchctl exists, systemd --user runs)
    installed: bool  # the plist or unit file is in place
    loaded: bool  # bootstrapped (launchd) / enabled or active (systemd)
    pid: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class MakeDir:
    """Create a directory (and parents) if missing."""

    path: Path


@dataclass(frozen=True, slots=True)
class WriteFile:
    """Write a file atomically (mode 0644)."""

    path: Path
    content: bytes


@dataclass(frozen=True, slots=True)
class RemovePath:
    """Remove a file, or with `tree` a directory and everything in it."""

    path: Path
    tree: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """Run a launchctl/systemctl command; a non-zero exit stops the plan."""

    argv: tuple[str, ...]
    hint: str = ""


@dataclass(frozen=True, slots=True)
class WaitStopped:
    """Wait until no live daemon holds the pidfile (it drained and exited)."""

    pidfile: Path
    timeout: float


@dataclass(frozen=True, slots=True)
class Terminate:
    """SIGTERM the daemon a pidfile names (no service manager), then wait for it to exit."""

    owner: pidfile.Owner
    pidfile: Path
    timeout: float


@dataclass(frozen=True, slots=True)
class Note:
    """Tell the person something about the plan (printed in dry runs too)."""

    text: str


Step = MakeDir | WriteFile | RemovePath | Run | WaitStopped | Terminate | Note


def definition_steps(spec: ServiceSpec, path: Path, content: bytes) -> tuple[list[Step], bool]:
    """Plan the folders and the service definition file; say whether the file changes."""
    changed = _current_bytes(path) != content
    steps: list[Step] = [MakeDir(spec.state_dir), MakeDir(spec.log_dir), MakeDir(path.parent)]
    if changed:
        steps.append(WriteFile(path, content))
    return steps, changed


def _current_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def wait_step(spec: ServiceSpec) -> WaitStopped:
    """Return the step that waits for the daemon to drain after a stop."""
    return WaitStopped(spec.pidfile, spec.stop_timeout)


def stop_fallback_steps(spec: ServiceSpec, why: str) -> list[Step]:
    """Plan a stop without a service manager: SIGTERM the pid in the pidfile, if it lives."""
    owner = pidfile.live_owner(spec.pidfile)
    if owner is None:
        return [Note(f"{why}; no objlibd daemon is running for {spec.state_dir}")]
    return [
        Note(f"{why}; stopping the daemon through its pidfile {spec.pidfile}"),
        Terminate(owner, spec.pidfile, spec.stop_timeout),
    ]


def terminate_steps(spec: ServiceSpec) -> list[Step]:
    """Plan SIGTERM to a daemon still holding the pidfile (before its state is deleted)."""
    owner = pidfile.live_owner(spec.pidfile)
    return [] if owner is None else [Terminate(owner, spec.pidfile, spec.stop_timeout)]


def refuse_unmanaged_daemon(spec: ServiceSpec, manager: str) -> None:
    """Raise when a daemon runs outside the service manager: a second one would only fail."""
    owner = pidfile.live_owner(spec.pidfile)
    if owner is not None:
        raise ServiceError(
            f"objlibd is already running outside {manager} (pid {owner.pid})",
            hint="stop it first (`objlibd stop`, or Ctrl-C in its terminal), then run this again",
        )


def purge_steps(spec: ServiceSpec) -> list[Step]:
    """Plan removing the state and log dirs (refusing anything that looks like home or /)."""
    steps: list[Step] = []
    for path in (spec.state_dir, spec.log_dir):
        if path == Path(path.anchor) or path == spec.home or path in spec.home.parents:
            raise ServiceError(
                f"refusing to delete {path}: it is not an objlibd directory",
                hint="point [state] dir and [logs] dir at directories of their own",
            )
        if path.exists():
            steps.append(RemovePath(path, tree=True))
    return steps


def describe(step: Step) -> str:  # noqa: PLR0911 - one line per kind of step
    """Return the shell command equivalent to a step (what people can type themselves)."""
    match step:
        case MakeDir(path):
            return shlex.join(["mkdir", "-p", str(path)])
        case WriteFile(path, _):
            return f"write {shlex.quote(str(path))}"
        case RemovePath(path, tree):
            return shlex.join(["rm", "-rf" if tree else "-f", str(path)])
        case Run(argv, _):
            return shlex.join(argv)
        case WaitStopped(path, timeout):
            return f"wait up to {timeout:g} s for the daemon in {shlex.quote(str(path))} to exit"
        case Terminate(owner, _, _):
            return shlex.join(["kill", "-TERM", str(owner.pid)])
        case Note(text):
            return f"# {text}"


@dataclass
class Executor:
    """Carry out (or with dry_run, only print) a plan; every command is echoed as `$ ...`."""

    runner: Runner
    echo: Echo
    dry_run: bool = False
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def execute(self, steps: Sequence[Step]) -> None:
        """Run the steps in order; raise ServiceError at the first that fails."""
        for step in steps:
            if self.dry_run:
                self._preview(step)
            else:
                self._do(step)

    def _preview(self, step: Step) -> None:
        if isinstance(step, Note):
            self.echo(step.text)
        elif isinstance(step, WriteFile):
            self.echo(f"would write {step.path}:")
            self.echo(step.content.decode("utf-8").rstrip("\n"))
        elif isinstance(step, MakeDir) and step.path.is_dir():
            return
        else:
            self.echo(f"would run: {describe(step)}")

    def _do(self, step: Step) -> None:
        match step:
            case MakeDir(path):
                if not path.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    self.echo(f"created {path}")
            case WriteFile(path, content):
                _write_atomic(path, content)
                self.echo(f"wrote {path}")
            case RemovePath(path, tree):
                _remove(path, tree=tree)
                self.echo(f"removed {path}")
            case Run(argv, hint):
                self._run(list(argv), hint)
            case WaitStopped(path, timeout):
                self._wait(path, pidfile.live_owner(path), timeout)
            case Terminate(owner, path, timeout):
                self._terminate(owner, path, timeout)
            case Note(text):
                self.echo(text)

    def _run(self, argv: list[str], hint: str) -> None:
        self.echo(f"$ {shlex.join(argv)}")
        result = self.runner(argv)
        if result.returncode != 0:
            output = (result.stderr or result.stdout or "").strip() or "no output"
            raise ServiceError(
                f"`{shlex.join(argv)}` failed (exit {result.returncode}): {output}",
                hint=hint or "run the command yourself to see the full message",
            )

    def _terminate(self, owner: pidfile.Owner, path: Path, timeout: float) -> None:
        if not pidfile.is_alive(owner):
            return
        self.echo(f"$ kill -TERM {owner.pid}    # no service manager: the pid in {path}")
        try:
            os.kill(owner.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        except PermissionError:
            raise ServiceError(
                f"not allowed to signal objlibd (pid {owner.pid}): it runs as another user",
                hint="stop it as that user, or with sudo",
            ) from None
        self._wait(path, owner, timeout)

    def _wait(self, path: Path, owner: pidfile.Owner | None, timeout: float) -> None:
        if owner is None:
            return
        start = self.clock()
        while not exited(owner):
            if self.clock() - start >= timeout:
                raise ServiceError(
                    f"objlibd (pid {owner.pid}) did not exit within {timeout:g} s of SIGTERM",
                    hint="see `objlibd logs` for what it is stuck on; `kill -KILL "
                    f"{owner.pid}` ends it (the next start recovers from the state DB)",
                )
            self.sleep(0.1)
        self.echo(f"objlibd (pid {owner.pid}) stopped after {self.clock() - start:.1f} s")


def exited(owner: pidfile.Owner) -> bool:
    """Return True once the pidfile's process is gone (a zombie has exited too)."""
    if not pidfile.is_alive(owner):
        return True
    import psutil  # type: ignore[import-untyped]  # no stubs in the dev env

    try:
        return bool(psutil.Process(owner.pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def _write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(0o644)
    tmp.replace(path)


def _remove(path: Path, *, tree: bool) -> None:
    if tree and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def first_line(result: subprocess.CompletedProcess[str]) -> str:
    """Return the first line a command printed (stderr first), or its exit code."""
    text = (result.stderr or result.stdout or "").strip()
    return text.splitlines()[0] if text else f"exit code {result.returncode}"
