"""The store's documents by identity, for one run: listed once, again only when stale.

Finding a document by its identity (path, sha256) means listing the store: 100 calls at
2,000 documents on Gemini. A run (or a daemon batch) therefore lists at most once per need:
before uploads whose earlier import may have landed, again only after an outcome left in
doubt (the store may hold a document the listing has not seen), and the end-of-run dedupe
reuses the listing when nothing could have changed since.
"""

from __future__ import annotations

from objlibd.remote.base import RemoteDoc, RemoteStore

Identity = tuple[str, str]  # (path, sha256)


class StoreIndex:
    """A lazily listed snapshot of the store's documents."""

    def __init__(self, store: RemoteStore) -> None:
        self.store = store
        self.listings = 0  # full listings made (what the bench reports per run)
        self._docs: dict[str, RemoteDoc] | None = None

    def invalidate(self) -> None:
        """Forget the snapshot: the store may hold documents it has not seen."""
        self._docs = None

    @property
    def fresh(self) -> bool:
        """Return True while the snapshot can be used without listing again."""
        return self._docs is not None

    def documents(self) -> list[RemoteDoc]:
        """Return every document, listing the store if the snapshot is stale (RemoteError)."""
        if self._docs is None:
            self._docs = {doc.doc_id: doc for doc in self.store.list_docs()}
            self.listings += 1
        return list(self._docs.values())

    def unreferenced(self, referenced: set[str]) -> dict[Identity, list[RemoteDoc]]:
        """Return documents nothing in the DB points at, by identity (oldest first)."""
        found: dict[Identity, list[RemoteDoc]] = {}
        for doc in self.documents():
            if doc.path and doc.sha256 and doc.doc_id not in referenced:
                found.setdefault((doc.path, doc.sha256), []).append(doc)
        return found

    def forget(self, doc_id: str) -> None:
        """Drop a document objlibd just deleted from the snapshot."""
        if self._docs is not None:
            self._docs.pop(doc_id, None)
