"""The `objlibd` command line: parse, call into the package, print, return an exit code.

Each area registers its subcommands from its own module (`cli.engine`, `cli.daemon`,
`cli.service`); this module only builds the parser, loads the config when a command asks
for it, and turns `ObjlibdError` into `objlibd: <message>` + hint with the error's exit code.
Heavy imports (google-genai) stay inside the handlers that need them.

`objlibd status` is what people (and scripts) run most, so its plain forms skip argparse and
the other areas entirely (`plain_status`); anything unusual goes through the full parser.

Exit codes: 0 ok, 1 failure (some files failed, daemon not healthy), 2 usage or config error,
3 library volume unavailable, 130 interrupted.
"""

from __future__ import annotations

import sys

from objlibd import __version__
from objlibd.errors import ObjlibdError

TYPE_CHECKING = False  # `typing` costs milliseconds the hot `status` path does not spend
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser."""
    import argparse

    from objlibd.cli import daemon, engine, failures, search, service

    parser = argparse.ArgumentParser(
        prog="objlibd",
        description="Keep a Gemini File Search store true to a document library on a drive.",
    )
    parser.add_argument("--version", action="version", version=f"objlibd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for area in (engine, search, failures, daemon, service):
        area.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]); return the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    plain = plain_status(words)
    if plain is not None:
        from objlibd.status import cache as statuscache

        snap = statuscache.quick(plain[0])
        if snap is not None:  # answered without loading the config (heartbeat, or cache)
            return print_status(snap, as_json=plain[1])
        from objlibd.cli.daemon import show_status

        return guarded(lambda: show_status(*plain))
    args = build_parser().parse_args(words)
    return guarded(lambda: args.handler(args))


def print_status(snap: dict[str, object], *, as_json: bool) -> int:
    """Print a status snapshot (JSON or text); return its exit code (1 unless healthy)."""
    if as_json:
        import json

        print(json.dumps(snap, indent=2, sort_keys=True))
    else:
        from objlibd.status import text as statustext

        print(statustext.render(snap))
    return 0 if snap["healthy"] else 1


def plain_status(words: Sequence[str]) -> tuple[str | None, bool] | None:
    """Return (config, json) when `words` are plainly `status [--json] [--config PATH]`.

    Only exact spellings count (`--config PATH`, `--config=PATH`, `--json`, repeated as
    argparse allows); help, abbreviations or a value that starts with "-" return None and go
    through the full parser, which then decides exactly as it always did.
    """
    if not words or words[0] != "status":
        return None
    config: str | None = None
    as_json = False
    rest = list(words[1:])
    while rest:
        word = rest.pop(0)
        if word == "--json":
            as_json = True
        elif word.startswith("--config="):
            config = word.removeprefix("--config=")
        elif word == "--config" and rest and not rest[0].startswith("-"):
            config = rest.pop(0)
        else:
            return None
    return config, as_json


def guarded(command: Callable[[], int]) -> int:
    """Run a command; print an ObjlibdError (and Ctrl-C) the way people read it."""
    try:
        return int(command())
    except ObjlibdError as err:
        report(err)
        return err.exit_code
    except KeyboardInterrupt:
        print("objlibd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `objlibd logs | head`
        return 0


def report(err: ObjlibdError) -> None:
    """Print an ObjlibdError the way people read it: message, then what to do."""
    print(f"objlibd: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"  hint: {err.hint}", file=sys.stderr)
