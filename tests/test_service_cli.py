"""The service commands as people type them: install, uninstall, start, stop, restart,
doctor and key.

Handlers run through `register(subparsers, context=...)` with a `ServiceContext` whose
runner, platform and keychain are fakes (launchctl and the Keychain do not exist here).
The end-to-end stop test runs the real daemon and the real `objlibd stop` as subprocesses.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from daemon_fixtures import DaemonProcess, Drive, objlibd, write_config
from objlibd.autostart.plan import run_command
from objlibd.cli import main
from objlibd.cli import service as service_cli
from objlibd.cli.service import ServiceContext
from objlibd.errors import ConfigError, CredentialsMissingError, ServiceError
from test_doctor import SECRET, FakeKeyStore, NoKeychain
from test_launchd import FakeLaunchctl
from test_systemd import FakeSystemctl

TARGET = "gui/501/com.objlib.objlibd"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Machine:
    """A ServiceContext with fakes, plus a config whose every path has a space in it."""

    def __init__(self, tmp_path: Path, platform: str = "darwin") -> None:
        self.home = tmp_path / "Home Dir"
        self.launchctl = FakeLaunchctl()
        self.systemctl = FakeSystemctl()
        self.keystore = FakeKeyStore()
        self.environ: dict[str, str] = {"GEMINI_API_KEY": SECRET}
        self.stdin: io.StringIO = TTY()
        self.prompts: list[str] = []
        self.secret_typed = SECRET
        self.platform = platform
        support = self.home / "Library" / "Application Support" / "objlibd"
        support.mkdir(parents=True)
        self.config = write_config(
            support / "objlibd.toml", tmp_path / "Volumes" / "U32 Shadow", support / "state",
            self.home / "Library" / "Logs" / "objlibd",
        )  # fmt: skip
        self.state_dir = support / "state"
        self.log_dir = self.home / "Library" / "Logs" / "objlibd"
        self.plist = self.home / "Library" / "LaunchAgents" / "com.objlib.objlibd.plist"

    def context(self) -> ServiceContext:
        def read_secret(prompt: str) -> str:
            self.prompts.append(prompt)
            return self.secret_typed

        return ServiceContext(
            platform=self.platform,
            runner=self.launchctl if self.platform == "darwin" else self.systemctl,
            home=self.home,
            uid=501,
            python=Path("/Users/me/objlibd venv/bin/python"),
            environ=self.environ,
            keystore=lambda: self.keystore,
            read_secret=read_secret,
            stdin=lambda: self.stdin,
            stop_timeout=2.0,
        )

    def run(self, *argv: str) -> int:
        parser = argparse.ArgumentParser(prog="objlibd")
        service_cli.register(parser.add_subparsers(required=True), context=self.context)
        if argv[0] != "key":
            argv = (*argv, "--config", str(self.config))
        args = parser.parse_args(argv)
        return int(args.handler(args))


@pytest.fixture
def mac(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    return (captured.out + captured.err).splitlines()


# -- install / uninstall on a Mac (fake launchctl) -------------------------------------------------


def test_install_prints_the_launchctl_commands_and_the_binary_to_grant(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = mac.run("install")
    out = lines(capsys)

    assert code == 0
    assert f"$ launchctl enable {TARGET}" in out
    assert f"$ launchctl bootstrap gui/501 '{mac.plist}'" in out
    assert f"wrote {mac.plist}" in out
    assert any("Give /Users/me/objlibd venv/bin/python Full Disk Access" in x for x in out)
    assert mac.state_dir.is_dir() and mac.log_dir.is_dir()


def test_install_never_puts_the_key_in_the_plist_or_the_output(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    mac.run("install", "--dry-run")
    dry = capsys.readouterr().out
    mac.run("install")
    out = capsys.readouterr().out

    assert SECRET not in dry + out
    assert SECRET.encode() not in mac.plist.read_bytes()


def test_install_is_idempotent_and_survives_an_uninstall_in_between(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    mac.run("install")
    first = (mac.plist.read_bytes(), mac.launchctl.mutating())
    mac.launchctl.calls.clear()
    capsys.readouterr()

    mac.run("install")
    again = lines(capsys)
    again_calls = mac.launchctl.mutating()
    mac.run("uninstall")
    uninstalled = lines(capsys)
    mac.launchctl.calls.clear()
    mac.run("install")

    assert again_calls == []
    assert any("already installed and loaded" in x for x in again)
    assert f"$ launchctl bootout {TARGET}" in uninstalled
    assert any(x.startswith("kept state") for x in uninstalled)
    assert (mac.plist.read_bytes(), mac.launchctl.mutating()) == first


def test_dry_run_prints_the_plist_and_commands_and_touches_nothing(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = mac.run("install", "--dry-run")
    out = capsys.readouterr().out

    assert code == 0
    assert not mac.plist.exists() and not mac.state_dir.exists()
    assert mac.launchctl.mutating() == []
    assert "<string>/Users/me/objlibd venv/bin/python</string>" in out
    assert f"would run: launchctl bootstrap gui/501 '{mac.plist}'" in out


def test_uninstall_purge_removes_state_and_logs_and_dry_run_keeps_them(mac: Machine) -> None:
    mac.run("install")
    (mac.state_dir / "objlibd.db").write_text("db")

    mac.run("uninstall", "--purge", "--dry-run")
    kept = mac.state_dir.exists() and mac.plist.exists()
    mac.run("uninstall", "--purge")

    assert kept
    assert not mac.plist.exists() and not mac.state_dir.exists() and not mac.log_dir.exists()
    assert mac.config.exists()  # the person's config is theirs


def test_uninstall_works_with_a_broken_config_but_purge_refuses(mac: Machine) -> None:
    mac.run("install")
    mac.config.write_text("not toml [")

    with pytest.raises(ConfigError):
        mac.run("uninstall", "--purge")
    code = mac.run("uninstall")

    assert code == 0 and not mac.plist.exists()


def test_start_stop_restart_print_the_launchctl_equivalents(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    mac.run("install")
    capsys.readouterr()

    codes = [mac.run("restart"), mac.run("stop"), mac.run("start"), mac.run("start")]
    out = lines(capsys)

    assert codes == [0, 0, 0, 0]
    assert out == [
        f"$ launchctl kickstart -k {TARGET}",
        f"$ launchctl bootout {TARGET}",
        f"$ launchctl enable {TARGET}",
        f"$ launchctl bootstrap gui/501 '{mac.plist}'",
        f"$ launchctl kickstart {TARGET}",
    ]


def test_relative_state_dir_is_refused_for_a_service(mac: Machine) -> None:
    text = mac.config.read_text()
    mac.config.write_text(text.replace(f'dir = "{mac.state_dir}"', 'dir = "state"'))

    with pytest.raises(ConfigError, match="must be absolute for a service"):
        mac.run("install")


# -- Linux (fake and real systemctl) ---------------------------------------------------------------


def test_on_linux_the_same_commands_drive_a_user_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = Machine(tmp_path, platform="linux")
    box.environ["XDG_CONFIG_HOME"] = str(box.home / ".config")

    box.run("install")
    box.run("stop")
    out = lines(capsys)

    unit = box.home / ".config" / "systemd" / "user" / "objlibd.service"
    assert unit.is_file() and SECRET not in unit.read_text()
    assert "$ systemctl --user enable objlibd.service" in out
    assert "$ systemctl --user stop objlibd.service" in out


def test_on_linux_without_a_user_manager_install_says_so(tmp_path: Path) -> None:
    box = Machine(tmp_path, platform="linux")
    box.systemctl.available = False

    with pytest.raises(ServiceError, match="systemd user services are not available here"):
        box.run("install")


@pytest.mark.skipif(
    sys.platform == "darwin"
    or run_command(["systemctl", "--user", "show-environment"]).returncode == 0,
    reason="needs Linux without a systemd user manager",
)
def test_the_real_cli_without_systemd_exits_1_with_message_and_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "c.toml", tmp_path / "U32 Shadow", tmp_path / "s", tmp_path / "l"
    )

    code = main(["install", "--config", str(config)])
    err = capsys.readouterr().err

    assert code == 1
    assert err.startswith("objlibd: systemd user services are not available here")
    assert "\n  hint: " in err and "objlibd run" in err


# -- doctor ------------------------------------------------------------------------------------------


def test_doctor_json_has_stable_keys_and_exit_code_follows_fail(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = mac.run("doctor", "--json", "--offline")
    report: dict[str, Any] = json.loads(capsys.readouterr().out)

    assert set(report) == {"config", "ok", "checks"}
    assert all(set(c) == {"name", "level", "detail", "fix"} for c in report["checks"])
    assert code == (0 if report["ok"] else 1)
    assert SECRET not in json.dumps(report)


def test_doctor_with_a_broken_config_exits_1(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    mac.config.write_text("[nope]\n")

    code = mac.run("doctor")
    out = capsys.readouterr().out

    assert code == 1
    assert "FAIL  config valid" in out


# -- the API key ---------------------------------------------------------------------------------------


def test_key_set_asks_without_echo_and_never_prints_the_key(
    mac: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = mac.run("key", "set")
    out = capsys.readouterr().out

    assert code == 0
    assert mac.prompts == ["Gemini API key (input hidden): "]
    assert mac.keystore.items == {("objlibd", "gemini-api-key"): SECRET}
    assert SECRET not in out
    assert "$GEMINI_API_KEY is set in this shell" in out


def test_key_set_reads_a_pipe_and_rejects_junk(mac: Machine) -> None:
    mac.stdin = io.StringIO("  fake-piped-key_123  \n")
    mac.run("key", "set")
    mac.stdin = io.StringIO("two words\n")

    with pytest.raises(CredentialsMissingError):
        mac.run("key", "set")
    assert mac.keystore.items[("objlibd", "gemini-api-key")] == "fake-piped-key_123"
    assert mac.prompts == []


def test_key_status_and_delete(mac: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    mac.environ.clear()
    mac.keystore.set_password("objlibd", "gemini-api-key", SECRET)

    found = mac.run("key", "status")
    deleted = mac.run("key", "delete")
    again = mac.run("key", "delete")
    missing = mac.run("key", "status")
    out = capsys.readouterr().out

    assert (found, deleted, again, missing) == (0, 0, 0, 1)
    assert "found in the keychain" in out and "no Gemini API key is stored" in out
    assert SECRET not in out


def test_no_usable_keychain_is_one_clear_error(mac: Machine) -> None:
    mac.keystore = NoKeychain()
    mac.stdin = io.StringIO("fake-key\n")

    with pytest.raises(ServiceError, match="the OS keychain is not usable here: NoKeyringError"):
        mac.run("key", "delete")


# -- stop drains the real daemon (Linux service path: the pidfile) --------------------------------------


@pytest.mark.e2e
def test_stop_drains_the_running_daemon_and_it_exits_0(
    tmp_path: Path, drive: Drive, daemons: list[DaemonProcess]
) -> None:
    (drive.root / "Lecture 1.txt").write_text("existence exists\n")
    config = write_config(tmp_path / "objlibd.toml", drive.mount_point, tmp_path / "state",
                          tmp_path / "logs")  # fmt: skip
    daemon = DaemonProcess(config, tmp_path / "daemon.out").start()
    daemons.append(daemon)
    daemon.wait_running()

    started = time.monotonic()
    done = objlibd("stop", "--config", str(config), "--timeout", "30", timeout=60)
    elapsed = time.monotonic() - started
    assert daemon.proc is not None
    code = daemon.proc.wait(timeout=5)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"$ kill -TERM {daemon.pid}" in done.stdout
    assert f"objlibd (pid {daemon.pid}) stopped after" in done.stdout
    assert code == 0
    assert elapsed < 30
    assert not (tmp_path / "state" / "objlibd.pid").exists()
    assert os.path.ismount(drive.mount_point)  # nothing held the drive
