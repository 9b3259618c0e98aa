"""The bound store's documents and the temporary Files-API files: list, look up, delete.

Deletes are idempotent: a document or file already gone (404) counts as deleted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import structlog
from google import genai
from google.genai import types

from objlibd.errors import RemoteError
from objlibd.remote.base import RemoteDoc
from objlibd.remote.gemini.calls import Caller, RefusedError, refusal
from objlibd.remote.gemini.convert import to_remote_doc

log = structlog.get_logger("objlibd.remote.gemini")

PAGE_SIZE = 20


class Documents:
    """The documents of the store `store()` names (it raises until a store is bound)."""

    def __init__(self, client: genai.Client, calls: Caller, store: Callable[[], str]) -> None:
        self.client = client  # the SDK client and the call wrapper: the store's parts share them
        self.calls = calls
        self.store = store

    def list_docs(self, *, read_only: bool = False) -> Iterator[RemoteDoc]:
        """Yield every document (20 a page); failed imports' remains are deleted instead.

        `read_only` yields those too (marked `failed`) and deletes nothing.
        """
        store = self.store()
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
            pager = self.calls(
                "document listing",
                lambda: self.client.file_search_stores.documents.list(parent=store, config=config),
            )
        except RefusedError as err:
            raise refusal(f"Gemini refused to list the documents of {store}", err) from None
        return list(pager.page), pager.config.get("page_token") or None

    def find(self, path: str) -> list[RemoteDoc]:
        """Return the documents whose identity metadata names `path` (lists the store)."""
        return [doc for doc in self.list_docs() if doc.path == path]

    def delete(self, doc_id: str) -> None:
        """Delete a document with force=True; one already gone counts as deleted."""
        name = doc_id if "/" in doc_id else f"{self.store()}/documents/{doc_id}"
        config = types.DeleteDocumentConfig(force=True)
        self._delete(
            "document deletion",
            lambda: self.client.file_search_stores.documents.delete(name=name, config=config),
            name,
            gated=True,
        )

    def forget_file(self, file_id: str) -> None:
        """Delete a temporary Files-API file; one already gone (or expired) is fine."""
        if file_id:
            self._delete("file deletion", lambda: self.client.files.delete(name=file_id), file_id)

    def _delete(
        self, what: str, send: Callable[[], object], name: str, *, gated: bool = False
    ) -> None:
        try:
            self.calls(what, send, gated=gated)
        except RefusedError as err:
            if err.code != 404:  # already gone: deleted
                raise refusal(f"Gemini refused to delete {name}", err) from None

    def forget_quietly(self, file_id: str) -> None:
        """Forget a temporary file; a failure is logged, never raised (it expires in 48 h)."""
        try:
            self.forget_file(file_id)
        except RemoteError as err:
            # It expires on its own after 48 h; not worth failing an upload over.
            log.info("remote.file.delete_failed", file=file_id, error=err.message)

    def get(self, name: str) -> RemoteDoc | None:
        """Return the document `name`, or None when the store does not know it."""
        try:
            doc = self.calls(
                "document lookup",
                lambda: self.client.file_search_stores.documents.get(name=name),
            )
        except RefusedError as err:
            if err.code == 404:
                return None
            raise refusal(f"Gemini refused to show document {name}", err) from None
        return to_remote_doc(doc)
