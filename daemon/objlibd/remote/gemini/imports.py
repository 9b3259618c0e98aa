"""Getting a file into the store: Files-API upload, wait until ACTIVE, importFile with the
metadata, checkpoint, poll the operation to its end; and resuming a checkpointed import.

An import is sent once: when its outcome is unknown the caller hears RemoteUncertainError
naming the operation and the temporary file, never a second import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import structlog
from google.genai import types

from objlibd.config import GeminiSettings
from objlibd.errors import (
    RemoteError,
    RemoteRejectedError,
    RemoteUnavailableError,
    RemoteUncertainError,
    SourceUnreadableError,
)
from objlibd.remote.base import Checkpoint, RemoteDoc, Resumed, UploadRequest
from objlibd.remote.gemini.calls import RefusedError, poll_delays, refusal
from objlibd.remote.gemini.convert import (
    check_uploadable,
    custom_metadata,
    document_name,
    file_id,
    is_finished,
)
from objlibd.remote.gemini.documents import Documents

log = structlog.get_logger("objlibd.remote.gemini")


class _StillRunningError(Exception):
    """An operation did not finish before the deadline."""


class Importer:
    """Uploads and imports files into the bound store, under the shared call wrapper."""

    def __init__(
        self,
        documents: Documents,
        settings: GeminiSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Use the client and call wrapper of `documents` (the parts of one store share them)."""
        self._documents = documents
        self._client, self._calls = documents.client, documents.calls
        self._settings = settings
        self._clock = clock

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        """Upload, import with metadata, wait for the operation; return the document.

        The import is sent once: when its outcome is unknown (the answer was lost, the
        operation could not be polled to the end, objlibd is stopping) this raises
        RemoteUncertainError naming the operation, if any, and the temporary file.
        """
        store = self._documents.store()
        mime_type = check_uploadable(request)
        metadata = custom_metadata(request)
        with self._calls.gate.slot():
            file_name = self._upload_file(request, mime_type)
            try:
                operation = self._import(store, file_name, request, metadata)
            except RemoteUncertainError as err:
                raise RemoteUncertainError(err.message, file_id=file_name) from None
            except RemoteError:
                self._documents.forget_quietly(file_name)
                raise
            if checkpoint is not None:
                checkpoint(operation.name or "", file_name)
            doc_id = self._finish_import(operation, request, file_name)
            self._documents.forget_quietly(file_name)
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
                self._documents.forget_quietly(name)
                reason = file.error.message if file.error and file.error.message else "no reason"
                raise RemoteRejectedError(f"Gemini could not process {request.rel_path} ({reason})")
            if self._clock() >= deadline:
                raise RemoteUnavailableError(
                    f"Gemini is still processing {request.rel_path} after "
                    f"{self._settings.operation_deadline_seconds:g} s",
                    hint="the next sync uploads it again",
                )
            self._calls.pause(next(delays))
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
        except (_StillRunningError, RemoteUnavailableError) as err:
            how = (
                f"is still running after {self._settings.operation_deadline_seconds:g} s"
                if isinstance(err, _StillRunningError)
                else f"was started but not seen to the end: {err.message}"
            )
            raise RemoteUncertainError(
                f"the import of {request.rel_path} {how}", operation=name, file_id=file_name
            ) from None
        except RefusedError as err:
            raise RemoteUncertainError(
                f"Gemini lost the import of {request.rel_path}: {err}", file_id=file_name
            ) from None
        if finished.error:
            self._documents.forget_quietly(file_name)
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
            self._calls.pause(next(delays))
            operation = self._calls(
                "operation status", partial(self._client.operations.get, operation)
            )
        return operation

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
        doc = self._documents.get(document_name(finished))
        return Resumed(doc=doc) if doc is not None else Resumed()
