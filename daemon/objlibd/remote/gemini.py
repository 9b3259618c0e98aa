"""The Gemini File Search backend, on the official google-genai SDK.

This is the only module that imports `google.genai` (and `tenacity`): SDK types and errors
stop here and leave as `RemoteDoc` values and `objlibd.errors.Remote*` exceptions.

Upload is the two-step pattern (the only way to attach custom metadata): Files API upload
→ wait until the File is ACTIVE → `importFile` with customMetadata → checkpoint the
operation name → poll the operation with a deadline → delete the temporary File.

Every SDK call goes through `_call`, which
* waits while the circuit breaker is open (and lets one probe through when half-open),
* takes a rate-limiter slot for the calls that create or delete things (file uploads,
  imports, store creation, document deletion; polls and reads are not quota-bearing),
* retries 408/429/5xx and transport failures with exponential backoff plus jitter,
  honouring the server's RetryInfo `retryDelay`, for at most `max_attempts` tries,
* records every answer on the breaker, and
* translates: storage quota → RemoteQuotaError at once; other 4xx → the caller decides
  (404 on delete is success, on upload it is RemoteRejectedError).

The SDK's own retries are switched off (`attempts=1`): we own retrying. The API key is
handed to the SDK and never kept, logged, or put in errors or `health()`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import httpx2
import structlog
import tenacity
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from objlibd.config import GeminiSettings
from objlibd.credentials import API_KEY_ENV, KeyStore, os_keychain, require_api_key
from objlibd.errors import (
    CredentialsMissingError,
    RemoteError,
    RemoteQuotaError,
    RemoteRejectedError,
    RemoteUnavailableError,
    RemoteUnsupportedError,
)
from objlibd.remote.base import (
    MAX_METADATA_ENTRIES,
    Checkpoint,
    MetadataValue,
    RemoteDoc,
    UploadRequest,
)
from objlibd.remote.breaker import BreakerSettings, CircuitBreaker, State
from objlibd.remote.ratelimit import RateLimiter

log = structlog.get_logger("objlibd.remote.gemini")

T = TypeVar("T")

MAX_FILE_BYTES = 100 * 1024 * 1024
PAGE_SIZE = 20
TRANSIENT_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Failures after which the server may still have acted on the request (a lost answer):
# the request went out and the answer did not come back.
AMBIGUOUS_CODES = frozenset({504})
_AMBIGUOUS_TRANSPORT = (httpx2.ReadTimeout, httpx2.ReadError, httpx2.RemoteProtocolError)
BREAKER_POLL_CAP_SECONDS = 5.0

# File Search "Supported file types" (reference §6): the ones a document library holds.
SUPPORTED_MIME_TYPES = frozenset({
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.ms-excel",
    "application/json",
    "application/xml",
    "application/zip",
    "application/x-latex",
    "application/x-tex",
    "application/typescript",
    "text/plain",
    "text/markdown",
    "text/html",
    "text/csv",
    "text/tab-separated-values",
    "text/rtf",
    "text/xml",
    "text/yaml",
    "text/x-python",
})  # fmt: skip
# Spellings other tools produce for a supported type.
MIME_ALIASES = {
    "application/rtf": "text/rtf",
    "text/x-markdown": "text/markdown",
    "application/x-yaml": "text/yaml",
    "application/yaml": "text/yaml",
    "text/x-tex": "application/x-tex",
    "application/xhtml+xml": "text/html",
}

_TRANSPORT_ERRORS = (httpx2.TransportError,)
# Upload-protocol hiccups the SDK raises as KeyError/ValueError (reference §2.1).
_UPLOAD_HICCUPS = ("Upload URL was not returned", "upload status is not finalized")


class _TransientError(Exception):
    """One failed attempt that is worth retrying."""

    def __init__(self, summary: str, retry_delay: float | None) -> None:
        super().__init__(summary)
        self.retry_delay = retry_delay


class _RefusedError(Exception):
    """The server answered a definite no (4xx other than 408/429): the caller decides."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code


