"""The `objlibd` command line: parse, call into the package, print, return an exit code.

Each area registers its subcommands from its own module (`cli.engine`, `cli.daemon`,
`cli.service`); this module only builds the parser, loads the config when a command asks
for it, and turns `ObjlibdError` into `objlibd: <message>` + hint with the error's exit code.
Heavy imports (google-genai) stay inside the handlers that need them.

Exit codes: 0 ok, 1 failure (some files failed, daemon not healthy), 2 usage or config error,
3 library volume unavailable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from objlibd import __version__
from objlibd.errors import ObjlibdError


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser."""
    from objlibd.cli import daemon, engine, service

    parser = argparse.ArgumentParser(
        prog="objlibd",
        description="Keep a Gemini File Search store true to a document library on a drive.",
    )
    parser.add_argument("--version", action="version", version=f"objlibd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for area in (engine, daemon, service):
        area.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
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
