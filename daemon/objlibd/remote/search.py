"""Searching a store: one small interface for both backends (results = answer? + citations).

`objlibd search` and `objlibd doctor --deep` ask a `Searcher` a `SearchQuery` and get a
`SearchResult`: the gemini backend answers in words and cites the passages it grounded the
answer on; the local backend ranks passages of its full-text index and has no answer. Either
way each `Citation` is one document (deduplicated), with the passages that support it and the
document's metadata, so the caller can map it back to a file on the drive by its `path`.

Opening a searcher never creates anything: a store that does not exist yet is
RemoteStoreMissingError, and the backends import lazily (the local one never loads
google-genai).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from objlibd.errors import QueryError
from objlibd.remote.base import PATH_KEY, SHA256_KEY, MetadataValue
from objlibd.remote.metadatafilter import parse_filter

if TYPE_CHECKING:
    from objlibd.config import Config
    from objlibd.credentials import KeyStore

MAX_QUESTION_CHARS = 4000


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One question, an optional metadata filter (AIP-160 subset) and how many passages."""

    question: str
    where: str | None = None
    top_k: int = 8

    def __post_init__(self) -> None:
        if not self.question.strip():
            raise QueryError("nothing to search for: the question is empty")
        if len(self.question) > MAX_QUESTION_CHARS:
            raise QueryError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
        if not 1 <= self.top_k <= 100:
            raise QueryError(f"--top-k {self.top_k}: must be between 1 and 100")
        if self.where is not None:
            parse_filter(self.where)  # a bad filter is a clear QueryError before any call


@dataclass(frozen=True, slots=True)
class Passage:
    """A piece of a document that supports the result (a chunk, a snippet)."""

    text: str
    page: int | None = None
    score: float | None = None  # local: bm25 relevance (higher is better); gemini: confidence


@dataclass(frozen=True, slots=True)
class Citation:
    """One cited document: its identity, its title in the store, and its passages."""

    title: str
    passages: tuple[Passage, ...]
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    doc_id: str | None = None

    @property
    def path(self) -> str | None:
        """Return the library path recorded in the document's metadata, if any."""
        value = self.metadata.get(PATH_KEY)
        return value if isinstance(value, str) and value else None

    @property
    def sha256(self) -> str | None:
        """Return the content hash recorded at upload, if any."""
        value = self.metadata.get(SHA256_KEY)
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a store answered: `answer` (gemini only) and the cited documents, best first.

    `grounded` is False when the model answered without citing the store (from its own
    knowledge, or because nothing matched). `not_indexed` (local) lists (path, reason) of the
    documents the full-text index cannot search (no text extractor for the format here).
    """

    backend: str
    answer: str | None
    citations: tuple[Citation, ...]
    grounded: bool
    model: str | None = None
    not_indexed: tuple[tuple[str, str], ...] = ()


class Searcher(Protocol):
    """A store bound for searching; opened by `open_searcher`."""

    backend: str

    def search(self, query: SearchQuery) -> SearchResult:
        """Ask the store; raise `objlibd.errors.Remote*` or QueryError."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def group_citations(
    chunks: Sequence[tuple[str, str | None, Mapping[str, MetadataValue], Passage]],
) -> tuple[Citation, ...]:
    """Group (title, doc id, metadata, passage) chunks into one citation per document.

    A document is its path when it has one, else its doc id, else its title; the first
    chunk's position decides the citation's rank, and repeated passages are dropped.
    """
    order: list[str] = []
    first: dict[str, tuple[str, str | None, Mapping[str, MetadataValue]]] = {}
    passages: dict[str, list[Passage]] = {}
    for title, doc_id, metadata, passage in chunks:
        path = metadata.get(PATH_KEY)
        key = f"p:{path}" if isinstance(path, str) and path else f"d:{doc_id or title}"
        if key not in first:
            order.append(key)
            first[key] = (title, doc_id, metadata)
            passages[key] = []
        if all((p.text, p.page) != (passage.text, passage.page) for p in passages[key]):
            passages[key].append(passage)
    return tuple(
        Citation(
            title=first[key][0],
            passages=tuple(passages[key]),
            metadata=dict(first[key][2]),
            doc_id=first[key][1],
        )
        for key in order
    )


def open_searcher(
    config: Config,
    store_id: str | None,
    *,
    environ: Mapping[str, str] = os.environ,
    keystore: Callable[[], KeyStore] | None = None,
) -> Searcher:
    """Return a searcher bound to the configured store; never creates a store.

    `store_id` is the store the state DB synced into (None: look it up by display name).

    Raises:
        RemoteStoreMissingError: the store does not exist (yet).
        CredentialsMissingError: gemini backend without an API key.
    """
    if config.store.backend == "gemini":
        from objlibd.remote.gemini.search import open_gemini_searcher

        return open_gemini_searcher(config, store_id, environ=environ, keystore=keystore)
    from objlibd.remote.local import LocalStore

    return LocalStore(config.state.dir / "local-store").searcher(config.store.name, store_id)