class _StillRunningError(Exception):
    """An operation did not finish before the deadline."""


@dataclass
class _Attempts:
    """What happened across one `_call`'s attempts."""

    ambiguous: bool = False  # a failure after which the server may still have acted


class _Gate:
    """A semaphore whose size can change while threads wait on it."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._limit = max(1, limit)
        self._active = 0

    @property
    def limit(self) -> int:
        with self._cond:
            return self._limit

    def set_limit(self, limit: int) -> None:
        with self._cond:
            self._limit = max(1, limit)
            self._cond.notify_all()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self._active >= self._limit:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


# -- opening ------------------------------------------------------------------------------


def open_gemini(
    settings: GeminiSettings,
    *,
    environ: Mapping[str, str] = os.environ,
    keystore: Callable[[], KeyStore] = os_keychain,
) -> GeminiStore:
    """Return a GeminiStore using the API key from the environment or the OS keychain.

    Raises:
        CredentialsMissingError: neither GEMINI_API_KEY nor the keychain holds a key.
    """
    key = require_api_key(environ, keystore)
    from objlibd import logs

    logs.register_secret(key)  # whatever the source, the redactor knows this value
    return GeminiStore(settings, key)


# -- the store ------------------------------------------------------------------------------


class GeminiStore:
    """RemoteStore on a Gemini File Search store; thread-safe for parallel uploads."""

    backend = "gemini"

    def __init__(
        self,
        settings: GeminiSettings,
        api_key: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise CredentialsMissingError("no Gemini API key given", hint=f"set {API_KEY_ENV}")
        self.concurrency: int = settings.max_concurrent_uploads
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._client = genai.Client(api_key=api_key, http_options=http_options(settings))
        self._store: str | None = None
        self._gate = _Gate(self.concurrency)
        if settings.rate_limit_rpm > 0:
            self._limiter = RateLimiter(settings.rate_limit_rpm, clock, sleep)
        else:
            self._limiter = RateLimiter.for_tier(settings.rate_limit_tier, clock, sleep)
        breaker_settings = BreakerSettings(cooldown=settings.breaker_cooldown_seconds)
        self._breaker = CircuitBreaker(clock, breaker_settings, self._on_breaker)
        self._backoff = tenacity.wait_exponential_jitter(
            initial=settings.retry_initial_delay_seconds,
            max=settings.retry_max_delay_seconds,
            jitter=settings.retry_initial_delay_seconds,
        )

    # -- the store itself ---------------------------------------------------------------

    def ensure_store(self, name: str) -> str:
        """Find the store with display name `name` (the oldest if several), else create it."""
        matches = [s.name for s in self._stores() if s.display_name == name and s.name]
        if len(matches) > 1:
            log.warning("remote.store.duplicates", display_name=name, stores=matches)
        if matches:
            self._store = matches[0]
            return self._store
        config = types.CreateFileSearchStoreConfig(display_name=name)
        try:
            created = self._call(
                "store creation",
                lambda: self._client.file_search_stores.create(config=config),
                gated=True,
            )
        except _RefusedError as err:
            raise _refusal(f"Gemini refused to create store {name!r}", err) from None
        if not created.name:
            raise RemoteUnavailableError("Gemini created a store but returned no name")
        log.info("remote.store.created", display_name=name, store=created.name)
        self._store = created.name
        return self._store

    def _stores(self) -> Iterator[types.FileSearchStore]:
        token: str | None = None
        while True:
            config = types.ListFileSearchStoresConfig(page_size=PAGE_SIZE, page_token=token)
            try:
                pager = self._call(
                    "store listing", partial(self._client.file_search_stores.list, config=config)
                )
            except _RefusedError as err:
                raise _refusal("Gemini refused to list stores", err) from None
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
        """Upload, import with metadata, wait for the operation; return the document."""
        store = self._require_store()
        mime_type = check_uploadable(request)
        metadata = custom_metadata(request)
        with self._gate.slot():
            file_name = self._upload_file(request, mime_type)
            attempts = _Attempts()
            try:
                operation = self._import(store, file_name, request, metadata, attempts)
            except RemoteError:
                self._forget_quietly(file_name)
                raise
            if checkpoint is not None:
                checkpoint(operation.name or "", file_name)
            doc_id = self._finish_import(operation, request, file_name)
            if attempts.ambiguous:
                self._drop_duplicates(request, keep=doc_id)
            self._forget_quietly(file_name)
        return RemoteDoc(
            doc_id=doc_id,
            display_name=request.display_name,
            metadata=dict(request.metadata),
            file_id=file_name,
            size=request.size,
        )

    def _upload_file(self, request: UploadRequest, mime_type: str) -> str:
        config = types.UploadFileConfig(mime_type=mime_type, display_name=request.display_name)
        path = str(request.local_path)
        try:
            file = self._call(
                f"upload of {request.rel_path}",
                lambda: self._client.files.upload(file=path, config=config),
                gated=True,
            )
        except _RefusedError as err:
            raise _refusal(f"Gemini refused the upload of {request.rel_path}", err) from None
        except OSError as err:
            raise RemoteRejectedError(
                f"cannot read {request.rel_path} for upload: {err.strerror or err}"
            ) from None
        if not file.name:
            raise RemoteUnavailableError(f"Gemini accepted {request.rel_path} but named no file")
        return self._wait_active(file, request)

    def _wait_active(self, file: types.File, request: UploadRequest) -> str:
        name = file.name or ""
        deadline = self._clock() + self._settings.operation_deadline_seconds
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
            self._sleep(self._settings.poll_interval_seconds)
            file = self._get_file(name, request)
        return name

    def _get_file(self, name: str, request: UploadRequest) -> types.File:
        try:
            return self._call("file status", lambda: self._client.files.get(name=name))
        except _RefusedError as err:
            raise _refusal(f"Gemini lost the upload of {request.rel_path}", err) from None

    def _import(
        self,
        store: str,
        file_name: str,
        request: UploadRequest,
        metadata: list[types.CustomMetadata],
        attempts: _Attempts,
    ) -> types.ImportFileOperation:
        config = types.ImportFileConfig(custom_metadata=metadata)
        try:
            operation = self._call(
                f"import of {request.rel_path}",
                lambda: self._client.file_search_stores.import_file(
                    file_search_store_name=store, file_name=file_name, config=config
                ),
                gated=True,
                attempts=attempts,
            )
        except _RefusedError as err:
            raise _refusal(f"Gemini refused to import {request.rel_path}", err) from None
        if not operation.name:
            raise RemoteUnavailableError(f"Gemini started no operation for {request.rel_path}")
        return operation

    def _finish_import(
        self, operation: types.ImportFileOperation, request: UploadRequest, file_name: str
    ) -> str:
        try:
            finished = self._poll(operation)
        except _StillRunningError:
            raise RemoteUnavailableError(
                f"the import of {request.rel_path} is still running after "
                f"{self._settings.operation_deadline_seconds:g} s",
                hint="its operation is recorded; the next sync resumes it",
            ) from None
        except _RefusedError as err:
            raise _refusal(f"Gemini lost the import of {request.rel_path}", err) from None
        if finished.error:
            self._forget_quietly(file_name)
            message = str(finished.error.get("message") or finished.error)
            raise RemoteRejectedError(f"Gemini could not import {request.rel_path}: {message}")
        return document_name(finished)

    def _poll(self, operation: types.ImportFileOperation) -> types.ImportFileOperation:
        """Poll until done, failed or (via the response) finished; raise _StillRunningError."""
        deadline = self._clock() + self._settings.operation_deadline_seconds
        while not _finished(operation):
            if self._clock() >= deadline:
                raise _StillRunningError(operation.name)
            self._sleep(self._settings.poll_interval_seconds)
            operation = self._call(
                "operation status", partial(self._client.operations.get, operation)
            )
        return operation

    def _drop_duplicates(self, request: UploadRequest, keep: str) -> None:
        """After an import whose first attempt may have landed, delete its twin documents."""
        for doc in self.find(request.rel_path):
            if doc.doc_id != keep and doc.sha256 == request.sha256:
                log.info("remote.duplicate.deleted", path=request.rel_path, doc=doc.doc_id)
                self.delete(doc.doc_id)

    # -- resume -------------------------------------------------------------------------

    def resume(self, operation: str) -> RemoteDoc | None:
        """Finish polling a checkpointed import; None if it failed, vanished or still runs."""
        pending = types.ImportFileOperation.model_validate({"name": operation})
        try:
            finished = self._poll(pending)
        except _StillRunningError:
            log.warning("remote.resume.still_running", operation=operation)
            return None
        except _RefusedError as err:
            log.info("remote.resume.unknown", operation=operation, error=str(err))
            return None
        if finished.error:
            log.info("remote.resume.failed", operation=operation, error=str(finished.error))
            return None
        return self._get_document(document_name(finished))

    def _get_document(self, name: str) -> RemoteDoc | None:
        try:
            doc = self._call(
                "document lookup",
                lambda: self._client.file_search_stores.documents.get(name=name),
            )
        except _RefusedError as err:
            if err.code == 404:
                return None
            raise _refusal(f"Gemini refused to show document {name}", err) from None
        return to_remote_doc(doc)

    # -- documents ----------------------------------------------------------------------

    def list_docs(self) -> Iterator[RemoteDoc]:
        """Yield every document (20 a page); failed imports' remains are deleted instead."""
        store = self._require_store()
        token: str | None = None
        while True:
            page, token = self._documents_page(store, token)
            for doc in page:
                if doc.state == types.DocumentState.STATE_FAILED and doc.name:
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
            pager = self._call(
                "document listing",
                lambda: self._client.file_search_stores.documents.list(parent=store, config=config),
            )
        except _RefusedError as err:
            raise _refusal(f"Gemini refused to list the documents of {store}", err) from None
        return list(pager.page), pager.config.get("page_token") or None

    def find(self, path: str) -> list[RemoteDoc]:
        """Return the documents whose identity metadata names `path`."""
        return [doc for doc in self.list_docs() if doc.path == path]

    def delete(self, doc_id: str) -> None:
        """Delete a document with force=True; one already gone counts as deleted."""
        name = doc_id if "/" in doc_id else f"{self._require_store()}/documents/{doc_id}"
        config = types.DeleteDocumentConfig(force=True)
        try:
            self._call(
                "document deletion",
                lambda: self._client.file_search_stores.documents.delete(name=name, config=config),
                gated=True,
            )
        except _RefusedError as err:
            if err.code == 404:
                return
            raise _refusal(f"Gemini refused to delete {name}", err) from None

    def forget_file(self, file_id: str) -> None:
        """Delete a temporary Files-API file; one already gone (or expired) is fine."""
        if not file_id:
            return
        try:
            self._call("file deletion", lambda: self._client.files.delete(name=file_id))
        except _RefusedError as err:
            if err.code == 404:
                return
            raise _refusal(f"Gemini refused to delete {file_id}", err) from None

    def _forget_quietly(self, file_id: str) -> None:
        try:
            self.forget_file(file_id)
        except RemoteError as err:
            # It expires on its own after 48 h; not worth failing an upload over.
            log.info("remote.file.delete_failed", file=file_id, error=err.message)

    # -- status -------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """Return store, breaker, limiter and concurrency; never the key."""
        return {
            "backend": self.backend,
            "store": self._store,
            "breaker": self._breaker.snapshot(),
            "rate_limit_tier": self._settings.rate_limit_tier,
            "rate_limit": self._limiter.snapshot(),
            "concurrency": self._gate.limit,
            "max_concurrency": self.concurrency,
        }

    def close(self) -> None:
        """Close the SDK's HTTP connections."""
        self._client.close()

    # -- the call wrapper ---------------------------------------------------------------

    def _call(
        self,
        what: str,
        send: Callable[[], T],
        *,
        gated: bool = False,
        attempts: _Attempts | None = None,
    ) -> T:
        """Run one SDK call under breaker, limiter and retries; see the module docstring."""
        record = attempts if attempts is not None else _Attempts()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._settings.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_TransientError),
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(what, state),
            reraise=True,
        )
        try:
            result: T = retrying(self._attempt, send, gated, record)
        except _TransientError as err:
            raise RemoteUnavailableError(
                f"Gemini {what} did not succeed in {self._settings.max_attempts} attempts; last error: {err}",
                hint="the service is busy or unreachable; the next sync tries again",
            ) from None
        return result

    def _attempt(self, send: Callable[[], T], gated: bool, record: _Attempts) -> T:
        self._wait_for_breaker()
        if gated:
            self._limiter.acquire()
        try:
            result = send()
        except genai_errors.APIError as err:
            raise self._api_failure(err, record) from None
        except _TRANSPORT_ERRORS as err:
            self._breaker.record_error()
            record.ambiguous = record.ambiguous or isinstance(err, _AMBIGUOUS_TRANSPORT)
            raise _TransientError(f"{type(err).__name__}: {err}", None) from None
        except (KeyError, ValueError) as err:
            self._breaker.record_error()
            if any(hint.lower() in str(err).lower() for hint in _UPLOAD_HICCUPS):
                raise _TransientError(str(err), None) from None
            raise
        except BaseException:
            self._breaker.record_error()  # frees a half-open probe slot
            raise
        self._breaker.record_success()
        return result

    def _api_failure(self, err: genai_errors.APIError, record: _Attempts) -> Exception:
        code = int(err.code or 0)
        summary = f"{code} {err.status}: {err.message}"
        if code == 429 and is_storage_quota(err):
            self._breaker.record_error()
            return RemoteQuotaError(
                f"the Gemini File Search store is full: {err.message}",
                hint="delete documents or raise the storage tier; uploads stop until then",
            )
        if code in TRANSIENT_CODES:
            if code == 429:
                self._breaker.record_429()
            else:
                self._breaker.record_error()
            record.ambiguous = record.ambiguous or code in AMBIGUOUS_CODES
            return _TransientError(summary, retry_delay(err))
        self._breaker.record_success()  # a definite answer: the server is not throttling
        return _RefusedError(code, str(err.status), str(err.message))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _TransientError) and error.retry_delay is not None:
            return min(error.retry_delay, self._settings.retry_max_delay_seconds)
        return float(self._backoff(state))

    def _wait_for_breaker(self) -> None:
        while not self._breaker.allow():
            pause = min(self._breaker.retry_after(), BREAKER_POLL_CAP_SECONDS)
            self._sleep(max(pause, 0.01))

    def _on_breaker(self, state: State, snapshot: dict[str, object]) -> None:
        event = {
            "open": "remote.breaker.opened",
            "half_open": "remote.breaker.half_open",
            "closed": "remote.breaker.closed",
        }[state]
        self._gate.set_limit(self.concurrency if state == "closed" else 1)
        details = {key: value for key, value in snapshot.items() if key != "state"}
        # A fresh logger each time: transitions are rare, and this honours the logging
        # configuration in force now (a cached module logger would not).
        structlog.get_logger("objlibd.remote.gemini").warning(
            event, backend=self.backend, store=self._store, **details
        )


