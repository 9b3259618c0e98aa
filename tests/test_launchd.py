"""launchd: the plist objlibd installs, and the exact launchctl argv each command runs.

launchctl does not exist on Linux, so `FakeLaunchctl` plays it through the injected runner:
it remembers whether the agent is loaded and records every argv. The macOS-only test at the
end lints the real plist with plutil and bootstraps it into the real gui domain.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from objlibd.autostart import launchd
from objlibd.autostart.launchd import Launchd
from objlibd.autostart.plan import Executor, Note, ServiceSpec, Step, run_command
from objlibd.errors import ServiceError

REPO = Path(__file__).resolve().parents[1]
UID = 501


class FakeLaunchctl:
    """A launchctl stand-in: tracks load state per target and records every argv."""

    def __init__(self, *, loaded: bool = False, pid: int = 4242, missing: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.loaded = loaded
        self.pid = pid
        self.missing = missing

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if self.missing:
            return subprocess.CompletedProcess(argv, 127, "", "launchctl: command not found")
        verb = argv[1]
        if verb == "print":
            if self.loaded:
                text = f"{argv[2]} = {{\n\tstate = running\n\tpid = {self.pid}\n}}\n"
                return subprocess.CompletedProcess(argv, 0, text, "")
            return subprocess.CompletedProcess(argv, 113, "", "Could not find service")
        if verb == "bootstrap":
            self.loaded = True
        elif verb == "bootout":
            self.loaded = False
        return subprocess.CompletedProcess(argv, 0, "", "")

    def mutating(self) -> list[list[str]]:
        """Return the calls that change something (everything but `print`)."""
        return [argv for argv in self.calls if argv[1] != "print"]


def make_spec(tmp_path: Path, **changes: object) -> ServiceSpec:
    """Return a spec whose every path has spaces in it, like the real drive's."""
    home = tmp_path / "Home Dir"
    values: dict[str, object] = {
        "python": tmp_path / "App Support" / "objlibd venv" / "bin" / "python",
        "config_path": home / "Library" / "Application Support" / "objlibd" / "objlibd.toml",
        "state_dir": home / "Library" / "Application Support" / "objlibd",
        "log_dir": home / "Library" / "Logs" / "objlibd",
        "home": home,
        "uid": UID,
        "stop_timeout": 2.0,
    }
    values.update(changes)
    return ServiceSpec(**values)  # type: ignore[arg-type]


def execute(steps: list[Step], runner: FakeLaunchctl, *, dry_run: bool = False) -> list[str]:
    """Run a plan through the executor; return what it printed."""
    lines: list[str] = []
    Executor(runner, lines.append, dry_run=dry_run).execute(steps)
    return lines


# -- the plist ----------------------------------------------------------------------------------


def test_rendered_plist_parses_and_has_every_key_with_the_right_type(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)

    plist = plistlib.loads(launchd.render(spec))

    assert plist["Label"] == "com.objlib.objlibd"
    assert plist["ProgramArguments"] == [
        str(spec.python), "-m", "objlibd", "run", "--config", str(spec.config_path),
    ]  # fmt: skip
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StartOnMount"] is True
    assert type(plist["ThrottleInterval"]) is int and plist["ThrottleInterval"] >= 10
    assert type(plist["ExitTimeOut"]) is int and plist["ExitTimeOut"] >= 15
    assert plist["ProcessType"] in ("Standard", "Interactive", "Adaptive", "Background")
    assert plist["StandardOutPath"] == str(spec.log_dir / "launchd.stdout.log")
    assert plist["StandardErrorPath"] == str(spec.log_dir / "launchd.stderr.log")
    assert plist["WorkingDirectory"] == str(spec.state_dir)
    assert all(isinstance(v, str) for v in plist["EnvironmentVariables"].values())


