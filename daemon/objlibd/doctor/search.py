"""`objlibd doctor --deep`: can a synced file actually be found again by searching the store?

The check picks a synced text file whose content on the drive is the content the state DB
recorded, takes a distinctive phrase from it (the run of words with the most long, unrepeated
words), searches the store for that phrase with `objlibd search`'s own code, and passes when
a citation maps back to that file. A document deleted behind objlibd's back, an index that
lost it, or metadata that no longer names the file all FAIL here, with the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from objlibd.config import Config
from objlibd.credentials import KeyStore
from objlibd.doctor.checks import Check, Level
from objlibd.errors import CredentialsMissingError, ObjlibdError
from objlibd.state import keys

NAME = "search finds a synced file"
TEXT_EXTENSIONS = (".txt", ".md", ".markdown", ".csv", ".html", ".htm", ".json", ".xml", ".tex")
PHRASE_WORDS = 6
MAX_CANDIDATES = 50
READ_BYTES = 1 << 20
_WORD = re.compile(r"[^\W_]+")


def distinctive_phrase(text: str, words: int = PHRASE_WORDS) -> str | None:
    """Return `words` consecutive words of `text` most likely to be found only there, or None.

    Longer words are rarer; a window scores the summed length of its distinct words.
    """
    tokens = _WORD.findall(text)
    if len(tokens) < words:
        return None
    best, best_score = 0, -1
    for start in range(len(tokens) - words + 1):
        window = {token.lower() for token in tokens[start : start + words]}
        score = sum(len(token) for token in window)
        if score > best_score:
            best, best_score = start, score
    return " ".join(tokens[best : best + words])


def pick_sample(
    config: Config, records: list[tuple[str, int | None, int | None]]
) -> tuple[str, str] | None:
    """Return (path, phrase) of a synced text file unchanged on the drive, or None.

    `records` are (path, size, mtime_ns) of uploaded files as the state DB recorded them.
    """
    root = config.library.root
    tried = 0
    for path, size, mtime_ns in sorted(records):
        if not path.lower().endswith(TEXT_EXTENSIONS):
            continue
        tried += 1
        if tried > MAX_CANDIDATES:
            break
        phrase = _phrase_of(root / path, size, mtime_ns)
        if phrase is not None:
            return path, phrase
    return None


def _phrase_of(target: Path, size: int | None, mtime_ns: int | None) -> str | None:
    try:
        stat = target.stat()
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
            return None  # changed since it was synced: its document holds other words
        with target.open("rb") as handle:
            text = handle.read(READ_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    return distinctive_phrase(text)


def check_search(  # noqa: PLR0911 - each way out is one line of the report
    config: Config,
    environ: Mapping[str, str],
    keystore: Callable[[], KeyStore],
    *,
    offline: bool,
) -> Check:
    """Search for a phrase of a synced file; OK when a citation maps back to that file."""
    from objlibd.engine import citations, volume
    from objlibd.models import FileStatus
    from objlibd.remote.search import SearchQuery
    from objlibd.state.store import StateStore

    if offline and config.store.backend == "gemini":
        return Check(NAME, Level.OK, "not checked (--offline)")
    if not config.db_path.exists():
        return Check(NAME, Level.WARN, "not checked: nothing synced yet", "run `objlibd sync`")
    state = StateStore.open(config.db_path, readonly=True)
    try:
        found = volume.probe(config.library, state.values.get_config(keys.LIBRARY_ID))
        uploaded = [
            (r.path, r.size, r.mtime_ns) for r in state.files.with_status(FileStatus.UPLOADED)
        ]
    finally:
        state.close()
    if not found.available:
        return Check(NAME, Level.WARN, f"not checked: {found.reason}", found.hint)
    sample = pick_sample(config, uploaded)
    if sample is None:
        return Check(
            NAME,
            Level.WARN,
            "not checked: no synced text file (unchanged since its upload) to search for",
            "sync a .txt or .md file, then run doctor --deep again",
        )
    path, phrase = sample
    try:
        answer = citations.ask(
            config, SearchQuery(f'"{phrase}"', top_k=config.search.top_k),
            environ=environ, keystore=keystore,
        )  # fmt: skip
    except CredentialsMissingError as err:
        return Check(NAME, Level.WARN, f"not checked: {err.message}", err.hint)
    except ObjlibdError as err:
        return Check(NAME, Level.FAIL, f'searching "{phrase}" failed: {err.message}', err.hint)
    cited = [item.path or item.citation.title for item in answer.located]
    if path in cited:
        return Check(NAME, Level.OK, f'"{phrase}" found {path} ({answer.result.backend})')
    others = f" (cited instead: {', '.join(cited[:3])})" if cited else ""
    return Check(
        NAME,
        Level.FAIL,
        f'searched "{phrase}" from {path}: no citation maps back to it{others}',
        "its document is gone from the store or was never indexed: `objlibd sync "
        "--cleanup-orphans` notices lost documents, and the next sync (or the daemon) "
        "uploads them again",
    )