# -- pure helpers ---------------------------------------------------------------------------


def http_options(settings: GeminiSettings) -> types.HttpOptions:
    """Pin API version, base URL and timeout; switch the SDK's own retries off."""
    return types.HttpOptions(
        api_version=settings.api_version,
        base_url=settings.base_url or None,
        timeout=int(settings.timeout_seconds * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
    )


def check_uploadable(request: UploadRequest) -> str:
    """Return the MIME type to declare, or raise RemoteUnsupportedError (skip the file)."""
    if request.size > MAX_FILE_BYTES:
        raise RemoteUnsupportedError(
            f"{request.rel_path} ({request.size / 2**20:.1f} MB) exceeds the 100 MB "
            "File Search limit",
            hint="split or compress it, or exclude it in [library] exclude",
        )
    mime_type = MIME_ALIASES.get(request.mime_type, request.mime_type)
    if mime_type not in SUPPORTED_MIME_TYPES:
        raise RemoteUnsupportedError(
            f"{request.rel_path}: Gemini File Search does not accept {request.mime_type} files",
            hint="convert it (for example to PDF) or drop the extension from [library] include",
        )
    return mime_type


def custom_metadata(request: UploadRequest) -> list[types.CustomMetadata]:
    """Return the request's metadata as SDK entries, in order (identity keys first)."""
    if len(request.metadata) > MAX_METADATA_ENTRIES:
        raise RemoteRejectedError(
            f"{request.rel_path}: {len(request.metadata)} metadata entries; Gemini allows "
            f"{MAX_METADATA_ENTRIES}",
            hint="remove [enrichment] rules",
        )
    return [_metadata_entry(key, value) for key, value in request.metadata]


def _metadata_entry(key: str, value: MetadataValue) -> types.CustomMetadata:
    if isinstance(value, str):
        return types.CustomMetadata(key=key, string_value=value)
    return types.CustomMetadata(key=key, numeric_value=float(value))


def to_remote_doc(doc: types.Document) -> RemoteDoc:
    """Convert an SDK Document (string and numeric metadata kept; lists dropped)."""
    metadata: dict[str, MetadataValue] = {}
    for entry in doc.custom_metadata or []:
        if entry.key is None:
            continue
        if entry.string_value is not None:
            metadata[entry.key] = entry.string_value
        elif entry.numeric_value is not None:
            metadata[entry.key] = float(entry.numeric_value)
    return RemoteDoc(
        doc_id=doc.name or "",
        display_name=doc.display_name or "",
        metadata=metadata,
        size=doc.size_bytes,
    )


def document_name(operation: types.ImportFileOperation) -> str:
    """Return the operation's document as a full name (the service may answer a bare id)."""
    response = operation.response
    name = response.document_name if response is not None else None
    if not name:
        raise RemoteUnavailableError(
            f"Gemini finished operation {operation.name} without naming its document"
        )
    if "/" in name:
        return name
    store = "/".join((operation.name or "").split("/")[:2])
    return f"{store}/documents/{name}"


def is_storage_quota(err: genai_errors.APIError) -> bool:
    """Return True for the 'Corpus has reached the storage limit' kind of 429."""
    return "storage limit" in str(err.message or "").lower()


def retry_delay(err: genai_errors.APIError) -> float | None:
    """Return RetryInfo.retryDelay from a Google error body, in seconds, if present."""
    body = err.details if isinstance(err.details, dict) else {}
    inner = body.get("error")
    error: dict[str, object] = inner if isinstance(inner, dict) else body
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            return parse_duration(detail.get("retryDelay"))
    return None


def parse_duration(value: object) -> float | None:
    """Parse a protobuf Duration string like '28s' or '0.5s' (None if not one)."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(float(value[:-1]), 0.0)
    except ValueError:
        return None


def _finished(operation: types.ImportFileOperation) -> bool:
    if operation.done or operation.error:
        return True
    response = operation.response
    return response is not None and bool(response.document_name)


def _refusal(what: str, err: _RefusedError) -> RemoteRejectedError:
    hint = ""
    if err.code in (400, 401, 403) and "key" in str(err).lower():
        hint = f"check the Gemini API key ({API_KEY_ENV} or `objlibd key set`)"
    return RemoteRejectedError(f"{what}: {err}", hint=hint)


def _log_retry(what: str, state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    log.info("remote.retry", call=what, attempt=state.attempt_number, delay=delay, error=str(error))
