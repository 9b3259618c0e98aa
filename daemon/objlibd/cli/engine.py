"""Engine subcommands: `sync`, `store list`, `missing`, `marker`, `demo` (ends with a search)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objlibd.cli.common import add_config_option, load_config, setup_console_logging
from objlibd.cli.progressbar import ProgressBar
from objlibd.errors import ObjlibdError
from objlibd.state import keys

if TYPE_CHECKING:  # the engine (and structlog) load only when a command here runs
    from objlibd.config import Config
    from objlibd.engine.hold import Hold
    from objlibd.engine.sync import SyncEngine
    from objlibd.state.store import StateStore


def register(subparsers: Any) -> None:
    """Add the engine's subcommands."""
    sync = subparsers.add_parser("sync", help="sync the library into the store once and exit")
    add_config_option(sync)
    sync.add_argument(
        "--dry-run", action="store_true", help="show what would happen; change nothing"
    )
    sync.add_argument(
        "--force",
        action="store_true",
        help="re-hash every file; re-upload documents made under older enrichment rules",
    )
    sync.add_argument(
        "--prune-missing",
        action="store_true",
        help="delete documents of files missing longer than prune_after_days",
    )
    sync.add_argument(
        "--cleanup-orphans",
        action="store_true",
        help="delete store documents the state DB does not reference",
    )
    sync.add_argument(
        "--skip-enrichment", action="store_true", help="send only identity metadata (path, sha256)"
    )
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")
    sync.set_defaults(handler=cmd_sync)

    store = subparsers.add_parser("store", help="inspect the store")
    store_commands = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    listing = store_commands.add_parser("list", help="list the documents the store holds")
    add_config_option(listing)
    listing.add_argument("--json", action="store_true", help="JSON lines, one document each")
    listing.set_defaults(handler=cmd_store_list)

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

    demo = subparsers.add_parser(
        "demo", help="make a sample library + config on local disk and sync it"
    )
    demo.add_argument(
        "--dir", default="objlibd-demo", help="where to put it (default: ./objlibd-demo)"
    )
    demo.set_defaults(handler=cmd_demo)
    # fmt: on


@contextmanager
def engine_for(
    config: Config, *, progress: ProgressBar | None = None, read_only: bool = False
) -> Iterator[SyncEngine]:
    """Open state and store for one command and close them after.

    `read_only` (dry runs, `store list`) opens the state DB read-only, or an empty one in
    memory when there is none yet: nothing is created, written or bound.
    """
    from objlibd.engine.sync import SyncEngine, open_store_for
    from objlibd.state.store import StateStore

    if not read_only:
        state = StateStore.open(config.db_path, repair=True)
        if state.db.rebuilt is not None:
            print(
                f"objlibd: the state database was damaged ({state.db.rebuilt['reason']}); kept "
                f"as {state.db.rebuilt['moved_to']}; starting fresh and adopting the store's "
                "documents (nothing is uploaded twice)",
                file=sys.stderr,
            )
    elif config.db_path.exists():
        state = StateStore.open(config.db_path, readonly=True)
    else:
        state = StateStore.memory()
    try:
        store = open_store_for(config, state, remember=not read_only)
        try:
            yield SyncEngine(config, state, store, progress=progress)
        finally:
            store.close()
    finally:
        state.close()


def cmd_sync(args: argparse.Namespace) -> int:
    """Run one sync and print its summary."""
    from objlibd.engine.summary import render
    from objlibd.engine.sync import SyncOptions

    config = load_config(args)
    setup_console_logging(config)
    options = SyncOptions(
        dry_run=args.dry_run, force=args.force, prune_missing=args.prune_missing,
        cleanup_orphans=args.cleanup_orphans, skip_enrichment=args.skip_enrichment,
    )  # fmt: skip
    bar = None if args.json else ProgressBar(sys.stderr, draw=sys.stderr.isatty())
    # A dry run changes nothing, so it needs no claim on the state dir (the daemon may run).
    claim = contextlib.nullcontext() if options.dry_run else _instance(config)
    with claim, engine_for(config, progress=bar, read_only=options.dry_run) as engine:
        if bar is not None:
            bar.use_quota(engine.store.health())
            first = engine.state.values.get_config(keys.LIBRARY_ID) is None
            bar.first_sync = first and not options.dry_run
        summary = engine.run(options)
    if bar is not None:
        bar.end()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(render(summary))
    return summary.exit_code


