"""Service subcommands: `install`, `uninstall`, `start`, `stop`, `restart`, `doctor`, `key`.

launchd on macOS, a systemd user unit elsewhere. Every launchctl/systemctl call is printed
as `$ command` before it runs, so people learn the commands they can type themselves.

What cannot exist in a Linux test (launchctl, the keychain, the platform itself) comes from
a `ServiceContext`; `register(subparsers, context=...)` lets tests hand in their own.

The service machinery (launchd, systemd, the plan and its subprocess calls), the doctor and
keyring load inside the handlers: every other command builds this module's parser too, and
must not pay for them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from objlibd import config as config_module
from objlibd.cli.common import add_config_option
from objlibd.config import Config
from objlibd.credentials import (
    API_KEY_ENV,
    KEYRING_SERVICE,
    KEYRING_USER,
    KeyStore,
    system_keystore,
)
from objlibd.errors import ConfigError, CredentialsMissingError, ObjlibdError, ServiceError

if TYPE_CHECKING:
    import argparse
    import subprocess

    from objlibd.autostart.launchd import Launchd
    from objlibd.autostart.plan import Runner, ServiceSpec, Step
    from objlibd.autostart.systemd import Systemd

    Manager = Launchd | Systemd

T = TypeVar("T")


def _run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    from objlibd.autostart.plan import run_command

    return run_command(argv)


def _read_secret(prompt: str) -> str:
    import getpass

    return getpass.getpass(prompt)


@dataclass
class ServiceContext:
    """The parts of the machine the service commands touch (injectable for tests)."""

    platform: str = sys.platform
    runner: Runner = _run_command
    home: Path = field(default_factory=Path.home)
    uid: int = field(default_factory=os.getuid)
    python: Path = field(default_factory=lambda: Path(sys.executable))
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    keystore: Callable[[], KeyStore] = system_keystore
    read_secret: Callable[[str], str] = _read_secret
    stdin: Callable[[], TextIO] = field(default=lambda: sys.stdin)
    stop_timeout: float | None = None  # None: launchd/systemd's own budget plus a margin


ContextFactory = Callable[[], ServiceContext]


def register(subparsers: Any, context: ContextFactory = ServiceContext) -> None:
    """Add the service subcommands."""

    def command(name: str, text: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = subparsers.add_parser(name, help=text, description=text)
        add_config_option(sub)
        sub.set_defaults(handler=partial(handler, context))
        return sub

    install = command("install", "run objlibd at login and on mount (launchd/systemd)", cmd_install)
    install.add_argument("--dry-run", action="store_true", help="print what would be done")
    uninstall = command("uninstall", "stop objlibd and remove the service", cmd_uninstall)
    uninstall.add_argument("--purge", action="store_true", help="also delete state and logs")
    uninstall.add_argument("--dry-run", action="store_true", help="print what would be done")
    command("start", "start the daemon through launchd/systemd", cmd_start)
    stop = command("stop", "stop the daemon (it finishes the current file first)", cmd_stop)
    stop.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for it to exit")
    command("restart", "stop and start the daemon", cmd_restart)
    doctor = command("doctor", "check everything objlibd needs; each line with its fix", cmd_doctor)
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument("--offline", action="store_true", help="skip the network check")
    doctor.add_argument(
        "--deep", action="store_true", help="also search the store for a synced file's phrase"
    )

    key = subparsers.add_parser("key", help="the Gemini API key in the OS keychain")
    actions = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    for name, text, handler in (
        ("set", "store the key (asked without echo, or read from a pipe)", cmd_key_set),
        ("delete", "remove the key from the keychain", cmd_key_delete),
        (
            "status",
            "say whether a key is available and where from (never shows it)",
            cmd_key_status,
        ),
    ):
        actions.add_parser(name, help=text).set_defaults(handler=partial(handler, context))


# -- the manager for this platform --------------------------------------------------------------


def manager_for(ctx: ServiceContext, config: Config) -> Manager:
    """Return launchd on macOS, systemd elsewhere, for this config."""
    spec = service_spec(ctx, config)
    if ctx.platform == "darwin":
        from objlibd.autostart.launchd import Launchd

        return Launchd(spec, ctx.runner)
    from objlibd.autostart.systemd import Systemd

    return Systemd(spec, ctx.runner, ctx.environ)


def service_spec(ctx: ServiceContext, config: Config) -> ServiceSpec:
    """Return the service definition's inputs; refuse relative dirs (the daemon's cwd differs)."""
    from objlibd.autostart.plan import ServiceSpec

    for where, path in (("[state] dir", config.state.dir), ("[logs] dir", config.logs.dir)):
        if not path.is_absolute():
            raise ConfigError(
                f"{config.source}: {where}: {str(path)!r} must be absolute for a service",
                hint="the service runs from another directory; write the full path",
            )
    source = (config.source or config_module.default_config_path()).expanduser().absolute()
    spec = ServiceSpec(ctx.python, source, config.state.dir, config.logs.dir, ctx.home, ctx.uid)
    if ctx.stop_timeout is not None:
        spec = dataclasses.replace(spec, stop_timeout=ctx.stop_timeout)
    return spec


def _config(args: argparse.Namespace, *, strict: bool = True) -> Config:
    """Load the config; when not strict, a broken or missing one falls back to the defaults."""
    path = config_module.resolve_path(getattr(args, "config", None))
    try:
        return config_module.load(path)
    except ConfigError:
        if strict:
            raise
        return Config(source=path)


def _execute(ctx: ServiceContext, steps: list[Step], *, dry_run: bool = False) -> None:
    from objlibd.autostart.plan import Executor

    Executor(ctx.runner, print, dry_run=dry_run).execute(steps)


# -- handlers -------------------------------------------------------------------------------------


def cmd_install(context: ContextFactory, args: argparse.Namespace) -> int:
    """Install (or update) the service and start it; safe to run again."""
    from objlibd.autostart.plan import Run

    ctx = context()
    manager = manager_for(ctx, _config(args))
    steps = manager.install_steps(dry_run=args.dry_run)
    _execute(ctx, steps, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if not any(isinstance(step, Run) for step in steps):
        print(f"objlibd is already installed and loaded ({manager.path}); nothing to do")
    print(_after_install(ctx, manager))
    return 0


def _after_install(ctx: ServiceContext, manager: Manager) -> str:
    from objlibd.autostart.launchd import Launchd

    lines = ["", f"objlibd runs as {manager.name} service; check it with `objlibd doctor`."]
    if isinstance(manager, Launchd):
        lines += [
            f"Give {ctx.python} Full Disk Access (System Settings > Privacy & Security >",
            "Full Disk Access, + , Cmd-Shift-G, paste the path), or it cannot read the drive.",
            f"launchd view: launchctl print {manager.target}",
        ]
    else:
        lines.append("systemd view: systemctl --user status objlibd.service")
    return "\n".join(lines)


def cmd_uninstall(context: ContextFactory, args: argparse.Namespace) -> int:
    """Stop and remove the service; state and logs stay unless --purge."""
    ctx = context()
    config = _config(args, strict=args.purge)
    manager = manager_for(ctx, config)
    steps = manager.uninstall_steps(purge=args.purge)
    _execute(ctx, steps, dry_run=args.dry_run)
    if not steps:
        print(f"objlibd is not installed ({manager.path}); nothing to do")
    elif not args.purge and not args.dry_run:
        print(f"kept state ({config.state.dir}) and logs ({config.logs.dir}); --purge deletes them")
    return 0


def cmd_start(context: ContextFactory, args: argparse.Namespace) -> int:
    """Start the daemon through the service manager."""
    ctx = context()
    _execute(ctx, manager_for(ctx, _config(args)).start_steps())
    return 0


def cmd_stop(context: ContextFactory, args: argparse.Namespace) -> int:
    """Stop the daemon: it drains (finishes the current file) and exits."""
    ctx = context()
    if args.timeout is not None:
        ctx = dataclasses.replace(ctx, stop_timeout=args.timeout)
    _execute(ctx, manager_for(ctx, _config(args, strict=False)).stop_steps())
    return 0


def cmd_restart(context: ContextFactory, args: argparse.Namespace) -> int:
    """Restart the daemon (kickstart -k / systemctl restart)."""
    ctx = context()
    _execute(ctx, manager_for(ctx, _config(args)).restart_steps())
    return 0


def cmd_doctor(context: ContextFactory, args: argparse.Namespace) -> int:
    """Run the checks; exit 0 when nothing FAILs."""
    from objlibd import logs
    from objlibd.config import LogSettings
    from objlibd.doctor import report as doctor

    # The store's retry lines (warnings and up) go to stderr, never into the report or --json.
    logs.setup(LogSettings(level="warning"), console=True, to_file=False)
    ctx = context()
    probes = doctor.Probes(
        manager=partial(manager_for, ctx), keystore=ctx.keystore, environ=ctx.environ
    )
    path = config_module.resolve_path(getattr(args, "config", None))
    report = doctor.run(path, probes, offline=args.offline, deep=args.deep)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(doctor.render_report(report))
    return 0 if report.ok else 1


# -- the API key in the keychain ------------------------------------------------------------------


def cmd_key_set(context: ContextFactory, _args: argparse.Namespace) -> int:
    """Store the Gemini API key in the OS keychain; it is never echoed or printed."""
    ctx = context()
    key = _read_key(ctx)
    _keychain(lambda: ctx.keystore().set_password(KEYRING_SERVICE, KEYRING_USER, key))
    print(
        f"stored the Gemini API key in the keychain (service {KEYRING_SERVICE}, account "
        f"{KEYRING_USER}); it never goes into the config, the service file or the logs"
    )
    if ctx.environ.get(API_KEY_ENV):
        print(f"note: ${API_KEY_ENV} is set in this shell and wins over the keychain here")
    print("if the daemon is running, `objlibd restart` makes it use the new key")
    return 0


def _read_key(ctx: ServiceContext) -> str:
    stream = ctx.stdin()
    if stream.isatty():
        key = ctx.read_secret("Gemini API key (input hidden): ")
    else:
        key = stream.readline()
    key = key.strip()
    if not key or any(char.isspace() for char in key):
        raise CredentialsMissingError(
            "no API key stored: the input was empty or had spaces inside",
            hint="paste just the key (from https://aistudio.google.com/apikey)",
        )
    return key


def cmd_key_delete(context: ContextFactory, _args: argparse.Namespace) -> int:
    """Remove the key from the keychain (nothing stored is fine)."""
    ctx = context()
    store = _keychain(ctx.keystore)
    if not _keychain(lambda: store.get_password(KEYRING_SERVICE, KEYRING_USER)):
        print("no Gemini API key is stored in the keychain")
        return 0
    _keychain(lambda: store.delete_password(KEYRING_SERVICE, KEYRING_USER))
    print(f"deleted the Gemini API key from the keychain (service {KEYRING_SERVICE})")
    return 0


def cmd_key_status(context: ContextFactory, _args: argparse.Namespace) -> int:
    """Say whether a key is available and where from; exit 1 when there is none."""
    from objlibd.credentials import find_api_key

    ctx = context()
    key, where = find_api_key(ctx.environ, ctx.keystore)
    if key:
        print(f"Gemini API key: found in {where} (not shown)")
        return 0
    print(f"Gemini API key: none (${API_KEY_ENV} not set, {where}); `objlibd key set` stores one")
    return 1


def _keychain(action: Callable[[], T]) -> T:
    try:
        return action()
    except ObjlibdError:
        raise
    except Exception as err:  # noqa: BLE001 - keyring backends raise anything; say it once
        raise ServiceError(
            f"the OS keychain is not usable here: {type(err).__name__}: {err}",
            hint="on macOS run this in a logged-in Terminal session; on Linux install a Secret "
            f"Service (gnome-keyring, KWallet) or give the daemon ${API_KEY_ENV} instead",
        ) from None
