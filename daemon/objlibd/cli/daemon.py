"""Daemon subcommands: `run`, `status`, `activity`, `logs`, `pause`, `resume`.

Imports stay inside the handlers: `status` must not pay for structlog, watchdog or the
store backends, and only `run` needs them. `show_status` is also the fast path that
`objlibd.cli.main` takes for plain `status` command lines, without argparse.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from objlibd.cli.common import add_config_option, load_config, load_config_at
from objlibd.errors import UsageError

if TYPE_CHECKING:
    import argparse
    import datetime as dt


def register(subparsers: Any) -> None:
    """Add the daemon's subcommands."""
    run = subparsers.add_parser(
        "run", help="run the daemon in the foreground (what launchd starts); stop with SIGTERM"
    )
    add_config_option(run)
    run.set_defaults(handler=cmd_run)

    status = subparsers.add_parser(
        "status", help="show the daemon, volume, queue, files and jobs (exit 1 if not healthy)"
    )
    add_config_option(status)
    status.add_argument("--json", action="store_true", help="print JSON with stable keys")
    status.set_defaults(handler=cmd_status)

    activity = subparsers.add_parser(
        "activity", help="what objlibd did, newest first: batches, jobs, counts, decisions"
    )
    add_config_option(activity)
    activity.add_argument(
        "-n", "--lines", type=int, default=20, metavar="N", help="the newest N entries (20)"
    )
    activity.add_argument("--since", metavar="WHEN", help="10m, 2h, 1d or an ISO time")
    activity.add_argument("--json", action="store_true", help="print JSON (a list, newest first)")
    activity.set_defaults(handler=cmd_activity)

    logs = subparsers.add_parser("logs", help="show the daemon's log (across rotated files)")
    add_config_option(logs)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument(
        "-n", "--lines", type=int, default=None, metavar="N", help="only the last N lines"
    )
    logs.add_argument("--since", metavar="WHEN", help="10m, 2h, 1d or an ISO time")
    logs.add_argument(
        "--level", choices=("debug", "info", "warning", "error"), help="this level and above"
    )
    logs.add_argument("--grep", metavar="TEXT", help="only lines containing TEXT (any case)")
    logs.add_argument("--json", action="store_true", help="print the raw JSON lines")
    logs.set_defaults(handler=cmd_logs)

    for name, text in (
        ("pause", "stop uploads and deletes (watching continues); persists across restarts"),
        ("resume", "continue after `objlibd pause`"),
    ):
        sub = subparsers.add_parser(name, help=text)
        add_config_option(sub)
        sub.set_defaults(handler=cmd_pause if name == "pause" else cmd_resume)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    from objlibd import logs
    from objlibd.engine import folders
    from objlibd.runtime.daemon import Daemon

    config = load_config(args)
    folders.prepare_state(config)  # both exit 2 with the path and the fix, before anything
    folders.prepare_logs(config)
    os.umask(0o077)  # the daemon's own process: whatever else it creates is private too

    def start_logging() -> None:  # only once this process owns the state dir (and the log)
        path = logs.setup(config.logs, console=sys.stderr.isatty())
        if sys.stderr.isatty():
            print(f"objlibd: running; log in {path}; Ctrl-C to stop", file=sys.stderr)

    daemon = Daemon(config, on_claimed=start_logging)
    code = daemon.run()
    if daemon.abandoned_work:
        # An upload still in flight after the stop budget: abandon it rather than let
        # interpreter exit wait on its thread (launchd would SIGKILL us). The DB recorded the
        # intent before the upload, so the next start resumes or adopts it exactly.
        import logging

        logging.shutdown()
        os._exit(code)
    return code


def cmd_status(args: argparse.Namespace) -> int:
    """Print the status; 0 when healthy, 1 when not running or degraded."""
    return show_status(getattr(args, "config", None), args.json)


def show_status(config_path: str | None, as_json: bool) -> int:
    """Print the status of the config at `config_path` (see `cmd_status`)."""
    from objlibd.cli import print_status
    from objlibd.status import view as status

    config = load_config_at(config_path)
    return print_status(status.snapshot(config), as_json=as_json)


def cmd_activity(args: argparse.Namespace) -> int:
    """Print what objlibd did (jobs and decisions), newest first."""

    from objlibd.state.store import StateStore
    from objlibd.status import activity

    config = load_config(args)
    since = _since(args.since)
    items: list[dict[str, Any]] = []
    if config.db_path.exists():
        state = StateStore.open(config.db_path, readonly=True)
        try:
            items = activity.timeline(
                state, limit=max(args.lines, 0), since=activity.db_time(since) if since else None
            )
        finally:
            state.close()
    if args.json:
        print(json.dumps(items, indent=2, sort_keys=True))
    elif items:
        print("\n".join(activity.render(items)))
    else:
        print("objlibd: nothing done yet", file=sys.stderr)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print log lines (pretty, or raw JSON with --json); -f keeps following."""

    from objlibd import logs

    config = load_config(args)
    since = _since(args.since)
    flt = logs.LogFilter(level=args.level, since=since, grep=args.grep)
    log_dir = config.logs.dir
    if not logs.log_files(log_dir) and not args.follow:
        print(f"objlibd: no log yet in {log_dir}", file=sys.stderr)
        print("  hint: the daemon writes it; start it with `objlibd run`", file=sys.stderr)
        return 0
    color = sys.stdout.isatty() and not args.json
    for line, record in logs.tail(log_dir, flt, args.lines):
        print(line if args.json else logs.render(record, color=color))
    if args.follow:
        sys.stdout.flush()
        for line, record in logs.follow(log_dir, flt, keep_going=lambda: True):
            print(line if args.json else logs.render(record, color=color), flush=True)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause uploads and deletes."""
    return _set_pause(args, paused=True)


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume after a pause."""
    return _set_pause(args, paused=False)


def _set_pause(args: argparse.Namespace, *, paused: bool) -> int:
    import time

    from objlibd.status import files

    config = load_config(args)
    changed = files.set_pause(config.state.dir, paused)
    running = files.live_heartbeat(config, time.time()) is not None
    if paused:
        text = "paused: uploads and deletes stop; watching and recording continue"
        text += "" if changed else " (it already was)"
        tail = "; `objlibd resume` continues"
    else:
        text = "resumed" if changed else "not paused"
        tail = ""
    where = (
        "the daemon picks this up within a second" if running else "applies when the daemon runs"
    )
    print(f"objlibd: {text} ({where}){tail}")
    return 0


def _since(text: str | None) -> dt.datetime | None:
    """Parse `--since` (10m, 2h, 1d or an ISO time); a bad value is a usage error (exit 2)."""
    import datetime as dt

    from objlibd import logs

    if not text:
        return None
    try:
        return logs.parse_since(text, dt.datetime.now(dt.UTC))
    except ValueError:
        raise UsageError(f"--since {text!r}: expected 10m, 2h, 1d or an ISO time") from None