def cmd_store_list(args: argparse.Namespace) -> int:
    """List the store's documents; strictly read-only (creates, binds and deletes nothing)."""
    from objlibd.engine.names import printable

    config = load_config(args)
    setup_console_logging(config)
    with engine_for(config, read_only=True) as engine:
        found = config.db_path.exists() and engine.check_identity(create=False)
        docs = sorted(
            engine.store.list_docs(read_only=True) if found else [],
            key=lambda d: (d.path or "", d.doc_id),
        )
    if not found:
        print(
            f"objlibd: nothing synced yet: no {config.store.backend} store "
            f'"{config.store.name}" recorded in {config.state.dir}',
            file=sys.stderr,
        )
        print("  hint: run `objlibd sync` to create it and upload the library", file=sys.stderr)
        return 0
    for doc in docs:
        if args.json:
            row = {"doc_id": doc.doc_id, "display_name": doc.display_name, "path": doc.path,
                   "sha256": doc.sha256, "size": doc.size, "metadata": dict(doc.metadata),
                   "failed": doc.failed}  # fmt: skip
            print(json.dumps(row, sort_keys=True))
        else:
            name = printable(doc.path or doc.display_name)
            failed = "  (import failed)" if doc.failed else ""
            print(f"{doc.doc_id}  {(doc.sha256 or '-')[:12]}  {name}{failed}")
    if not args.json:
        print(f"{len(docs)} documents", file=sys.stderr)
    return 0


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
    with _instance(config), engine_for(config) as engine:
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
    from objlibd.status import view as status

    owner = pidfile.live_owner(config.state.dir / pidfile.PIDFILE_NAME)
    if owner is None:
        return False
    request = config.state.dir / status.CONFIRM_MISSING_NAME
    status.write_json_atomic(request, {"revision": hold.revision})
    if status.read_pause(config.state.dir) is not None:
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Create a sample library and config, sync it into the local store, show the result."""
    from objlibd.cli import demo

    config_path = demo.create(Path(args.dir).resolve())
    print(f"objlibd: sample library and config written; config: {config_path}")
    code = cmd_sync(argparse.Namespace(
        config=str(config_path), dry_run=False, force=False, prune_missing=False,
        cleanup_orphans=False, skip_enrichment=False, json=False,
    ))  # fmt: skip
    print()
    print("The store now holds:")
    cmd_store_list(argparse.Namespace(config=str(config_path), json=False))
    print()
    print(f'A sample search: objlibd search "{demo.SAMPLE_QUESTION}"')
    from objlibd.cli.search import cmd_search

    cmd_search(argparse.Namespace(
        config=str(config_path), question=demo.SAMPLE_QUESTION, where=None, top_k=None,
        json=False,
    ))  # fmt: skip
    print(demo.next_steps(config_path))
    return code


@contextmanager
def _instance(config: Config) -> Iterator[None]:
    """Own the state dir for one command; refuse while the daemon (or another sync) does."""
    from objlibd.engine import folders
    from objlibd.errors import AlreadyRunningError
    from objlibd.runtime import pidfile

    folders.prepare_state(config)  # private, writable, or exit 2 with the path and the fix
    claim = pidfile.PidFile(config.state.dir / pidfile.PIDFILE_NAME)
    try:
        claim.acquire()
    except AlreadyRunningError as err:
        raise AlreadyRunningError(
            f"another objlibd is working on {config.state.dir}: {err.message}",
            hint="the daemon keeps the store in sync by itself (`objlibd status`); "
            "stop it first (`objlibd stop`) to run a one-shot command",
        ) from None
    try:
        yield
    finally:
        claim.release()
