"""Library subcommands: `missing` (the missing files, and confirming a held mass-missing) and
`marker` (show the drive's availability, re-write the library marker, adopt the drive's library).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from objlibd.cli.common import add_config_option, load_config, setup_console_logging
from objlibd.errors import ObjlibdError
from objlibd.state import keys

if TYPE_CHECKING:  # the engine loads only when a command here runs
    from objlibd.config import Config
    from objlibd.engine.hold import Hold
    from objlibd.state.store import StateStore


def register(subparsers: Any) -> None:
    """Add `missing` and `marker`."""
    missing = subparsers.add_parser("missing", help="show missing files and any held mass-missing")
    add_config_option(missing)
    missing.add_argument(
        "--confirm",
        action="store_true",
        help="confirm a held mass-missing: the files are really gone",
    )
    missing.add_argument("--json", action="store_true", help="print as JSON")
    missing.set_defaults(handler=cmd_missing)

    marker = subparsers.add_parser(
        "marker", help="show or re-write the library marker on the drive"
    )
    add_config_option(marker)
    marker.add_argument(
        "--write", action="store_true", help="mark the mounted library as this state DB's library"
    )
    marker.add_argument(
        "--force",
        action="store_true",
        help="with --write: replace another library's marker (recorded as a decision)",
    )
    marker.add_argument(
        "--adopt",
        action="store_true",
        help="take over the drive's library: this state dir syncs it from now on (recorded)",
    )
    marker.set_defaults(handler=cmd_marker)


def cmd_missing(args: argparse.Namespace) -> int:
    """Show missing files and the hold, or confirm the hold."""
    from objlibd.engine.hold import Hold
    from objlibd.models import FileStatus
    from objlibd.state.store import StateStore

    config = load_config(args)
    setup_console_logging(config)
    hold, missing = None, []
    if config.db_path.exists():
        state = StateStore.open(config.db_path, readonly=True)
        try:
            hold = Hold.from_json(state.values.get_json(keys.HOLD))
            missing = [] if args.confirm else state.files.with_status(FileStatus.MISSING)
        finally:
            state.close()
    if args.confirm:
        return _confirm(config, hold)
    if args.json:
        rows = [{"path": r.path, "missing_since": r.missing_since} for r in missing]
        held = hold.to_json() if hold else None
        print(json.dumps({"hold": held, "missing": rows}, indent=2))
        return 0
    _print_missing(config, hold, missing)
    return 0


def _confirm(config: Config, hold: Hold | None) -> int:
    if hold is None:
        print("objlibd: no hold: nothing waits for confirmation")
        return 0
    if _ask_daemon_to_confirm(config, hold):
        return 0
    from objlibd.cli.engine import claim_state_dir, engine_for

    with claim_state_dir(config), engine_for(config) as engine:
        summary = engine.confirm_missing(hold.revision)
    back = len(hold.paths) - summary.missing - summary.forgotten
    print(
        f"objlibd: confirmed; {summary.missing} files marked missing"
        f" ({summary.forgotten} never-uploaded entries forgotten, {back} back on the drive"
        " and left alone)"
    )
    return 0


def _ask_daemon_to_confirm(config: Config, hold: Hold) -> bool:
    """Leave the confirmation for a running daemon (the only writer); False if none runs."""
    from objlibd.runtime import pidfile
    from objlibd.status import files

    owner = pidfile.live_owner(config.state.dir / pidfile.PIDFILE_NAME)
    if owner is None:
        return False
    files.request_confirm(config.state.dir, hold.revision)
    if files.read_pause(config.state.dir) is not None:
        print(f"objlibd: the daemon (pid {owner.pid}) is paused: your confirmation of the hold")
        print(f"  ({len(hold.paths)} files) is stored and applied when you run `objlibd resume`")
        return True
    print(f"objlibd: asked the running daemon (pid {owner.pid}) to apply the hold;")
    print("  `objlibd status` shows it cleared within a few seconds")
    return True


def _print_missing(config: Config, hold: Hold | None, missing: list[Any]) -> None:
    from objlibd.engine.names import printable

    if hold:
        print(f"HELD since {hold.since}: {hold.reason}")
        for path in hold.paths[:20]:
            print(f"  {printable(path)}")
        if len(hold.paths) > 20:
            print(f"  ... and {len(hold.paths) - 20} more")
        print("Nothing of these is marked missing, and no document is deleted, until you decide:")
        print("- the files are really gone: `objlibd missing --confirm` (files that are back")
        print("  by then are left alone);")
        print("- they should be there (drive partly readable, a folder moved away): put them")
        print("  back or reconnect the drive; the next full reconcile (`objlibd sync`, or the")
        print("  daemon's own when it sees a held file return) clears the hold by itself.")
    else:
        print("no hold: nothing waits for confirmation")
    days = config.sync.prune_after_days
    print(f"{len(missing)} files missing (their documents are pruned after {days:g} days):")
    for record in missing[:50]:
        print(f"  {record.missing_since}  {printable(record.path)}")


def cmd_marker(args: argparse.Namespace) -> int:
    """Show the marker state, re-write it, or adopt the drive's library for this state."""
    from objlibd.engine import volume
    from objlibd.state.store import StateStore

    config = load_config(args)
    if not (args.write or args.adopt):
        library_id = None
        if config.db_path.exists():
            state = StateStore.open(config.db_path, readonly=True)
            try:
                library_id = state.values.get_config(keys.LIBRARY_ID)
            finally:
                state.close()
        found = volume.probe(config.library, library_id)
        print(f"{found.availability.value}: {found.reason}")
        if found.hint:
            print(f"  hint: {found.hint}")
        return 0 if found.available else 1
    state = StateStore.open(config.db_path)
    try:
        if args.adopt:
            return _adopt_marker(config, state)
        return _write_marker(config, state, force=args.force)
    finally:
        state.close()


