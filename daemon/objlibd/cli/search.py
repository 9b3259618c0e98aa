"""`objlibd search`: ask the library; the answer's citations mapped back to files on the drive.

Needs no daemon and changes nothing (see `objlibd.citations`). Exit 0 when something in the
library was cited, 1 when nothing was (or the model answered without citing the store), 2
for a bad question, filter or config, as elsewhere.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import TYPE_CHECKING, Any

from objlibd.cli.common import add_config_option, load_config, setup_console_logging

if TYPE_CHECKING:
    from objlibd.engine.citations import Answer

WIDTH = 96
SNIPPET_CHARS = 300
NOT_INDEXED_SHOWN = 5


def register(subparsers: Any) -> None:
    """Add `search`."""
    search = subparsers.add_parser(
        "search",
        help="ask the library; answers cited back to files on the drive",
        description="Ask the store a question. gemini: an answer and the passages it is grounded "
        "on; local: the best-matching passages (full-text, bm25). Each cited file is shown with "
        "its library path and whether it is present, changed or missing.",
    )
    add_config_option(search)
    search.add_argument("question", help='what to ask; "quoted words" must appear together')
    search.add_argument(
        "--where",
        metavar="FILTER",
        help="only documents whose metadata match, e.g. 'collection = \"OPAR\"' "
        "(=, !=, <, <=, >, >=, AND, OR, NOT, parentheses)",
    )
    search.add_argument(
        "--top-k", type=int, metavar="N", help="passages to retrieve (default: [search] top_k)"
    )
    search.add_argument("--json", action="store_true", help="print the result as JSON")
    search.set_defaults(handler=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Ask the store; print the answer and where each citation lives on the drive."""
    import sys

    from objlibd.engine import citations
    from objlibd.remote.search import SearchQuery

    config = load_config(args)
    setup_console_logging(config)
    top_k = config.search.top_k if args.top_k is None else args.top_k
    query = SearchQuery(args.question, args.where, top_k)
    answer = citations.ask(config, query)
    for note in answer.notes:
        print(f"objlibd: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_answer(answer))
    return 0 if answer.result.grounded else 1


def render_answer(answer: Answer) -> str:
    """Return the answer for people: the answer, then each cited file with its passages."""
    result = answer.result
    lines: list[str] = []
    if result.answer is not None:
        lines.append(f"Answer ({result.model or result.backend}):")
        lines += textwrap.wrap(result.answer, WIDTH, initial_indent="  ", subsequent_indent="  ")
        lines.append("")
    if not answer.located:
        if result.answer is not None:
            lines.append(
                "Not grounded in the library: the store cited no passage (the model may have "
                "answered from its own knowledge)."
            )
        else:
            lines.append("Nothing in the library matched.")
    else:
        count = sum(len(item.citation.passages) for item in answer.located)
        files = len(answer.located)
        lines.append(f"Sources ({_plural(files, 'file')}, {_plural(count, 'passage')}):")
    for number, item in enumerate(answer.located, start=1):
        name = item.path or f"{item.citation.title or '?'} (not a library path)"
        lines.append(f"{number:>3}. {name}  [{item.state.value}]")
        for passage in item.citation.passages:
            text = " ".join(passage.text.split())
            if len(text) > SNIPPET_CHARS:
                text = text[: SNIPPET_CHARS - 1] + "…"
            page = f" (page {passage.page})" if passage.page else ""
            lines += textwrap.wrap(
                f'"{text}"{page}', WIDTH, initial_indent="       ", subsequent_indent="       "
            )
    skipped = result.not_indexed
    if skipped:
        lines.append("")
        lines.append(f"{len(skipped)} documents are not indexed for search:")
        for path, reason in skipped[:NOT_INDEXED_SHOWN]:
            lines.append(f"  {path}: {reason}")
        if len(skipped) > NOT_INDEXED_SHOWN:
            lines.append(f"  ... and {len(skipped) - NOT_INDEXED_SHOWN} more (--json lists all)")
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
