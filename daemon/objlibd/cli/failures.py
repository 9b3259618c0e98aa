"""Failure memory subcommands: `failures` (what is held back, and why) and `retry`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objlibd.cli.common import add_config_option, load_config
from objlibd.errors import ObjlibdError

if TYPE_CHECKING:
    from objlibd.config import Config
    from objlibd.state.failurelog import FailureRow


def register(subparsers: Any) -> None:
    """Add `failures` and `retry`."""
    failures = subparsers.add_parser(
        "failures", help="files held back: quarantined (the store refused them) or backing off"
    )
    add_config_option(failures)
    failures.add_argument("--json", action="store_true", help="print as JSON")
    failures.set_defaults(handler=cmd_failures)

    retry = subparsers.add_parser(
        "retry", help="let quarantined or backing-off files be tried again at the next sync"
    )
    add_config_option(retry)
    retry.add_argument("paths", nargs="*", metavar="PATH", help="library-relative or absolute")
    retry.add_argument("--all", action="store_true", help="every held-back file")
    retry.set_defaults(handler=cmd_retry)


def cmd_failures(args: argparse.Namespace) -> int:
    """List quarantined files (with the store's message) and files backing off."""
    from objlibd.state.store import StateStore

    config = load_config(args)
    if not config.db_path.exists():
        print("objlibd: nothing synced yet: no failures")
        return 0
    state = StateStore.open(config.db_path, readonly=True)
    try:
        rows = state.failures.failure_rows()
    finally:
        state.close()
    quarantined = [row for row in rows if row.quarantined_at is not None]
    waiting = [row for row in rows if row.quarantined_at is None]
    if args.json:
        print(json.dumps({"quarantined": [_row(r) for r in quarantined],
                          "waiting": [_row(r) for r in waiting]}, indent=2))  # fmt: skip
        return 0
    limit = config.sync.quarantine_after_failures
    print(f"{len(quarantined)} quarantined (refused {limit} times; not tried again until the file "
          "changes or `objlibd retry PATH`):")  # fmt: skip
    for row in quarantined:
        print(f"  {json.dumps(row.path)}  {row.failures} failures, since {row.quarantined_at}")
        print(f"    {row.error or '-'}")
    print(f"{len(waiting)} backing off after transient failures (tried again after the time):")
    for row in waiting:
        print(
            f"  {json.dumps(row.path)}  after {row.retry_after} ({row.transient_failures} in a row)"
        )
        print(f"    {row.error or '-'}")
    return 0


def _row(row: FailureRow) -> dict[str, Any]:
    return {
        "path": row.path,
        "status": row.status,
        "error": row.error,
        "failures": row.failures,
        "quarantined_at": row.quarantined_at,
        "transient_failures": row.transient_failures,
        "retry_after": row.retry_after,
    }


def cmd_retry(args: argparse.Namespace) -> int:
    """Release held-back files; the next sync (or the daemon's next reconcile) tries them."""
    from objlibd.state.store import StateStore

    if bool(args.paths) == bool(args.all):
        raise ObjlibdError(
            "name the files to retry, or --all", hint="objlibd retry PATH... | --all"
        )
    config = load_config(args)
    if not config.db_path.exists():
        raise ObjlibdError("nothing synced yet: no file to retry")
    wanted = None if args.all else [_relative(config, path) for path in args.paths]
    state = StateStore.open(config.db_path)
    try:
        released = state.failures.retry(wanted)
        if released:  # `objlibd activity` shows it
            state.jobs.record_decision("retry", {"count": len(released), "paths": released[:20]})
    finally:
        state.close()
    for path in released:
        print(f"objlibd: {path}: released; the next sync tries it once more")
    unknown = sorted(set(wanted or ()) - set(released))
    for path in unknown:
        print(f"objlibd: {path}: not held back (not quarantined, not backing off)")
    if not released:
        print("objlibd: nothing to retry")
    return 1 if unknown else 0


def _relative(config: Config, given: str) -> str:
    """Return `given` as a library-relative POSIX path (absolute paths under the root too)."""
    path = Path(given)
    if path.is_absolute():
        try:
            return path.relative_to(config.library.root).as_posix()
        except ValueError:
            raise ObjlibdError(
                f"{given} is not inside the library {config.library.root}",
                hint="give a path inside the library, or relative to it",
            ) from None
    return path.as_posix()
