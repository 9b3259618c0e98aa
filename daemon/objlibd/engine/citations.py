"""`objlibd search`'s own work: ask the store, then map each citation back to a file on the drive.

A citation names its file through the document's `path` metadata (set at upload); without it
(an SDK that drops metadata) the title is tried: the display name is the path for the local
store, and the File ID for an imported Gemini document, which the state DB maps back to the
path it uploaded. Each cited file then gets a state, decided by `file_state` (pure):

* present — on the drive with the content the store holds (the state DB's stat signature
  vouches for it; otherwise the file is hashed and compared with the document's `sha256`);
* changed — on the drive, but its content differs from what was uploaded;
* missing — the drive is there and the file is not;
* unavailable — the drive is not connected (or not this library): nothing is concluded;
* unknown — the citation names no file objlibd can place.

Reading only: the state DB is opened read-only, no store is created, nothing is written.
"""

from __future__ import annotations

import enum
import functools
import os
import stat as stat_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from objlibd.config import SEARCH_MODELS, Config
from objlibd.errors import StoreMismatchError
from objlibd.remote.search import Citation, SearchQuery, SearchResult, open_searcher
from objlibd.state import keys

if TYPE_CHECKING:
    from objlibd.credentials import KeyStore
    from objlibd.models import FileRecord
    from objlibd.state.store import StateStore


class FileState(enum.StrEnum):
    """Where a cited file stands now."""

    PRESENT = "present"
    CHANGED = "changed"
    MISSING = "missing"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Located:
    """A citation, the library path it maps to (if any) and that file's state."""

    citation: Citation
    path: str | None
    state: FileState


@dataclass(frozen=True, slots=True)
class Answer:
    """A search result with every citation located; `notes` are warnings for the person."""

    query: SearchQuery
    result: SearchResult
    located: tuple[Located, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the `--json` shape (documented in the README)."""
        return {
            "question": self.query.question,
            "where": self.query.where,
            "backend": self.result.backend,
            "model": self.result.model,
            "answer": self.result.answer,
            "grounded": self.result.grounded,
            "citations": [
                {
                    "path": item.path,
                    "title": item.citation.title,
                    "state": item.state.value,
                    "passages": [
                        {"text": p.text, "page": p.page, "score": p.score}
                        for p in item.citation.passages
                    ],
                    "metadata": dict(item.citation.metadata),
                }
                for item in self.located
            ],
            "not_indexed": [
                {"path": path, "reason": reason} for path, reason in self.result.not_indexed
            ],
            "notes": list(self.notes),
        }


def _sha256(path: Path) -> str:
    from objlibd.engine.disk import sha256_file

    return sha256_file(path)


@dataclass
class Library:
    """What locating needs to know about the library, read once per search."""

    root: Path
    available: bool
    records: Callable[[list[str]], Mapping[str, FileRecord]] = lambda _paths: {}
    by_file_id: Callable[[], Mapping[str, str]] = dict
    digest: Callable[[Path], str] = _sha256


def file_state(
    cited_sha: str | None,
    record: FileRecord | None,
    disk: tuple[int, int] | None,
    digest: Callable[[], str],
) -> FileState:
    """Decide a present file's state: `disk` is its (size, mtime_ns), None when absent."""
    if disk is None:
        return FileState.MISSING
    if cited_sha is None:
        return FileState.PRESENT  # nothing to compare with: it is there
    if (
        record is not None
        and record.content_hash == cited_sha
        and (
            record.size,
            record.mtime_ns,
        )
        == disk
    ):
        return FileState.PRESENT
    try:
        return FileState.PRESENT if digest() == cited_sha else FileState.CHANGED
    except OSError:
        return FileState.UNKNOWN


def locate(result: SearchResult, library: Library) -> tuple[Located, ...]:
    """Map every citation of `result` to a library path and that file's state."""
    paths = [_path_of(citation, library) for citation in result.citations]
    records = library.records([path for path in paths if path])
    located = []
    for citation, path in zip(result.citations, paths, strict=True):
        if path is None:
            located.append(Located(citation, None, FileState.UNKNOWN))
            continue
        if not library.available:
            located.append(Located(citation, path, FileState.UNAVAILABLE))
            continue
        target = library.root / path
        state = file_state(
            citation.sha256,
            records.get(path),
            _stat(target),
            functools.partial(library.digest, target),
        )
        located.append(Located(citation, path, state))
    return tuple(located)


def _path_of(citation: Citation, library: Library) -> str | None:
    path = citation.path
    if path is None and citation.title:
        by_id = library.by_file_id()
        path = by_id.get(f"files/{citation.title}") or by_id.get(citation.title)
        if path is None and library.records([citation.title]):
            path = citation.title
    return path if path is not None and _inside(path) else None


def _inside(path: str) -> bool:
    """Return True for a relative path that stays under the library root."""
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and bool(pure.parts)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns) if stat_module.S_ISREG(stat.st_mode) else None


# -- the whole search ---------------------------------------------------------------------


def ask(
    config: Config,
    query: SearchQuery,
    *,
    environ: Mapping[str, str] = os.environ,
    keystore: Callable[[], KeyStore] | None = None,
) -> Answer:
    """Ask the configured store and locate the citations; reads only (see the module doc)."""
    from objlibd.engine import volume
    from objlibd.state.store import StateStore

    state = StateStore.open(config.db_path, readonly=True) if config.db_path.exists() else None
    try:
        store_id = _synced_store(config, state)
        library_id = state.values.get_config(keys.LIBRARY_ID) if state else None
        searcher = open_searcher(config, store_id, environ=environ, keystore=keystore)
        try:
            result = searcher.search(query)
        finally:
            searcher.close()
        found = volume.probe(config.library, library_id)
        library = Library(config.library.root, found.available)
        if state is not None:
            library.records = state.files.records
            library.by_file_id = functools.partial(_file_ids, state)
        located = locate(result, library)
    finally:
        if state is not None:
            state.close()
    unavailable = "" if found.available else found.reason
    return Answer(query, result, located, _notes(config, result, unavailable))


def _synced_store(config: Config, state: StateStore | None) -> str | None:
    """Return the store id this state DB synced into (None: not synced yet)."""
    if state is None:
        return None
    name, backend = (
        state.values.get_config(keys.STORE_NAME),
        state.values.get_config(keys.STORE_BACKEND),
    )
    if name is not None and (name, backend) != (config.store.name, config.store.backend):
        raise StoreMismatchError(
            f'this state DB synced into {backend} store "{name}", but the config names '
            f'{config.store.backend} store "{config.store.name}"',
            hint="fix [store] in the config, or give the other store its own [state] dir",
        )
    return state.values.get_config(keys.STORE_ID)


def _file_ids(state: StateStore) -> dict[str, str]:
    return {
        record.remote_file_id: path
        for path, record in state.files.all_records().items()
        if record.remote_file_id
    }


def _notes(config: Config, result: SearchResult, volume_reason: str) -> tuple[str, ...]:
    notes = []
    model = config.search.model.removeprefix("models/")
    if result.backend == "gemini" and model not in SEARCH_MODELS:
        notes.append(
            f"[search] model {model!r} is not one objlibd knows to serve File Search "
            f"({', '.join(SEARCH_MODELS)}); it answered anyway"
        )
    if result.citations and volume_reason:
        notes.append(
            f"whether the cited files are still on the drive is not known: {volume_reason}"
        )
    return tuple(notes)
