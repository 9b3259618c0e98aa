"""The embedded store: a real backend under the state dir, with a remote store's semantics.

Each store is a folder `<state>/local-store/<store id>/` with `blobs/<doc>.bin` (a copy of
the uploaded bytes), `docs/<doc>.json` (the document: display name, metadata, size, type)
and `index.sqlite`, its full-text index (`remote.fulltext`), kept in step on every upload
and delete and reconciled with the documents whenever the store is bound.
Document ids get a random suffix like Gemini's, so uploading the same file twice makes two
documents, exactly the failure the engine must avoid. Writes are atomic (temp + rename,
blob before document), so a crash never leaves a document without its bytes. The blob's
bytes are synced before its document is written; the document file is not (the state DB's
own WAL NORMAL durability): one a power cut left empty or torn counts as never written.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from objlibd.errors import (
    RemoteQuotaError,
    RemoteStoreMissingError,
    RemoteUnavailableError,
    SourceUnreadableError,
)
from objlibd.remote.base import Checkpoint, RemoteDoc, Resumed, UploadRequest
from objlibd.remote.extraction import PdfSource, pypdf_pages
from objlibd.remote.fulltext import (
    INDEX_NAME,
    Entry,
    FullTextIndex,
    IndexDamaged,
    IndexFault,
    Loaded,
)
from objlibd.remote.localfiles import (
    PRIVATE_DIR,
    copy_synced,
    from_json,
    older_file,
    size_and_mtime,
    slug,
    to_json,
    write_atomic,
)
from objlibd.remote.search import SearchQuery, SearchResult, group_citations

log = structlog.get_logger("objlibd.remote.local")

LEFTOVER_AGE_S = 60.0  # a temp file or unreferenced blob this old belongs to no live upload


class LocalStore:
    """A file-backed document store implementing RemoteStore."""

    backend = "local"
    concurrency = 2

    def __init__(self, root: Path, *, pdf: PdfSource = pypdf_pages) -> None:
        self.root = root
        self._store: Path | None = None
        self._store_id: str | None = None
        self._lock = threading.Lock()
        self._pdf = pdf
        self._index: FullTextIndex | None = None

    # -- stores ----------------------------------------------------------------------------

    def ensure_store(self, name: str) -> str:
        """Find or create the store named `name`; return its id."""
        with self._lock:
            registry = self._registry()
            store_id = registry.get(name)
            if store_id is None:
                store_id = f"localStores/{slug(name)}-{secrets.token_hex(6)}"
                registry[name] = store_id
                write_atomic(self.root / "stores.json", json.dumps(registry, indent=2))
            self._store_id = store_id
            self._store = self.root / store_id.split("/", 1)[1]
            (self._store / "docs").mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            (self._store / "blobs").mkdir(mode=PRIVATE_DIR, exist_ok=True)
            self._open_index(self._store)
            return store_id

    def find_store(self, name: str) -> str | None:
        """Use the store named `name` if it exists; create nothing (not even a folder)."""
        with self._lock:
            store_id = self._registry(create=False).get(name)
            if store_id is not None:
                self._store_id = store_id
                self._store = self.root / store_id.split("/", 1)[1]
            return store_id

    def _open_index(self, folder: Path) -> None:
        """Open the store's full-text index and reconcile it with the documents."""
        if self._index is not None:
            self._index.close()
            self._index = None
        try:
            self._index = FullTextIndex.open(folder / INDEX_NAME, pdf=self._pdf)
            self._index.reconcile(folder / "docs", self._load)
        except (IndexFault, OSError) as err:
            # Searching degrades; storing must not: the next bind tries again.
            log.warning("local.index.unavailable", store=self._store_id, error=str(err))

    def searcher(self, name: str, store_id: str | None) -> LocalSearcher:
        """Return a read-only searcher on the store `store_id` (else the one named `name`).

        Creates nothing: no registry, no folder, no index.
        """
        if store_id is None:
            store_id = self._registry(create=False).get(name)
        folder = self.root / store_id.split("/", 1)[-1] if store_id else None
        if folder is None or not (folder / "docs").is_dir():
            raise RemoteStoreMissingError(
                f'the local store "{name}" does not exist yet',
                hint="run `objlibd sync` (or start the daemon) to create and fill it",
            )
        index = FullTextIndex.open_readonly(folder / INDEX_NAME)
        if index is None:
            raise RemoteUnavailableError(
                f'the local store "{name}" has no search index yet',
                hint="run `objlibd sync` once (or restart the daemon): it builds the index",
            )
        return LocalSearcher(index, lambda doc: self._read_file(folder / "docs" / f"{doc}.json"))

    def _registry(self, *, create: bool = True) -> dict[str, str]:
        try:
            data = json.loads((self.root / "stores.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            if create:
                self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            return {}
        except (OSError, ValueError) as err:
            raise RemoteUnavailableError(f"local store registry unreadable: {err}") from err
        return {str(k): str(v) for k, v in data.items()}

    def _folder(self) -> Path:
        if self._store is None:
            msg = "ensure_store() must be called before using the local store"
            raise RuntimeError(msg)
        return self._store

    # -- documents ---------------------------------------------------------------------------

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        """Copy the file in and index it; return the new document."""
        folder = self._folder()
        doc_name = (
            f"{slug(Path(request.rel_path).stem)[:27].strip('-') or 'doc'}-{secrets.token_hex(6)}"
        )
        blob = folder / "blobs" / f"{doc_name}.bin"
        try:
            source = request.local_path.open("rb")
        except OSError as err:
            raise SourceUnreadableError(
                f"cannot read {request.rel_path} for upload: {err.strerror or err}",
                gone=isinstance(err, FileNotFoundError | NotADirectoryError),
            ) from None
        try:
            with source:
                copy_synced(source, blob, request.rel_path)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RemoteQuotaError(
                    f"state disk full: no space left for the local store in {self.root}"
                ) from err
            raise RemoteUnavailableError(f"local store write failed: {err}") from err
        doc = RemoteDoc(
            doc_id=f"{self._store_id}/documents/{doc_name}",
            display_name=request.display_name,
            metadata=dict(request.metadata),
            size=blob.stat().st_size,
        )
        if checkpoint is not None:
            checkpoint(doc.doc_id, "")
        target = folder / "docs" / f"{doc_name}.json"
        write_atomic(target, json.dumps(to_json(doc, request.mime_type)))
        self._index_one(Entry(doc_name, doc, request.mime_type, size_and_mtime(target)), blob)
        return doc

    def _index_one(self, entry: Entry, blob: Path) -> None:
        if self._index is None:
            return
        try:
            self._index.add(entry, blob.read_bytes)
        except (IndexFault, OSError) as err:
            # The document is stored; the next bind's reconcile indexes it.
            log.warning("local.index.add_failed", doc=entry.doc.doc_id, error=str(err))

    def _load(self, name: str) -> Loaded | None:
        """Return a document, its type and its bytes by file name (None: torn or gone)."""
        folder = self._folder()
        try:
            raw = json.loads((folder / "docs" / f"{name}.json").read_text(encoding="utf-8"))
            doc = from_json(raw)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # gone, or torn by a power cut: not a document
        mime_type = raw.get("mimeType")
        if not isinstance(mime_type, str) or not mime_type:
            from objlibd.remote.enrichment import mime_type as guess

            mime_type = guess(doc.path or doc.display_name)
        return doc, mime_type, (folder / "blobs" / f"{name}.bin").read_bytes

    def resume(self, operation: str) -> Resumed:
        """Return the document an interrupted upload produced, if it got that far."""
        return Resumed(doc=self._read(operation))

    def list_docs(self, *, read_only: bool = False) -> Iterator[RemoteDoc]:
        """Yield every document (listing never changes anything here)."""
        docs = self._folder() / "docs"
        if not docs.is_dir():
            return  # found by find_store, never written to
        for entry in sorted(item.name for item in docs.iterdir()):
            if entry.endswith(".json"):
                doc = self._read_file(docs / entry)
                if doc is not None:
                    yield doc

    def find(self, path: str) -> list[RemoteDoc]:
        """Return documents whose identity metadata names `path`."""
        return [doc for doc in self.list_docs() if doc.path == path]

    def delete(self, doc_id: str) -> None:
        """Delete a document and its bytes; already gone is fine."""
        name = doc_id.rsplit("/", 1)[-1]
        folder = self._folder()
        (folder / "docs" / f"{name}.json").unlink(missing_ok=True)
        (folder / "blobs" / f"{name}.bin").unlink(missing_ok=True)
        if self._index is not None:
            try:
                self._index.remove(name)
            except IndexFault as err:  # a hit without its document is dropped at query time
                log.warning("local.index.remove_failed", doc=doc_id, error=str(err))

    def forget_file(self, file_id: str) -> None:
        """Nothing to forget: the local store has no temporary upload files."""

    def sweep_leftovers(self, min_age_s: float = LEFTOVER_AGE_S) -> int:
        """Delete what interrupted uploads left (kill -9): blobs no document points at, and
        temp files; only ones older than `min_age_s`, never an upload in flight. Returns how
        many were deleted."""
        if self._store is None:
            return 0
        cutoff = time.time() - min_age_s
        removed = 0
        docs = self._store / "docs"
        for folder in (docs, self._store / "blobs", self.root):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                name = entry.name
                temp = name.startswith(".") and name.endswith(".tmp")
                lost = (
                    folder.name == "blobs"
                    and name.endswith(".bin")
                    and not (docs / f"{name[:-4]}.json").exists()
                )
                if (temp or lost) and older_file(entry, cutoff):
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed

    def read_bytes(self, doc_id: str) -> bytes:
        """Return a document's stored bytes (tests compare them with the disk)."""
        name = doc_id.rsplit("/", 1)[-1]
        return (self._folder() / "blobs" / f"{name}.bin").read_bytes()

    def stats(self) -> dict[str, int] | None:
        """Return the document count and stored bytes, as a remote store reports them."""
        if self._store is None:
            return None
        documents = size = 0
        with os.scandir(self._store / "blobs") as entries:
            for entry in entries:
                if entry.name.endswith(".bin"):
                    documents += 1
                    size += entry.stat().st_size
        return {"documents": documents, "size_bytes": size}

    def health(self) -> dict[str, object]:
        """Return the backend's state for status."""
        return {"backend": self.backend, "store": self._store_id, "breaker": None}

    def release_memory(self) -> None:
        """Drop the full-text index's page cache between batches."""
        if self._index is not None:
            self._index.release_memory()

    def close(self) -> None:
        """Close the full-text index."""
        if self._index is not None:
            self._index.close()
            self._index = None

    def _read(self, doc_id: str) -> RemoteDoc | None:
        name = doc_id.rsplit("/", 1)[-1]
        return self._read_file(self._folder() / "docs" / f"{name}.json")

    def _read_file(self, path: Path) -> RemoteDoc | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise RemoteUnavailableError(f"local store document {path} unreadable: {err}") from err
        try:
            return from_json(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError):
            # Empty or torn by a power cut (document files are not synced): a document the
            # store never finished. Absent, so the engine adopts or uploads again.
            return None


class LocalSearcher:
    """Searches a local store's index read-only; `read_doc` confirms a hit's document exists."""

    backend = "local"

    def __init__(self, index: FullTextIndex, read_doc: Callable[[str], RemoteDoc | None]) -> None:
        self._index = index
        self._read_doc = read_doc

    def search(self, query: SearchQuery) -> SearchResult:
        """Return the best passages grouped per document, and what the index cannot search."""
        try:
            hits = self._index.search(query, lambda name: self._read_doc(name) is not None)
            skipped = self._index.not_indexed()
        except IndexDamaged as err:
            raise RemoteUnavailableError(
                f"the local store's search index cannot be read: {err}",
                hint="run `objlibd sync` (or restart the daemon): it repairs or rebuilds it",
            ) from None
        citations = group_citations(hits)
        return SearchResult("local", None, citations, bool(citations), None, tuple(skipped))

    def close(self) -> None:
        """Close the index."""
        self._index.close()
