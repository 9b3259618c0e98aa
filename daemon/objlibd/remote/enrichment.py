"""What a document carries besides its bytes: identity metadata, path-derived metadata, MIME.

Identity first (`path`, `sha256`): that is what recovery matches on. Then one entry per
enrichment rule that matches the path. `enrichment_version` is a short hash of the rules in
force, so `sync --force` can tell which documents were made under older rules.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from functools import lru_cache

from objlibd.config import EnrichmentRule
from objlibd.remote.base import MAX_METADATA_ENTRIES, PATH_KEY, SHA256_KEY, MetadataValue

IDENTITY_ONLY = "identity"

# Types the stores accept for the library's usual extensions; mimetypes guesses the rest.
_MIME_BY_EXTENSION = {
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".csv": "text/csv",
    ".json": "application/json",
    ".xml": "application/xml",
    ".rtf": "text/rtf",
    ".tex": "application/x-tex",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".epub": "application/epub+zip",
}


def enrichment_version(rules: tuple[EnrichmentRule, ...], *, skip: bool) -> str:
    """Return a short, stable hash of the rules in force ('identity' when skipped)."""
    if skip:
        return IDENTITY_ONLY
    canonical = json.dumps([[rule.key, rule.pattern] for rule in rules])
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def build_metadata(
    rel_path: str, sha256: str, rules: tuple[EnrichmentRule, ...], *, skip: bool
) -> tuple[tuple[str, MetadataValue], ...]:
    """Return the metadata for one document: identity keys first, then rule matches."""
    entries: list[tuple[str, MetadataValue]] = [(PATH_KEY, rel_path), (SHA256_KEY, sha256)]
    if not skip:
        for rule in rules:
            value = _apply(rule, rel_path)
            if value:
                entries.append((rule.key, value))
    return tuple(entries[:MAX_METADATA_ENTRIES])


def _apply(rule: EnrichmentRule, rel_path: str) -> str | None:
    match = _compiled(rule.pattern).search(rel_path)
    if match is None:
        return None
    if "value" in match.groupdict():
        return match.group("value")
    return match.group(0)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def mime_type(rel_path: str) -> str:
    """Return the MIME type to declare for a file."""
    dot = rel_path.rfind(".")
    known = _MIME_BY_EXTENSION.get(rel_path[dot:].lower()) if dot >= 0 else None
    if known:
        return known
    guessed, _ = mimetypes.guess_type(rel_path, strict=False)
    return guessed or "application/octet-stream"
