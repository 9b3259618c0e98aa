"""Asking a Gemini File Search store: `generate_content` with the `file_search` tool.

The request (shared/reference/gemini-file-search-query.md §1): the question as one user
turn, a system instruction to answer from the files only, and
`Tool(file_search=FileSearch(file_search_store_names=[store], top_k, metadata_filter))`. The
answer's citations are `grounding_metadata.grounding_chunks[].retrieved_context`: the chunk
text, the document's title (its display name, which for an imported document is the File
ID), the page when there is one, and the document's `custom_metadata`, whose `path` maps the
citation back to a file on the drive. Chunks of one document are grouped into one citation;
a support's confidence scores become the passages' scores. A response without grounding
chunks is an ungrounded answer, said as such by the caller.

Refusals become objlibd's errors: an unknown or retired model is a config error (exit 2), a
store the service does not know is RemoteStoreMissingError, a filter it refuses a QueryError,
a quota that stays exhausted after the retry RemoteUnavailableError.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from google import genai
from google.genai import types

from objlibd.errors import (
    ConfigError,
    QueryError,
    RemoteStoreMissingError,
    RemoteUnavailableError,
)
from objlibd.remote.gemini.calls import Caller, RefusedError, refusal
from objlibd.remote.gemini.convert import metadata_values
from objlibd.remote.search import Passage, SearchQuery, SearchResult, group_citations

if TYPE_CHECKING:
    from objlibd.config import Config
    from objlibd.credentials import KeyStore
    from objlibd.remote.gemini.store import GeminiStore

SYSTEM_INSTRUCTION = (
    "Answer only from the documents the file search tool returns, and use the tool for every "
    "question. If those documents do not contain the answer, say so in one sentence."
)
SEARCH_ATTEMPTS = 2  # an interactive question is retried once, not for minutes


def search_config(store: str, query: SearchQuery) -> types.GenerateContentConfig:
    """Return the generate_content config: File Search on `store`, the filter, top_k."""
    return types.GenerateContentConfig(
        system_instruction=SYSTEM_INSTRUCTION,
        tools=[
            types.Tool(
                file_search=types.FileSearch(
                    file_search_store_names=[store],
                    top_k=query.top_k,
                    metadata_filter=query.where,
                )
            )
        ],
    )


def to_result(response: types.GenerateContentResponse, model: str) -> SearchResult:
    """Turn a generate_content response into the answer and its citations (pure)."""
    candidate = response.candidates[0] if response.candidates else None
    parts = candidate.content.parts if candidate and candidate.content else None
    answer = "".join(part.text for part in parts or [] if part.text and not part.thought)
    grounding = candidate.grounding_metadata if candidate else None
    confidence = _confidence(grounding)
    chunks = []
    for index, chunk in enumerate(grounding.grounding_chunks or [] if grounding else []):
        context = chunk.retrieved_context
        if context is None:
            continue
        metadata = metadata_values(context.custom_metadata or [], join_lists=True)
        passage = Passage(context.text or "", context.page_number, confidence.get(index))
        chunks.append((context.title or "", None, metadata, passage))
    citations = group_citations(chunks)
    return SearchResult(
        backend="gemini",
        answer=answer.strip() or None,
        citations=citations,
        grounded=bool(citations),
        model=response.model_version or model,
    )


def _confidence(grounding: types.GroundingMetadata | None) -> dict[int, float]:
    """Return each chunk's best confidence over the supports that cite it."""
    best: dict[int, float] = {}
    for support in grounding.grounding_supports or [] if grounding else []:
        indices = support.grounding_chunk_indices or []
        scores = support.confidence_scores or []
        for position, index in enumerate(indices):
            if position < len(scores):
                best[index] = max(best.get(index, 0.0), float(scores[position]))
    return best


def ask(
    client: genai.Client, calls: Caller, store: str, query: SearchQuery, model: str
) -> SearchResult:
    """Send one question to `model` with File Search on `store`; return the result."""
    config = search_config(store, query)
    try:
        response = calls(
            f"search with {model}",
            lambda: client.models.generate_content(
                model=model, contents=query.question, config=config
            ),
        )
    except RefusedError as err:
        raise _refused(err, store, model, query) from None
    except RemoteUnavailableError as err:
        if "429" not in err.message:
            raise
        raise RemoteUnavailableError(
            f"Gemini's quota for {model} is used up for now ({err.message})",
            hint="wait a minute and ask again; a higher tier raises the limit",
        ) from None
    return to_result(response, model)


def _refused(err: RefusedError, store: str, model: str, query: SearchQuery) -> Exception:
    text = str(err)
    if err.code == 404 and "models/" in text:
        from objlibd.config import SEARCH_MODELS

        return ConfigError(
            f"[search] model {model!r}: Gemini does not serve it ({text})",
            hint=f"set [search] model to one of: {', '.join(SEARCH_MODELS)}",
        )
    if "not exist" in text or (err.code == 404 and "fileSearchStores" in text):
        return RemoteStoreMissingError(
            f"the Gemini store {store} does not exist ({text})",
            hint="was it deleted in the console? `objlibd doctor` says how to start over",
        )
    if query.where is not None and err.code == 400 and "filter" in text.lower():
        return QueryError(f"Gemini refused the --where filter {query.where!r}: {text}")
    return refusal(f"Gemini refused the search with {model}", err)


class GeminiSearcher:
    """A Gemini store bound for searching with one model."""

    backend = "gemini"

    def __init__(
        self, store: GeminiStore, store_id: str, model: str, source: Path | None = None
    ) -> None:
        self._store = store
        self.store_id = store_id
        self.model = model.removeprefix("models/")
        self._source = source  # the config file, named in a model error

    def search(self, query: SearchQuery) -> SearchResult:
        """Ask the store the question."""
        try:
            return self._store.search(self.store_id, query, self.model)
        except ConfigError as err:
            where = f"{self._source}: " if self._source else ""
            raise ConfigError(where + err.message, hint=err.hint) from None

    def close(self) -> None:
        """Close the SDK's connections."""
        self._store.close()


def open_gemini_searcher(
    config: Config,
    store_id: str | None,
    *,
    environ: Mapping[str, str] = os.environ,
    keystore: Callable[[], KeyStore] | None = None,
) -> GeminiSearcher:
    """Return a searcher on the synced store (else the one named in the config); never creates.

    Raises:
        CredentialsMissingError: no API key.
        RemoteStoreMissingError: no store of that name exists.
    """
    from objlibd.credentials import os_keychain
    from objlibd.remote.gemini.store import open_gemini

    attempts = min(config.gemini.max_attempts, SEARCH_ATTEMPTS)
    settings = dataclasses.replace(config.gemini, max_attempts=attempts)
    store = open_gemini(settings, environ=environ, keystore=keystore or os_keychain)
    try:
        found = store_id or store.find_store(config.store.name)
    except BaseException:
        store.close()
        raise
    if found is None:
        store.close()
        raise RemoteStoreMissingError(
            f'the Gemini store "{config.store.name}" does not exist yet',
            hint="run `objlibd sync` (or start the daemon) to create and fill it",
        )
    return GeminiSearcher(store, found, config.search.model, config.source)
