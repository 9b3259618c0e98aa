"""The local store's files on disk: the document JSON, atomic writes, the synced blob copy.

A document file is written temp + rename without fsync (one a power cut tore counts as never
written); a blob's bytes reach the disk before any document can point at them. Everything is
private to its owner: these are full copies of the library's documents.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, BinaryIO

from objlibd.errors import SourceUnreadableError
from objlibd.remote.base import RemoteDoc

_SLUG = re.compile(r"[^a-z0-9]+")
# Full copies of the library's documents: readable by their owner only.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def to_json(doc: RemoteDoc, mime_type: str) -> dict[str, Any]:
    """Return a document as its JSON file holds it."""
    return {
        "name": doc.doc_id,
        "displayName": doc.display_name,
        "customMetadata": dict(doc.metadata),
        "sizeBytes": doc.size,
        "mimeType": mime_type,
    }


def size_and_mtime(path: Path) -> tuple[int, int]:
    """Return a file's size and mtime in ns (what the index keys a document's version on)."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def from_json(data: dict[str, Any]) -> RemoteDoc:
    """Return the document a JSON file holds (KeyError/TypeError when it is torn)."""
    return RemoteDoc(
        doc_id=str(data["name"]),
        display_name=str(data.get("displayName", "")),
        metadata=dict(data.get("customMetadata", {})),
        size=data.get("sizeBytes"),
    )


def older_file(entry: os.DirEntry[str], cutoff: float) -> bool:
    """Return True for a regular file last changed before `cutoff` (epoch seconds)."""
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff


def slug(text: str) -> str:
    """Return `text` lowercased, runs of other characters as one '-', at most 40 long."""
    return _SLUG.sub("-", text.lower()).strip("-")[:40]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a private temp file and a rename (no fsync)."""
    # No fsync: a document lost to a power cut is one the store never had (the engine adopts
    # or uploads again), the same durability as the state DB's WAL in synchronous=NORMAL.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with os.fdopen(os.open(tmp, _NEW_FILE, PRIVATE_FILE), "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


def copy_synced(src: BinaryIO, target: Path, rel_path: str) -> None:
    """Copy `src` to `target` (private, synced, renamed into place); no half copy is left."""
    # The bytes reach the disk before any document can point at them, power cut or not.
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with os.fdopen(os.open(tmp, _NEW_FILE, PRIVATE_FILE), "wb") as dst:
            while True:
                try:
                    chunk = src.read(1 << 20)
                except OSError as err:  # the drive failed or was pulled mid-read: not our store
                    raise SourceUnreadableError(
                        f"cannot read {rel_path} for upload: {err.strerror or err}", gone=False
                    ) from None
                if not chunk:
                    break
                dst.write(chunk)
            dst.flush()
            _datasync(dst.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half copy left behind (a pulled drive, a full disk)
        raise


def _datasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
    sync(fd)
