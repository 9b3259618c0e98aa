"""Which files each store takes: the one source of truth for types and sizes (no SDK here).

The gemini backend accepts the File Search "Supported file types" a document library holds
(reference §6) up to 100 MB, decimal (the service's documented limit: 100,000,000 bytes).
EPUB is not on that list, so it is not in the default include list either; an included
extension the configured store refuses is a warning at start (`include_warnings`), and its
files are recorded as skipped with the reason, never dropped silently. The local store takes
everything.
"""

from __future__ import annotations

from objlibd.config import LibrarySettings
from objlibd.remote.enrichment import mime_type

GEMINI_MAX_FILE_BYTES = 100_000_000

GEMINI_MIME_TYPES = frozenset({
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


def gemini_mime(declared: str) -> str | None:
    """Return the type to send Gemini for `declared`, or None when File Search refuses it."""
    canonical = MIME_ALIASES.get(declared, declared)
    return canonical if canonical in GEMINI_MIME_TYPES else None


def refused_extensions(include: tuple[str, ...], backend: str) -> list[tuple[str, str]]:
    """Return (extension, MIME type) for each included extension the backend refuses."""
    if backend != "gemini":
        return []
    refused = []
    for ext in include:
        declared = mime_type(f"file{ext.lower()}")
        if gemini_mime(declared) is None:
            refused.append((ext, declared))
    return refused


def include_warnings(library: LibrarySettings, backend: str) -> list[str]:
    """Return one config warning per included extension the store will refuse."""
    return [
        f"[library] include {ext}: the {backend} store does not accept {declared} files; they "
        f"are skipped (convert them, for example to PDF, or remove {ext} from include)"
        for ext, declared in refused_extensions(library.include, backend)
    ]
