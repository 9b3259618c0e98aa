"""The store interface the engine needs, and its SDK-free values.

Two implementations: `remote.local` (an embedded store under the state dir, the default)
and `remote.gemini` (Google Gemini File Search). One contract suite runs over both.

Identity: every document carries custom metadata with the library-relative `path` and the
content `sha256` (the first two entries). That is what makes crash recovery exact: before
uploading, the engine looks for a document with the same identity instead of uploading twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

PATH_KEY = "path"
SHA256_KEY = "sha256"
MAX_METADATA_ENTRIES = 20

MetadataValue = str | float


@dataclass(frozen=True, slots=True)
class RemoteDoc:
    """A document in the store."""

    doc_id: str
    display_name: str
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    file_id: str | None = None
    size: int | None = None
    failed: bool = False  # an import that failed in the store (listed read-only only)

    @property
    def path(self) -> str | None:
        """Return the library-relative path this document was uploaded from, if recorded."""
        value = self.metadata.get(PATH_KEY)
        return value if isinstance(value, str) else None

    @property
    def sha256(self) -> str | None:
        """Return the content hash recorded at upload, if any."""
        value = self.metadata.get(SHA256_KEY)
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """One file to upload: where it is, what it is, and the metadata to attach.

    `metadata` is ordered; identity keys (`path`, `sha256`) come first and the list holds at
    most MAX_METADATA_ENTRIES entries.
    """

    local_path: Path
    rel_path: str
    sha256: str
    size: int
    mime_type: str
    metadata: tuple[tuple[str, MetadataValue], ...]

    @property
    def display_name(self) -> str:
        """Return the name shown in the store (the relative path, capped at 512 chars)."""
        return self.rel_path[-512:]


@dataclass(frozen=True, slots=True)
class Resumed:
    """What became of a checkpointed import, as far as the store can tell.

    `doc`: it finished as this document. `error`: it ended in error (the service's message;
    nothing landed). Neither: the store no longer knows the operation, so whatever it made
    is found by identity (path, sha256) like any other document.
    """

    doc: RemoteDoc | None = None
    error: str | None = None


# Called by a backend once an upload has reached a point a restart can resume from
# (for Gemini: the import operation's name and the temporary file's name), before it waits.
Checkpoint = Callable[[str, str], None]


class RemoteStore(Protocol):
    """What the engine needs from a store. Errors are `objlibd.errors.Remote*`."""

    backend: str
    concurrency: int  # how many uploads the engine may run at once

    def ensure_store(self, name: str) -> str:
        """Find or create the store with display name `name`; return its resource id."""
        ...

    def find_store(self, name: str) -> str | None:
        """Use the existing store named `name` (creating nothing); None when there is none."""
        ...

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        """Upload one file and return the document it became.

        Raises RemoteRejectedError (permanent for this file), RemoteUnavailableError
        (transient; nothing was imported), RemoteUncertainError (an import was sent and may
        have landed: never upload again before settling it), RemoteQuotaError (store full),
        SourceUnreadableError (the library file could not be read: vanished, or the drive
        failed — not the store's fault).
        """
        ...

    def resume(self, operation: str) -> Resumed:
        """Poll a checkpointed import to its end; RemoteUnavailableError if not now."""
        ...

    def list_docs(self, *, read_only: bool = False) -> Iterator[RemoteDoc]:
        """Yield every document in the store.

        A backend may tidy up while listing (Gemini deletes failed imports' remains);
        `read_only` lists them too (`failed`) and changes nothing.
        """
        ...

    def find(self, path: str) -> list[RemoteDoc]:
        """Return the documents whose identity metadata names `path` (lists the store)."""
        ...

    def delete(self, doc_id: str) -> None:
        """Delete a document; one that is already gone counts as deleted."""
        ...

    def forget_file(self, file_id: str) -> None:
        """Drop a temporary upload artefact (Gemini Files API file); missing is fine."""
        ...

    def sweep_leftovers(self) -> int:
        """Delete what killed uploads left in the store itself, not documents; return count."""
        ...

    def stats(self) -> dict[str, int] | None:
        """Return the store's own counts (documents, size_bytes), None before ensure_store."""
        ...

    def health(self) -> dict[str, object]:
        """Return the backend's own state for status (breaker, limiter); no secrets."""
        ...

    def release_memory(self) -> None:
        """Drop caches a resident daemon need not keep between batches (may do nothing)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
