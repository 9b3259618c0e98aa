"""The Gemini File Search store: the backend objlibd talks to, and the store's lifecycle.

`GeminiStore` finds or creates the store, reports its stats and health, and hands the rest
to its parts over one SDK client and one call wrapper: `imports.Importer` (upload, import,
resume) and `documents.Documents` (listing, lookup, deletes).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial

import structlog
from google import genai
from google.genai import types

from objlibd.config import GeminiSettings
from objlibd.credentials import API_KEY_ENV, KeyStore, os_keychain, require_api_key
from objlibd.errors import CredentialsMissingError, RemoteUnavailableError, RemoteUncertainError
from objlibd.remote.base import Checkpoint, RemoteDoc, Resumed, UploadRequest
from objlibd.remote.gemini.calls import Caller, LearnedPace, RefusedError, SavePace, refusal
from objlibd.remote.gemini.convert import http_options
from objlibd.remote.gemini.documents import PAGE_SIZE, Documents
from objlibd.remote.gemini.imports import Importer
from objlibd.remote.gemini.search import ask
from objlibd.remote.search import SearchQuery, SearchResult

log = structlog.get_logger("objlibd.remote.gemini")

# Rate-limited requests per uploaded file (the upload and the import): what an ETA at the
# quota counts.
CALLS_PER_FILE = 2


def open_gemini(
    settings: GeminiSettings,
    *,
    environ: Mapping[str, str] = os.environ,
    keystore: Callable[[], KeyStore] = os_keychain,
    stop: threading.Event | None = None,
    learned_pace: LearnedPace | None = None,
    save_pace: SavePace | None = None,
) -> GeminiStore:
    """Return a GeminiStore using the API key from the environment or the OS keychain.

    `learned_pace` / `save_pace`: the pace learned for this store by an earlier run, and
    where to persist it as it changes (see `Caller`).

    Raises:
        CredentialsMissingError: neither GEMINI_API_KEY nor the keychain holds a key.
    """
    key = require_api_key(environ, keystore)
    from objlibd import logs

    logs.register_secret(key)  # whatever the source, the redactor knows this value
    return GeminiStore(settings, key, stop=stop, learned_pace=learned_pace, save_pace=save_pace)


class GeminiStore:
    """RemoteStore on a Gemini File Search store; thread-safe for parallel uploads."""

    backend = "gemini"

    def __init__(
        self,
        settings: GeminiSettings,
        api_key: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        stop: threading.Event | None = None,
        learned_pace: LearnedPace | None = None,
        save_pace: SavePace | None = None,
    ) -> None:
        """`sleep` defaults to waiting on `stop`: a shutdown cuts every wait short."""
        if not api_key:
            raise CredentialsMissingError("no Gemini API key given", hint=f"set {API_KEY_ENV}")
        self.concurrency: int = settings.max_concurrent_uploads
        self._settings = settings
        self._clock = clock
        self._client = genai.Client(api_key=api_key, http_options=http_options(settings))
        self._store: str | None = None
        self._calls = Caller(
            settings, concurrency=self.concurrency, clock=clock, sleep=sleep,
            stop=stop or threading.Event(),
            labels=lambda: {"backend": self.backend, "store": self._store},
            learned=learned_pace, save_pace=save_pace,
        )  # fmt: skip
        self._documents = Documents(self._client, self._calls, self._require_store)
        self._importer = Importer(self._documents, settings, clock=clock)

    # -- the store itself ---------------------------------------------------------------

    def ensure_store(self, name: str) -> str:
        """Find the store with display name `name` (the oldest if several), else create it.

        A creation whose answer was lost is settled by listing again, never by creating a
        second store of the same name.
        """
        for _ in range(self._settings.max_attempts):
            found = self.find_store(name)
            if found is not None:
                return found
            try:
                self._store = self._create_store(name)
            except RemoteUncertainError as err:
                log.info("remote.store.create_uncertain", display_name=name, error=err.message)
                continue
            return self._store
        raise RemoteUnavailableError(f"Gemini did not settle the creation of store {name!r}")

    def find_store(self, name: str) -> str | None:
        """Use the store with display name `name` (the oldest if several); create nothing."""
        matches = [s.name for s in self._stores() if s.display_name == name and s.name]
        if len(matches) > 1:
            log.warning("remote.store.duplicates", display_name=name, stores=matches)
        if matches:
            self._store = matches[0]
        return self._store if matches else None

    def _create_store(self, name: str) -> str:
        config = types.CreateFileSearchStoreConfig(display_name=name)
        try:
            created = self._calls(
                "store creation",
                lambda: self._client.file_search_stores.create(config=config),
                gated=True,
                idempotent=False,
            )
        except RefusedError as err:
            raise refusal(f"Gemini refused to create store {name!r}", err) from None
        if not created.name:
            raise RemoteUnavailableError("Gemini created a store but returned no name")
        log.info("remote.store.created", display_name=name, store=created.name)
        return created.name

    def search(self, store: str, query: SearchQuery, model: str) -> SearchResult:
        """Ask `model` the question with File Search on `store` (`gemini.search.ask`)."""
        return ask(self._client, self._calls, store, query, model)

    def _stores(self) -> Iterator[types.FileSearchStore]:
        token: str | None = None
        while True:
            config = types.ListFileSearchStoresConfig(page_size=PAGE_SIZE, page_token=token)
            try:
                pager = self._calls(
                    "store listing", partial(self._client.file_search_stores.list, config=config)
                )
            except RefusedError as err:
                raise refusal("Gemini refused to list stores", err) from None
            yield from pager.page
            token = pager.config.get("page_token") or None
            if not token:
                return

    def _require_store(self) -> str:
        if self._store is None:
            raise RuntimeError("ensure_store() must be called before using the gemini store")
        return self._store

    # -- documents (imports.Importer, documents.Documents) ------------------------------

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        """Upload, import with metadata, wait for the operation; return the document.

        The import is sent once: when its outcome is unknown (the answer was lost, the
        operation could not be polled to the end, objlibd is stopping) this raises
        RemoteUncertainError naming the operation, if any, and the temporary file.
        """
        return self._importer.upload(request, checkpoint)

    def resume(self, operation: str) -> Resumed:
        """Poll a checkpointed import to its end (RemoteUnavailableError if that is not now)."""
        return self._importer.resume(operation)

    def list_docs(self, *, read_only: bool = False) -> Iterator[RemoteDoc]:
        """Yield every document (20 a page); failed imports' remains are deleted instead.

        `read_only` yields those too (marked `failed`) and deletes nothing.
        """
        return self._documents.list_docs(read_only=read_only)

    def find(self, path: str) -> list[RemoteDoc]:
        """Return the documents whose identity metadata names `path` (lists the store)."""
        return self._documents.find(path)

    def delete(self, doc_id: str) -> None:
        """Delete a document with force=True; one already gone counts as deleted."""
        self._documents.delete(doc_id)

    def forget_file(self, file_id: str) -> None:
        """Delete a temporary Files-API file; one already gone (or expired) is fine."""
        self._documents.forget_file(file_id)

    def sweep_leftovers(self) -> int:
        """Nothing to sweep: Files-API uploads the DB lost expire on their own after 48 h."""
        return 0

    # -- status -------------------------------------------------------------------------

    def stats(self) -> dict[str, int] | None:
        """Return the store's own document count and size (one call), None before ensure_store."""
        if self._store is None:
            return None
        name = self._store
        try:
            found = self._calls(
                "store lookup", lambda: self._client.file_search_stores.get(name=name)
            )
        except RefusedError as err:
            raise refusal(f"Gemini refused to show store {name}", err) from None
        return {
            "documents": int(found.active_documents_count or 0),
            "pending": int(found.pending_documents_count or 0),
            "failed": int(found.failed_documents_count or 0),
            "size_bytes": int(found.size_bytes or 0),
        }

    def health(self) -> dict[str, object]:
        """Return store, breaker, pace (and the rate limit it sets), concurrency and
        reachability; never the key."""
        failing = self._calls.failing()
        return {
            "backend": self.backend,
            "store": self._store,
            "breaker": self._calls.breaker.snapshot(),
            "rate_limit_tier": self._settings.rate_limit_tier,
            "rate_limit": self._calls.rate_limit(),
            "calls_per_file": CALLS_PER_FILE,
            "pace": self._calls.pace.snapshot(),
            "concurrency": self._calls.gate.limit,
            "max_concurrency": self.concurrency,
            "in_flight": self._calls.gate.active,
            "failing_for_s": None if failing is None else round(failing[0], 3),
            "last_error": None if failing is None else failing[1],
        }

    def release_memory(self) -> None:
        """Nothing to drop: the Gemini store keeps no caches between batches."""

    def close(self) -> None:
        """Close the SDK's HTTP connections."""
        self._client.close()
