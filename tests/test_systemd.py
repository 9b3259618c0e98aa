"""systemd: the user unit objlibd installs on Linux, and the systemctl --user argv it runs.

`FakeSystemctl` plays a user manager through the injected runner (this machine may have
none); one test asks the real systemctl and checks the message when there is no manager,
and one has the real `systemd-analyze verify` read the unit.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from objlibd.autostart import systemd
from objlibd.autostart.plan import Executor, Note, ServiceSpec, Step, Terminate, run_command
from objlibd.autostart.systemd import Systemd
from objlibd.errors import ServiceError
from test_launchd import make_spec

UNIT = "objlibd.service"
NO_BUS = "Failed to connect to bus: No medium found"


class FakeSystemctl:
    """A `systemctl --user` stand-in: unit file state, active state, pid; records argv."""

    def __init__(self, *, available: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.available = available
        self.enabled = False
        self.active = False
        self.pid = 777

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if not self.available:
            return subprocess.CompletedProcess(argv, 1, "", NO_BUS + "\n")
        verb = argv[2]
        if verb == "show":
            state = "enabled" if self.enabled else "disabled"
            text = (
                f"LoadState=loaded\nActiveState={'active' if self.active else 'inactive'}\n"
                f"UnitFileState={state}\nMainPID={self.pid if self.active else 0}\n"
            )
            return subprocess.CompletedProcess(argv, 0, text, "")
        if verb == "enable":
            self.enabled = True
        elif verb in ("start", "restart"):
            self.active = True
        elif verb == "stop":
            self.active = False
        elif verb == "disable":
            self.enabled = False
            self.active = self.active and "--now" not in argv
        return subprocess.CompletedProcess(argv, 0, "", "")

    def mutating(self) -> list[list[str]]:
        """Return the calls that change something (everything but `show`)."""
        return [argv for argv in self.calls if argv[2] != "show"]


def ctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


def execute(steps: list[Step], runner: object, *, dry_run: bool = False) -> list[str]:
    lines: list[str] = []
    Executor(runner, lines.append, dry_run=dry_run).execute(steps)  # type: ignore[arg-type]
    return lines


def manager(spec: ServiceSpec, fake: FakeSystemctl) -> Systemd:
    return Systemd(spec, fake, {"XDG_CONFIG_HOME": str(spec.home / ".config")})


def exec_start_argv(unit_text: str) -> list[str]:
    """Read ExecStart back the way systemd does (quotes, escapes, %% and $$)."""
    line = next(x for x in unit_text.splitlines() if x.startswith("ExecStart="))
    words = shlex.split(line.removeprefix("ExecStart="))
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


# -- the unit -------------------------------------------------------------------------------------


def test_unit_restarts_on_failure_and_stops_with_sigterm_within_a_timeout(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)

    text = systemd.render_unit(spec)

    assert "\nRestart=on-failure\n" in text
    assert "\nKillSignal=SIGTERM\n" in text
    assert "\nTimeoutStopSec=30\n" in text
    assert "\nType=simple\n" in text
    assert "\nWantedBy=default.target\n" in text
    assert f"\nWorkingDirectory={spec.state_dir}\n" in text
    assert "RequiresMountsFor" not in text  # the daemon must start without the drive


def test_exec_start_round_trips_paths_with_spaces_percent_dollar_and_quotes(tmp_path: Path) -> None:
    odd = tmp_path / 'U32 Shadow 100% $HOME "x" back\\slash'
    spec = make_spec(tmp_path, config_path=odd / "objlibd.toml")

    argv = exec_start_argv(systemd.render_unit(spec))

    assert argv == spec.program_arguments()


def test_unit_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "objlibd-canary-THIS-IS-NOT-A-REAL-KEY-0123456789")

    text = systemd.render_unit(make_spec(tmp_path))

    assert "canary" not in text and "GEMINI" not in text


def test_a_line_break_in_a_path_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, config_path=tmp_path / "a\nb.toml")

    with pytest.raises(ServiceError, match="line break"):
        systemd.render_unit(spec)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    odd = tmp_path / "U32 Shadow 100%"
    spec = make_spec(tmp_path, python=Path(sys.executable), state_dir=odd / "state",
                     config_path=odd / "objlibd.toml")  # fmt: skip
    spec.state_dir.mkdir(parents=True)
    unit = tmp_path / UNIT
    unit.write_text(systemd.render_unit(spec))

    result = run_command(["systemd-analyze", "verify", str(unit)])

    assert result.returncode == 0, result.stderr


def test_unit_dir_follows_xdg_config_home(tmp_path: Path) -> None:
    assert systemd.unit_dir(tmp_path, {}) == tmp_path / ".config" / "systemd" / "user"
    assert systemd.unit_dir(tmp_path, {"XDG_CONFIG_HOME": "/x y"}) == Path("/x y/systemd/user")


# -- install / uninstall --------------------------------------------------------------------------


def test_install_writes_the_unit_reloads_enables_and_starts(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeSystemctl()
    unit = manager(spec, fake)

    out = execute(unit.install_steps(), fake)

    assert unit.path == spec.home / ".config" / "systemd" / "user" / UNIT
    assert unit.path.read_text() == systemd.render_unit(spec)
    assert fake.mutating() == [ctl("daemon-reload"), ctl("enable", UNIT), ctl("start", UNIT)]
    assert "$ systemctl --user enable objlibd.service" in out


def test_install_twice_runs_nothing_and_install_uninstall_install_repeats(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeSystemctl()
    unit = manager(spec, fake)
    execute(unit.install_steps(), fake)
    first = (unit.path.read_bytes(), fake.mutating())
    fake.calls.clear()

    execute(unit.install_steps(), fake)
    twice = fake.mutating()
    execute(unit.uninstall_steps(purge=False), fake)
    uninstalled = fake.mutating()
    fake.calls.clear()
    execute(unit.install_steps(), fake)

    assert twice == []
    assert uninstalled == [ctl("disable", "--now", UNIT), ctl("daemon-reload")]
    assert (unit.path.read_bytes(), fake.mutating()) == first


def test_a_changed_unit_is_reloaded_and_restarted(tmp_path: Path) -> None:
    fake = FakeSystemctl()
    execute(manager(make_spec(tmp_path), fake).install_steps(), fake)
    fake.calls.clear()
    moved = manager(make_spec(tmp_path, python=tmp_path / "other" / "python"), fake)

    execute(moved.install_steps(), fake)

    assert fake.mutating() == [ctl("daemon-reload"), ctl("restart", UNIT)]


def test_start_stop_restart_through_systemctl(tmp_path: Path) -> None:
    fake = FakeSystemctl()
    unit = manager(make_spec(tmp_path), fake)
    execute(unit.install_steps(), fake)
    fake.calls.clear()

    execute(unit.restart_steps(), fake)
    out = execute(unit.stop_steps(), fake)
    execute(unit.start_steps(), fake)

    assert fake.mutating() == [ctl("restart", UNIT), ctl("stop", UNIT), ctl("start", UNIT)]
    assert out == ["$ systemctl --user stop objlibd.service"]


# -- no systemd user manager ----------------------------------------------------------------------


def test_without_a_user_manager_every_command_says_so_clearly(tmp_path: Path) -> None:
    unit = manager(make_spec(tmp_path), FakeSystemctl(available=False))

    for plan in (unit.install_steps, unit.start_steps, unit.restart_steps):
        with pytest.raises(ServiceError) as caught:
            plan()
        assert "systemd user services are not available here" in caught.value.message
        assert NO_BUS in caught.value.message
        assert "objlibd run" in caught.value.hint and "enable-linger" in caught.value.hint


def test_without_a_user_manager_dry_run_shows_the_plan_after_a_note(tmp_path: Path) -> None:
    fake = FakeSystemctl(available=False)
    unit = manager(make_spec(tmp_path), fake)

    out = execute(unit.install_steps(dry_run=True), fake, dry_run=True)

    assert "not available here" in out[0]
    assert f"would write {unit.path}:" in out
    assert "would run: systemctl --user start objlibd.service" in out
    assert not unit.path.exists()


def test_without_a_user_manager_stop_falls_back_to_the_pidfile(tmp_path: Path) -> None:
    steps = manager(make_spec(tmp_path), FakeSystemctl(available=False)).stop_steps()

    assert len(steps) == 1 and isinstance(steps[0], Note)
    assert "no objlibd daemon is running" in steps[0].text


def test_stop_without_systemd_sends_sigterm_to_the_pidfile_owner_and_waits(tmp_path: Path) -> None:
    """A stand-in that holds the pidfile like the daemon and exits 0 on SIGTERM."""
    spec = make_spec(tmp_path, stop_timeout=10.0)
    spec.state_dir.mkdir(parents=True)
    child = start_stand_in(spec.state_dir)
    try:
        steps = manager(spec, FakeSystemctl(available=False)).stop_steps()
        out = execute(steps, FakeSystemctl(available=False))
        code = child.wait(timeout=5)
    finally:
        child.kill()
        child.wait()

    assert isinstance(steps[1], Terminate) and steps[1].owner.pid == child.pid
    assert out[1].startswith(f"$ kill -TERM {child.pid}")
    assert out[-1].startswith(f"objlibd (pid {child.pid}) stopped after")
    assert code == 0


def test_stop_says_so_when_the_daemon_ignores_sigterm(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, stop_timeout=0.5)
    spec.state_dir.mkdir(parents=True)
    child = start_stand_in(spec.state_dir, ignore_term=True)
    try:
        with pytest.raises(ServiceError, match=r"did not exit within 0.5 s") as caught:
            execute(manager(spec, FakeSystemctl(available=False)).stop_steps(), None)
    finally:
        child.kill()
        child.wait()

    assert f"kill -KILL {child.pid}" in caught.value.hint


@pytest.mark.skipif(
    run_command(["systemctl", "--user", "show-environment"]).returncode == 0,
    reason="this machine has a systemd user manager",
)
def test_the_real_systemctl_without_a_user_manager_is_reported_plainly(tmp_path: Path) -> None:
    unit = Systemd(make_spec(tmp_path), run_command, {})

    with pytest.raises(ServiceError, match="systemd user services are not available here"):
        unit.install_steps()


STAND_IN = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    from objlibd.runtime.pidfile import PidFile
    lock = PidFile(Path(sys.argv[1]) / "objlibd.pid")
    lock.acquire()
    stop = []
    if sys.argv[2] == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        signal.pause()  # until SIGTERM (or SIGKILL, when SIGTERM is ignored)
    lock.release()
    sys.exit(0)
    """
)


def start_stand_in(state_dir: Path, *, ignore_term: bool = False) -> subprocess.Popen[str]:
    """Start a process that holds the pidfile like the daemon does; return once it does."""
    child = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(state_dir), "ignore" if ignore_term else "drain"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child