def test_keep_alive_restarts_after_a_crash_but_not_after_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM makes the daemon exit 0: SuccessfulExit=false leaves it stopped then."""
    plist = launchd.build_plist(make_spec(tmp_path))

    assert plist["KeepAlive"] == {"SuccessfulExit": False}


def test_paths_with_spaces_quotes_and_markup_survive_rendering(tmp_path: Path) -> None:
    odd = tmp_path / 'U32 Shadow & "Co" <lib> café'
    spec = make_spec(tmp_path, config_path=odd / "objlibd.toml", state_dir=odd / "state")

    xml = launchd.render(spec)
    plist = plistlib.loads(xml)

    assert plist["ProgramArguments"][-1] == str(odd / "objlibd.toml")
    assert plist["WorkingDirectory"] == str(odd / "state")
    assert b"&amp;" in xml and b"&lt;lib&gt;" in xml


def test_plist_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "objlibd-canary-THIS-IS-NOT-A-REAL-KEY-0123456789"
    monkeypatch.setenv("GEMINI_API_KEY", secret)

    xml = launchd.render(make_spec(tmp_path))
    env = plistlib.loads(xml)["EnvironmentVariables"]

    assert secret.encode() not in xml
    assert b"GEMINI" not in xml
    assert not [k for k in env if any(w in k.upper() for w in ("KEY", "TOKEN", "SECRET"))]


def test_the_reference_template_matches_the_code() -> None:
    """launchd/com.objlib.objlibd.plist documents the dict; drift fails here."""
    template = plistlib.loads((REPO / "launchd" / "com.objlib.objlibd.plist").read_bytes())
    placeholders = ServiceSpec(
        Path("@PYTHON@"), Path("@CONFIG@"), Path("@STATE_DIR@"), Path("@LOG_DIR@"), Path("/"), 0
    )

    assert template == launchd.build_plist(placeholders)


def test_parse_pid_reads_launchctl_print() -> None:
    text = "gui/501/com.objlib.objlibd = {\n\tactive count = 1\n\tpid = 812\n\tstate = running\n}"

    assert launchd.parse_pid(text) == 812
    assert launchd.parse_pid("state = not running") is None


# -- install / uninstall --------------------------------------------------------------------------


def test_install_writes_the_plist_makes_the_dirs_and_bootstraps_into_gui(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeLaunchctl()
    agent = Launchd(spec, fake)

    out = execute(agent.install_steps(), fake)

    plist = spec.home / "Library" / "LaunchAgents" / "com.objlib.objlibd.plist"
    assert plist.read_bytes() == launchd.render(spec)
    assert spec.state_dir.is_dir() and spec.log_dir.is_dir()
    assert fake.calls == [
        ["launchctl", "print", "gui/501/com.objlib.objlibd"],
        ["launchctl", "enable", "gui/501/com.objlib.objlibd"],
        ["launchctl", "bootstrap", "gui/501", str(plist)],
    ]
    assert f"$ launchctl bootstrap gui/501 '{plist}'" in out


def test_installing_twice_changes_nothing_and_runs_nothing(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeLaunchctl()
    agent = Launchd(spec, fake)
    execute(agent.install_steps(), fake)
    before = agent.path.stat().st_mtime_ns
    fake.calls.clear()

    steps = agent.install_steps()
    execute(steps, fake)

    assert agent.path.stat().st_mtime_ns == before
    assert fake.mutating() == []


def test_install_uninstall_install_repeats_the_same_files_and_argv(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeLaunchctl()
    agent = Launchd(spec, fake)

    rounds = []
    for _ in range(2):
        fake.calls.clear()
        execute(agent.install_steps(), fake)
        installed = agent.path.read_bytes()
        install_calls = list(fake.calls)
        fake.calls.clear()
        execute(agent.uninstall_steps(purge=False), fake)
        rounds.append((installed, install_calls, list(fake.calls), agent.path.exists()))

    assert rounds[0] == rounds[1]
    assert rounds[0][2] == [
        ["launchctl", "print", "gui/501/com.objlib.objlibd"],
        ["launchctl", "bootout", "gui/501/com.objlib.objlibd"],
    ]
    assert rounds[0][3] is False


def test_install_with_a_changed_plist_reloads_the_agent(tmp_path: Path) -> None:
    fake = FakeLaunchctl()
    execute(Launchd(make_spec(tmp_path), fake).install_steps(), fake)
    moved = Launchd(make_spec(tmp_path, python=tmp_path / "new venv" / "bin" / "python"), fake)
    fake.calls.clear()

    execute(moved.install_steps(), fake)

    assert fake.mutating() == [
        ["launchctl", "bootout", "gui/501/com.objlib.objlibd"],
        ["launchctl", "enable", "gui/501/com.objlib.objlibd"],
        ["launchctl", "bootstrap", "gui/501", str(moved.path)],
    ]
    assert plistlib.loads(moved.path.read_bytes())["ProgramArguments"][0].startswith(
        str(tmp_path / "new venv")
    )


def test_uninstall_keeps_state_and_logs_and_purge_removes_them(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeLaunchctl()
    agent = Launchd(spec, fake)
    execute(agent.install_steps(), fake)
    (spec.state_dir / "objlibd.db").write_text("db")

    execute(agent.uninstall_steps(purge=False), fake)
    kept = spec.state_dir.exists() and spec.log_dir.exists()
    execute(agent.uninstall_steps(purge=True), fake)

    assert kept
    assert not agent.path.exists()
    assert not spec.state_dir.exists() and not spec.log_dir.exists()
    assert spec.home.is_dir()


def test_purge_refuses_to_delete_home(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, state_dir=tmp_path / "Home Dir")

    with pytest.raises(ServiceError, match="refusing to delete"):
        Launchd(spec, FakeLaunchctl()).uninstall_steps(purge=True)


def test_dry_run_prints_the_plist_and_the_commands_and_changes_nothing(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    fake = FakeLaunchctl()
    agent = Launchd(spec, fake)

    out = "\n".join(execute(agent.install_steps(dry_run=True), fake, dry_run=True))

    assert not agent.path.exists() and not spec.state_dir.exists()
    assert fake.mutating() == []
    assert f"would write {agent.path}:" in out
    assert "<key>ProgramArguments</key>" in out
    assert f"would run: launchctl bootstrap gui/501 '{agent.path}'" in out


def test_without_launchctl_install_says_so_and_dry_run_still_shows_the_plan(tmp_path: Path) -> None:
    agent = Launchd(make_spec(tmp_path), FakeLaunchctl(missing=True))

    with pytest.raises(ServiceError, match="launchctl is not available here") as caught:
        agent.install_steps()
    steps = agent.install_steps(dry_run=True)

    assert "macOS" in caught.value.hint
    assert isinstance(steps[0], Note)


# -- start / stop / restart -----------------------------------------------------------------------


def test_start_stop_restart_map_to_kickstart_bootout_and_kickstart_k(tmp_path: Path) -> None:
    fake = FakeLaunchctl()
    agent = Launchd(make_spec(tmp_path), fake)
    execute(agent.install_steps(), fake)
    fake.calls.clear()

    execute(agent.start_steps(), fake)
    execute(agent.restart_steps(), fake)
    out = execute(agent.stop_steps(), fake)

    target = "gui/501/com.objlib.objlibd"
    assert fake.mutating() == [
        ["launchctl", "kickstart", target],
        ["launchctl", "kickstart", "-k", target],
        ["launchctl", "bootout", target],
    ]
    assert out == [f"$ launchctl bootout {target}"]


def test_start_after_stop_bootstraps_again(tmp_path: Path) -> None:
    fake = FakeLaunchctl()
    agent = Launchd(make_spec(tmp_path), fake)
    execute(agent.install_steps(), fake)
    execute(agent.stop_steps(), fake)
    fake.calls.clear()

    execute(agent.start_steps(), fake)

    assert fake.mutating() == [
        ["launchctl", "enable", "gui/501/com.objlib.objlibd"],
        ["launchctl", "bootstrap", "gui/501", str(agent.path)],
    ]


def test_start_before_install_says_to_install(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="not installed") as caught:
        Launchd(make_spec(tmp_path), FakeLaunchctl()).start_steps()

    assert "objlibd install" in caught.value.hint


def test_a_failing_launchctl_stops_the_plan_with_its_message(tmp_path: Path) -> None:
    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        if argv[1] == "bootstrap":
            return subprocess.CompletedProcess(
                argv, 5, "", "Bootstrap failed: 5: Input/output error"
            )
        return FakeLaunchctl()(argv)

    agent = Launchd(make_spec(tmp_path), runner)

    with pytest.raises(ServiceError, match="Input/output error") as caught:
        Executor(runner, lambda _line: None).execute(agent.install_steps())

    assert "plutil -lint" in caught.value.hint


# -- on a real Mac --------------------------------------------------------------------------------


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="needs macOS (plutil, launchctl)")
def test_on_macos_plutil_accepts_the_plist_and_launchctl_bootstraps_it(tmp_path: Path) -> None:
    label = f"com.objlib.objlibd.pytest-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "objlibd.toml"
    config.write_text(
        f'[library]\nmount_point = "/"\nroot = "{tmp_path / "library"}"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n[logs]\ndir = "{tmp_path / "logs"}"\n'
    )
    (tmp_path / "library").mkdir()
    spec = make_spec(tmp_path, python=Path(sys.executable), config_path=config,
                     state_dir=tmp_path / "state", log_dir=tmp_path / "logs",
                     uid=os.getuid(), stop_timeout=40.0)  # fmt: skip
    agent = Launchd(spec, run_command, label=label)
    try:
        Executor(run_command, print).execute(agent.install_steps())
        lint = run_command(["plutil", "-lint", str(agent.path)])
        status = agent.status()
    finally:
        Executor(run_command, print).execute(agent.uninstall_steps(purge=False))

    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert status.loaded
    assert not agent.status().loaded
