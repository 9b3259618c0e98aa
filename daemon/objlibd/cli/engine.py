"""Engine subcommands: `sync`, `store list`, `demo` (ends with a search); `missing` and
`marker` (the library on the drive) are registered here, in this order, from `cli.library`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objlibd.cli import library
from objlibd.cli.common import add_config_option, load_config, setup_console_logging
from objlibd.cli.progressbar import ProgressBar
from objlibd.state import keys

if TYPE_CHECKING:  # the engine (and structlog) load only when a command here runs
    from objlibd.config import Config
    from objlibd.engine.sync import SyncEngine


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

    library.register(subparsers)  # `missing`, `marker`

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
    claim = contextlib.nullcontext() if options.dry_run else claim_state_dir(config)
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
def claim_state_dir(config: Config) -> Iterator[None]:
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
