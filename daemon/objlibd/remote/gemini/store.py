"""The Gemini File Search store: upload (two steps), resume, documents, deletion, health."""

from __future__ import annotations

import dataclasses
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
from objlibd.errors import (
    CredentialsMissingError,
    RemoteError,
    RemoteRejectedError,
    RemoteUnavailableError,
    RemoteUncertainError,
    SourceUnreadableError,
)
from objlibd.remote.base import Checkpoint, RemoteDoc, Resumed, UploadRequest
from objlibd.remote.gemini.calls import (
    Caller,
    LearnedPace,
    RefusedError,
    SavePace,
    poll_delays,
    refusal,
)
from objlibd.remote.gemini.convert import (
    check_uploadable,
    custom_metadata,
    document_name,
    file_id,
    http_options,
    is_finished,
    to_remote_doc,
)
from objlibd.remote.gemini.search import ask
from objlibd.remote.search import SearchQuery, SearchResult

log = structlog.get_logger("objlibd.remote.gemini")

PAGE_SIZE = 20
# Rate-limited requests per uploaded file (the upload and the import): what an ETA at the
# quota counts.
CALLS_PER_FILE = 2


class _StillRunningError(Exception):
    """An operation did not finish before the deadline."""


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
        self._sleep = self._calls.pause

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

    # -- upload -------------------------------------------------------------------------

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        """Upload, import with metadata, wait for the operation; return the document.

        The import is sent once: when its outcome is unknown (the answer was lost, the
        operation could not be polled to the end, objlibd is stopping) this raises
        RemoteUncertainError naming the operation, if any, and the temporary file.
        """
        store = self._require_store()
        mime_type = check_uploadable(request)
        metadata = custom_metadata(request)
        with self._calls.gate.slot():
            file_name = self._upload_file(request, mime_type)
            try:
                operation = self._import(store, file_name, request, metadata)
            except RemoteUncertainError as err:
                raise RemoteUncertainError(err.message, file_id=file_name) from None
            except RemoteError:
                self._forget_quietly(file_name)
                raise
            if checkpoint is not None:
                checkpoint(operation.name or "", file_name)
            doc_id = self._finish_import(operation, request, file_name)
            self._forget_quietly(file_name)
        return RemoteDoc(
            doc_id=doc_id,
            display_name=request.display_name,
            metadata=dict(request.metadata),
            file_id=file_name,
            size=request.size,
        )

    def _upload_file(self, request: UploadRequest, mime_type: str) -> str:
        path = str(request.local_path)

        def send() -> types.File:
            # A readable File ID per attempt: an imported document's title (what citations
            # show) is its File ID, and a retry must not collide with a lost first attempt.
            config = types.UploadFileConfig(
                mime_type=mime_type, display_name=request.display_name, name=file_id(request)
            )
            return self._client.files.upload(file=path, config=config)

        try:
            file = self._calls(f"upload of {request.rel_path}", send, gated=True)
        except RefusedError as err:
            raise refusal(f"Gemini refused the upload of {request.rel_path}", err) from None
        except OSError as err:
            raise SourceUnreadableError(
                f"cannot read {request.rel_path} for upload: {err.strerror or err}",
                gone=isinstance(err, FileNotFoundError | NotADirectoryError),
            ) from None
        if not file.name:
            raise RemoteUnavailableError(f"Gemini accepted {request.rel_path} but named no file")
        return self._wait_active(file, request)

    def _wait_active(self, file: types.File, request: UploadRequest) -> str:
        name = file.name or ""
        deadline = self._clock() + self._settings.operation_deadline_seconds
        delays = poll_delays(self._settings.poll_interval_seconds)
        while file.state not in (None, types.FileState.ACTIVE):
            if file.state == types.FileState.FAILED:
                self._forget_quietly(name)
                reason = file.error.message if file.error and file.error.message else "no reason"
                raise RemoteRejectedError(f"Gemini could not process {request.rel_path} ({reason})")
            if self._clock() >= deadline:
                raise RemoteUnavailableError(
                    f"Gemini is still processing {request.rel_path} after "
                    f"{self._settings.operation_deadline_seconds:g} s",
                    hint="the next sync uploads it again",
                )
            self._sleep(next(delays))
            file = self._get_file(name, request)
        return name

    def _get_file(self, name: str, request: UploadRequest) -> types.File:
        try:
            return self._calls("file status", lambda: self._client.files.get(name=name))
        except RefusedError as err:
            raise refusal(f"Gemini lost the upload of {request.rel_path}", err) from None

    def _import(
        self,
        store: str,
        file_name: str,
        request: UploadRequest,
        metadata: list[types.CustomMetadata],
    ) -> types.ImportFileOperation:
        config = types.ImportFileConfig(custom_metadata=metadata)
        try:
            operation = self._calls(
                f"import of {request.rel_path}",
                lambda: self._client.file_search_stores.import_file(
                    file_search_store_name=store, file_name=file_name, config=config
                ),
                gated=True,
                idempotent=False,
            )
        except RefusedError as err:
            raise refusal(f"Gemini refused to import {request.rel_path}", err) from None
        if not operation.name:
            raise RemoteUncertainError(
                f"Gemini answered the import of {request.rel_path} without an operation",
                file_id=file_name,
            )
        return operation

    def _finish_import(
        self, operation: types.ImportFileOperation, request: UploadRequest, file_name: str
    ) -> str:
        name = operation.name or ""
        try:
            finished = self._poll(operation)
        except _StillRunningError:
            raise RemoteUncertainError(
                f"the import of {request.rel_path} is still running after "
                f"{self._settings.operation_deadline_seconds:g} s",
                operation=name, file_id=file_name,
            ) from None  # fmt: skip
        except RemoteUnavailableError as err:
            raise RemoteUncertainError(
                f"the import of {request.rel_path} was started but not seen to the end: "
                f"{err.message}",
                operation=name, file_id=file_name,
            ) from None  # fmt: skip
        except RefusedError as err:
            raise RemoteUncertainError(
                f"Gemini lost the import of {request.rel_path}: {err}", file_id=file_name
            ) from None
        if finished.error:
            self._forget_quietly(file_name)
            message = str(finished.error.get("message") or finished.error)
            raise RemoteRejectedError(f"Gemini could not import {request.rel_path}: {message}")
        try:
            return document_name(finished)
        except RemoteUnavailableError as err:
            raise RemoteUncertainError(err.message, file_id=file_name) from None

    def _poll(self, operation: types.ImportFileOperation) -> types.ImportFileOperation:
        """Poll until done, failed or (via the response) finished; raise _StillRunningError."""
        deadline = self._clock() + self._settings.operation_deadline_seconds
        delays = poll_delays(self._settings.poll_interval_seconds)
        while not is_finished(operation):
            if self._clock() >= deadline:
                raise _StillRunningError(operation.name)
            self._sleep(next(delays))
            operation = self._calls(
                "operation status", partial(self._client.operations.get, operation)
            )
        return operation

    # -- resume -------------------------------------------------------------------------

    def resume(self, operation: str) -> Resumed:
        """Poll a checkpointed import to its end (RemoteUnavailableError if that is not now)."""
        pending = types.ImportFileOperation.model_validate({"name": operation})
        try:
            finished = self._poll(pending)
        except _StillRunningError:
            raise RemoteUnavailableError(
                f"the import operation {operation} is still running",
                hint="the next run polls it again",
            ) from None
        except RefusedError as err:
            log.info("remote.resume.unknown", operation=operation, error=str(err))
            return Resumed()
        if finished.error:
            message = str(finished.error.get("message") or finished.error)
            log.info("remote.resume.failed", operation=operation, error=message)
            return Resumed(error=message)
        doc = self._get_document(document_name(finished))
        return Resumed(doc=doc) if doc is not None else Resumed()

    def _get_document(self, name: str) -> RemoteDoc | None:
        try:
            doc = self._calls(
                "document lookup",
                lambda: self._client.file_search_stores.documents.get(name=name),
            )
        except RefusedError as err:
            if err.code == 404:
                return None
            raise refusal(f"Gemini refused to show document {name}", err) from None
        return to_remote_doc(doc)

    # -- documents ----------------------------------------------------------------------

    def list_docs(self, *, read_only: bool = False) -> Iterator[RemoteDoc]:
        """Yield every document (20 a page); failed imports' remains are deleted instead.

        `read_only` yields those too (marked `failed`) and deletes nothing.
        """
        store = self._require_store()
        token: str | None = None
        while True:
            page, token = self._documents_page(store, token)
            for doc in page:
                failed = doc.state == types.DocumentState.STATE_FAILED
                if failed and read_only:
                    yield dataclasses.replace(to_remote_doc(doc), failed=True)
                    continue
                if failed and doc.name:
                    log.info("remote.failed_document.deleted", doc=doc.name)
                    self.delete(doc.name)
                    continue
                yield to_remote_doc(doc)
            if not token:
                return

    def _documents_page(
        self, store: str, token: str | None
    ) -> tuple[list[types.Document], str | None]:
        config = types.ListDocumentsConfig(page_size=PAGE_SIZE, page_token=token)
        try:
            pager = self._calls(
                "document listing",
                lambda: self._client.file_search_stores.documents.list(parent=store, config=config),
            )
        except RefusedError as err:
            raise refusal(f"Gemini refused to list the documents of {store}", err) from None
        return list(pager.page), pager.config.get("page_token") or None

    def find(self, path: str) -> list[RemoteDoc]:
        """Return the documents whose identity metadata names `path` (lists the store)."""
        return [doc for doc in self.list_docs() if doc.path == path]

    def delete(self, doc_id: str) -> None:
        """Delete a document with force=True; one already gone counts as deleted."""
        name = doc_id if "/" in doc_id else f"{self._require_store()}/documents/{doc_id}"
        config = types.DeleteDocumentConfig(force=True)
        try:
            self._calls(
                "document deletion",
                lambda: self._client.file_search_stores.documents.delete(name=name, config=config),
                gated=True,
            )
        except RefusedError as err:
            if err.code == 404:
                return
            raise refusal(f"Gemini refused to delete {name}", err) from None

    def forget_file(self, file_id: str) -> None:
        """Delete a temporary Files-API file; one already gone (or expired) is fine."""
        if not file_id:
            return
        try:
            self._calls("file deletion", lambda: self._client.files.delete(name=file_id))
        except RefusedError as err:
            if err.code == 404:
                return
            raise refusal(f"Gemini refused to delete {file_id}", err) from None

    def sweep_leftovers(self) -> int:
        """Nothing to sweep: Files-API uploads the DB lost expire on their own after 48 h."""
        return 0

    def _forget_quietly(self, file_id: str) -> None:
        try:
            self.forget_file(file_id)
        except RemoteError as err:
            # It expires on its own after 48 h; not worth failing an upload over.
            log.info("remote.file.delete_failed", file=file_id, error=err.message)

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
