"""systemd: objlibd as a systemd *user* unit on Linux, managed with `systemctl --user`.

The same commands as on macOS (install, uninstall, start, stop, restart) produce the same
kind of plan (`autostart.plan` steps, the shared shape in `autostart.backend`), run through the same injected runner.

- Restart=on-failure: restart after a crash or an error exit, not after the clean exit 0
  that SIGTERM produces; KillSignal=SIGTERM and TimeoutStopSec give the daemon time to drain.
- No RequiresMountsFor=: that would keep the daemon from starting without the drive, and the
  daemon's own volume monitor is what notices the drive coming and going.
- ExecStart arguments are quoted the way systemd.service(5) parses them (double quotes,
  backslash escapes, `%%` for `%`, `$$` for `$`), so paths with spaces survive.

Where there is no systemd user manager (a container, an SSH session without lingering),
every command says so plainly; `stop` still works through the daemon's pidfile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from objlibd.autostart import plan
from objlibd.autostart.backend import ServiceBackend
from objlibd.errors import ServiceError

UNIT_NAME = "objlibd.service"
RESTART_SECONDS = 30
SYSTEMCTL = "systemctl"
_PROPERTIES = "LoadState,ActiveState,UnitFileState,MainPID"
_RUNNING = ("active", "activating", "reloading", "deactivating")


def unit_dir(home: Path, environ: Mapping[str, str]) -> Path:
    """Return the user unit directory ($XDG_CONFIG_HOME/systemd/user)."""
    config_home = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config_home) / "systemd" / "user"


def quote_arg(arg: str) -> str:
    """Quote one ExecStart argument so systemd reads it back unchanged."""
    _reject_newline(arg)
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def escape_path(path: Path) -> str:
    """Return a path for a path-valued setting (WorkingDirectory=): only `%` needs escaping."""
    _reject_newline(str(path))
    return str(path).replace("%", "%%")


def _reject_newline(text: str) -> None:
    if "\n" in text or "\r" in text:
        raise ServiceError(
            f"cannot put {text!r} into a systemd unit: it contains a line break",
            hint="move objlibd or its config to a path without line breaks",
        )


def render_unit(spec: plan.ServiceSpec) -> str:
    """Return the user unit text (no secrets: the key stays in the keyring or environment)."""
    exec_start = " ".join(quote_arg(arg) for arg in spec.program_arguments())
    return (
        "# Written by `objlibd install`; run it again after moving objlibd or its config.\n"
        "[Unit]\n"
        "Description=objlibd: keeps the Gemini File Search store true to the library drive\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        f"WorkingDirectory={escape_path(spec.state_dir)}\n"
        'Environment="PYTHONUNBUFFERED=1" "PYTHONFAULTHANDLER=1"\n'
        "Restart=on-failure\n"
        f"RestartSec={RESTART_SECONDS}\n"
        "KillSignal=SIGTERM\n"
        f"TimeoutStopSec={plan.EXIT_TIMEOUT_SECONDS}\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def parse_properties(text: str) -> dict[str, str]:
    """Parse `systemctl show --property=...` output (KEY=value lines)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


