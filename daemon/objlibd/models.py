"""Values shared across objlibd: plain, frozen, SDK-free."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class FileStatus(enum.StrEnum):
    """Where a tracked file stands; the state DB enforces the same set with CHECK."""

    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    FAILED = "failed"
    SKIPPED = "skipped"
    MISSING = "missing"
    ERROR = "error"
    DELETED = "deleted"


class Availability(enum.StrEnum):
    """Whether the library can be trusted right now (the rule above all)."""

    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class VolumeState:
    """The result of probing the library volume."""

    availability: Availability
    reason: str = ""
    hint: str = ""
    # Why it is unavailable, for the health model: "not_connected" (the daemon waits),
    # "unreadable" (permission, TCC: a person must act), "io_error" (a failing or pulled drive).
    cause: str = ""
    found_at: str = ""  # the mount point it was found at, when not the configured one

    @property
    def available(self) -> bool:
        """Return True when files may be read and absences may be believed."""
        return self.availability is Availability.AVAILABLE


class DiskEntry(NamedTuple):
    """One eligible file as the walk saw it (path relative to the library root, POSIX form).

    A NamedTuple, not a dataclass: a reconcile makes one per file and must stay near the cost
    of a bare stat walk.
    """

    path: str
    size: int
    mtime_ns: int


# A settled file's stat signature as the DB recorded it: (path, size, mtime_ns). It has the
# DiskEntry shape on purpose, so "unchanged" is one tuple comparison in C.
Signature = tuple[str, int | None, int | None]

# One folder's eligible files as a walk saw them: names in directory order, their sizes and
# mtime_ns. Plain lists so that a whole walk compares, and marshals, in C.
Listing = tuple[list[str], list[int], list[int]]


@dataclass(slots=True)
class StateIndex:
    """The DB's view of files that a diff needs.

    `settled`: uploaded or skipped files by path, as their recorded signature.
    `unsettled`: every other file by path, with its status (pending, failed, missing...).
    """

    settled: dict[str, Signature] = field(default_factory=dict)
    unsettled: dict[str, str] = field(default_factory=dict)
    generation: int | None = None  # files-table generation the index was read at (full index)

    def update(self, other: StateIndex) -> None:
        """Merge another index into this one."""
        self.settled.update(other.settled)
        self.unsettled.update(other.unsettled)

    def __len__(self) -> int:
        return len(self.settled) + len(self.unsettled)

    def __contains__(self, path: object) -> bool:
        return path in self.settled or path in self.unsettled


@dataclass(frozen=True, slots=True)
class Problem:
    """An entry the walk or an upload could not handle; reported, never fatal."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A row of the files table, as the engine needs it."""

    path: str
    status: FileStatus
    content_hash: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    remote_id: str | None = None
    remote_file_id: str | None = None
    upload_hash: str | None = None
    enrichment_version: str | None = None
    orphaned_remote_id: str | None = None
    missing_since: str | None = None
    attempts: int = 0
    last_error: str | None = None
    failures: int = 0  # permanent failures of `failed_hash` (the content that failed)
    failed_hash: str | None = None
    quarantined_at: str | None = None  # not retried until its content changes or `retry`
    transient_failures: int = 0  # transient failures in a row (the backoff's exponent)
    retry_after: str | None = None  # ISO time before which it is not tried again


class EventKind(enum.StrEnum):
    """A file-system change as the watcher reports it."""

    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"
    MOVED = "moved"


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One watcher event, relative to the library root; `dest` is set for moves."""

    kind: EventKind
    path: str
    at: float
    is_directory: bool = False
    dest: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """What a debounce window amounts to: touched paths, or a reconcile of subtrees.

    `paths` are files to look at (the engine re-stats each one, so the event kind is only a
    hint). `rescan` lists subtrees ("" is the whole library) to reconcile instead.
    """

    paths: frozenset[str] = field(default_factory=frozenset)
    rescan: frozenset[str] = field(default_factory=frozenset)
    first_event_at: float = 0.0
    reason: str = "events"

    @property
    def empty(self) -> bool:
        """Return True when there is nothing to do."""
        return not self.paths and not self.rescan
