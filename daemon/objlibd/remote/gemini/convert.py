"""Pure translations between objlibd's values and the SDK's types (no calls, no state)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from google.genai import types

from objlibd.config import GeminiSettings
from objlibd.errors import RemoteRejectedError, RemoteUnavailableError, RemoteUnsupportedError
from objlibd.remote.base import MAX_METADATA_ENTRIES, MetadataValue, RemoteDoc, UploadRequest
from objlibd.remote.filetypes import GEMINI_MAX_FILE_BYTES, gemini_mime


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
    if request.size > GEMINI_MAX_FILE_BYTES:
        raise RemoteUnsupportedError(
            f"{request.rel_path} ({request.size / 1e6:.1f} MB) exceeds the 100 MB "
            "File Search limit",
            hint="split or compress it, or exclude it in [library] exclude",
        )
    mime_type = gemini_mime(request.mime_type)
    if mime_type is None:
        raise RemoteUnsupportedError(
            f"{request.rel_path}: Gemini File Search does not accept {request.mime_type} files",
            hint="convert it (for example to PDF) or drop the extension from [library] include",
        )
    return mime_type


def file_id(request: UploadRequest) -> str:
    """Return a fresh File ID that reads as the file: `files/<slug of its name>-<12 random>`.

    An imported document's display name (the title a citation shows) is its File ID, and
    the import has no way to set it (reference §4), so the ID carries the name. IDs are at
    most 40 characters of a-z, 0-9 and "-", not starting or ending with "-".
    """
    stem = request.rel_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower())[:27].strip("-") or "doc"
    return f"files/{slug}-{secrets.token_hex(6)}"


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
    return RemoteDoc(
        doc_id=doc.name or "",
        display_name=doc.display_name or "",
        metadata=metadata_values(doc.custom_metadata or []),
        size=doc.size_bytes,
    )


def metadata_values(
    entries: Iterable[types.CustomMetadata | types.GroundingChunkCustomMetadata],
    *,
    join_lists: bool = False,
) -> dict[str, MetadataValue]:
    """Return metadata entries by key: strings, numbers as floats, and with `join_lists`
    string lists joined with ", " (otherwise dropped)."""
    metadata: dict[str, MetadataValue] = {}
    for entry in entries:
        if entry.key is None:
            continue
        if entry.string_value is not None:
            metadata[entry.key] = entry.string_value
        elif entry.numeric_value is not None:
            metadata[entry.key] = float(entry.numeric_value)
        elif join_lists and entry.string_list_value is not None:
            metadata[entry.key] = ", ".join(entry.string_list_value.values or [])
    return metadata


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


def is_finished(operation: types.ImportFileOperation) -> bool:
    """Return True once an import operation is done, failed, or names its document."""
    if operation.done or operation.error:
        return True
    response = operation.response
    return response is not None and bool(response.document_name)