class Systemd(ServiceBackend):
    """Manage objlibd's systemd user unit through `systemctl --user`."""

    name = "systemd"
    kind = "a systemd user unit"
    unavailable = "systemd user services are not available here: {why}"
    unavailable_hint = (
        "log in to a normal session (or `loginctl enable-linger $USER` on a headless "
        "machine) so `systemd --user` runs; without it, run `objlibd run` yourself (tmux, "
        "your own supervisor) - `objlibd stop` still stops it"
    )

    def __init__(
        self, spec: plan.ServiceSpec, runner: plan.Runner, environ: Mapping[str, str] | None = None
    ) -> None:
        folder = unit_dir(spec.home, os.environ if environ is None else environ)
        super().__init__(spec, runner, folder / UNIT_NAME)

    def _ctl(self, *args: str) -> plan.Run:
        return plan.Run((SYSTEMCTL, "--user", *args), f"see `systemctl --user status {UNIT_NAME}`")

    def _props(self) -> tuple[dict[str, str] | None, str]:
        argv = [SYSTEMCTL, "--user", "show", UNIT_NAME, f"--property={_PROPERTIES}"]
        result = self.runner(argv)
        if result.returncode == plan.NOT_FOUND:
            return None, "systemctl is not installed"
        if result.returncode != 0:
            return (
                None,
                f"`systemctl --user` cannot reach a user manager: {plan.first_line(result)}",
            )
        return parse_properties(result.stdout), ""

    def definition(self) -> bytes:
        """Return the unit file `objlibd install` writes."""
        return render_unit(self.spec).encode("utf-8")

    def status(self) -> plan.ServiceStatus:
        """Ask systemd whether the unit is enabled/active (and its pid)."""
        installed = self.path.is_file()
        props, why = self._props()
        if props is None:
            return plan.ServiceStatus(self.name, False, installed, False, None, why)
        enabled = props.get("UnitFileState") == "enabled"
        active = props.get("ActiveState", "inactive")
        pid = int(props.get("MainPID", "0") or "0") or None
        detail = f"{props.get('UnitFileState') or 'not installed'}, {active}"
        detail += f", pid {pid}" if pid else ""
        return plan.ServiceStatus(
            self.name, True, installed, enabled or active in _RUNNING, pid, detail
        )

    def install_steps(self, *, dry_run: bool = False) -> list[plan.Step]:
        """Plan `objlibd install`: dirs, unit (if changed), daemon-reload, enable, (re)start.

        With `dry_run` and no user manager, plan as where nothing is installed yet.
        """
        found, why = self._props()
        props = found or {}
        active = props.get("ActiveState") in _RUNNING
        steps, changed = self._install_files(
            available=found is not None, why=why, running=active, dry_run=dry_run,
            elsewhere="where they are, install would:",
        )  # fmt: skip
        if changed:
            steps.append(self._ctl("daemon-reload"))
        if props.get("UnitFileState") != "enabled":
            steps.append(self._ctl("enable", UNIT_NAME))
        if not active:
            steps.append(self._ctl("start", UNIT_NAME))
        elif changed:
            steps.append(self._ctl("restart", UNIT_NAME))
        return steps

    def uninstall_steps(self, *, purge: bool) -> list[plan.Step]:
        """Plan `objlibd uninstall`: disable --now, remove the unit; state/logs with purge."""
        props, _ = self._props()
        steps: list[plan.Step] = []
        loaded = props is not None and (
            props.get("UnitFileState") == "enabled" or props.get("ActiveState") in _RUNNING
        )
        if loaded:
            steps += [self._ctl("disable", "--now", UNIT_NAME), self._wait_drained()]
        if self.path.exists():
            steps.append(plan.RemovePath(self.path))
            if props is not None:
                steps.append(self._ctl("daemon-reload"))
        return steps + self._purge(purge)

    def start_steps(self) -> list[plan.Step]:
        """Plan `objlibd start`."""
        props = self._require()
        self._require_installed()
        if props.get("ActiveState") not in _RUNNING:
            self._refuse_unmanaged()
        return [self._ctl("start", UNIT_NAME)]

    def stop_steps(self) -> list[plan.Step]:
        """Plan `objlibd stop`: systemctl stop (it waits TimeoutStopSec), else the pidfile."""
        props, why = self._props()
        running = props is not None and props.get("ActiveState") in _RUNNING
        if props is not None:
            why = f"{UNIT_NAME} is not running under systemd"
        return self._stop(self._ctl("stop", UNIT_NAME) if running else None, why)

    def restart_steps(self) -> list[plan.Step]:
        """Plan `objlibd restart`."""
        self._require()
        self._require_installed()
        return [self._ctl("restart", UNIT_NAME)]

    def _require(self) -> dict[str, str]:
        props, why = self._props()
        if props is None:
            raise self._unavailable(why)
        return props