def _write_marker(config: Config, state: StateStore, *, force: bool) -> int:
    from objlibd.engine import volume
    from objlibd.errors import ForeignMarkerError

    library_id = state.values.get_config(keys.LIBRARY_ID)
    if library_id is None:
        raise ObjlibdError(
            "this state DB has no library id yet",
            hint="run `objlibd sync` first (it marks the library), or `objlibd marker --adopt` "
            "to take over a drive another state dir marked",
        )
    _require_drive(config)
    try:
        path = volume.write_marker(
            config.library, volume.Marker(library_id, config.store.name), force=force
        )
    except ForeignMarkerError as err:
        if force:  # pragma: no cover - write_marker only raises this without force
            raise
        raise ObjlibdError(err.message, hint=err.hint) from None
    except OSError as err:
        raise ObjlibdError(
            f"cannot write the library marker: {volume.write_problem(err)}"
        ) from None
    if force:
        state.jobs.record_decision("marker_written", {"library_id": library_id, "force": True})
    print(f"objlibd: wrote {path}: this drive is library {library_id}")
    return 0


def _adopt_marker(config: Config, state: StateStore) -> int:
    from objlibd.engine import volume

    _require_drive(config)
    path = config.library.root / config.library.marker_name
    try:
        marker = volume.read_marker(path)
    except (OSError, ValueError) as err:
        raise ObjlibdError(
            f"cannot adopt: {path} is not a readable objlibd marker ({err})",
            hint="a drive objlibd never synced has no library to adopt: `objlibd sync` marks it",
        ) from None
    previous = state.values.get_config(keys.LIBRARY_ID)
    if previous == marker.library_id:
        print(f"objlibd: this state already is library {marker.library_id}; nothing to do")
        return 0
    state.values.set_config(keys.LIBRARY_ID, marker.library_id)
    state.jobs.record_decision(
        "marker_adopted", {"library_id": marker.library_id, "previous": previous}
    )
    print(f"objlibd: this state dir now syncs library {marker.library_id} (was {previous}).")
    print("  The next sync compares the drive with what this state recorded; a mass")
    print("  difference is held for you (`objlibd missing`), never deleted on sight.")
    return 0


def _require_drive(config: Config) -> None:
    """Raise unless the library folder is there and readable (whatever its marker says)."""
    from objlibd.engine import volume

    found = volume.probe_root(config.library)
    if found is not None:
        raise ObjlibdError(found.reason, hint=found.hint)
