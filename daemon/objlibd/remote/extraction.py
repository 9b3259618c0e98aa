"""Text out of a stored document, for the local store's full-text index (no store logic here).

Text formats are decoded directly (HTML without its tags); PDFs go through pypdf, page by
page, when it is installed (`pip install 'objlibd[pdf]'`); anything else is "not indexed",
with the reason. Extraction never raises: a damaged file is a reason, not a failed upload.
"""

from __future__ import annotations

import functools
import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

PdfPages = Callable[[bytes], list[str]]

TEXT_TYPES = frozenset({
    "text/plain", "text/markdown", "text/x-markdown", "text/csv", "text/tab-separated-values",
    "text/xml", "application/xml", "application/json", "text/yaml", "application/x-yaml",
    "application/yaml", "text/x-python", "application/x-tex", "application/x-latex",
    "text/x-tex", "application/typescript",
})  # fmt: skip
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
RTF_TYPES = frozenset({"text/rtf", "application/rtf"})
PDF_TYPE = "application/pdf"
PASSAGE_CHARS = 1200
PDF_EXTRA = "PDF text needs pypdf: pip install 'objlibd[pdf]'"

_RTF_CONTROL = re.compile(r"\\[a-zA-Z]+-?\d* ?|\\'[0-9a-fA-F]{2}|[{}]")


@dataclass(frozen=True, slots=True)
class Extracted:
    """A document's text as (page, text) pieces (page None for formats without pages).

    `reason` says why nothing was extracted; empty when the text is there.
    """

    pages: tuple[tuple[int | None, str], ...]
    reason: str = ""

    @property
    def indexed(self) -> bool:
        """Return True when there is text to index."""
        return not self.reason


@functools.cache
def pypdf_pages() -> PdfPages | None:
    """Return pypdf's page reader, or None when pypdf is not installed (imported once, late)."""
    try:
        import pypdf
    except ImportError:
        return None
    # pypdf warns on every small defect of a real-world PDF; the reason we record is enough.
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    def pages(data: bytes) -> list[str]:
        reader = pypdf.PdfReader(io.BytesIO(data))
        return [page.extract_text() or "" for page in reader.pages]

    return pages


PdfSource = Callable[[], PdfPages | None]


def capability(pdf: PdfSource = pypdf_pages) -> str:
    """Return what this process can extract; the index re-reads skipped documents on change."""
    return "text,html,rtf" + (",pdf" if pdf() is not None else "")


def extract(data: bytes, mime_type: str, *, pdf: PdfSource = pypdf_pages) -> Extracted:
    """Return the text of a document of `mime_type`, or why there is none."""
    try:
        return _extract(data, mime_type, pdf)
    except Exception as err:  # noqa: BLE001 - a damaged file is a reason, never a crash
        return Extracted((), f"unreadable as {mime_type}: {type(err).__name__}: {err}"[:300])


def _extract(data: bytes, mime_type: str, pdf: PdfSource) -> Extracted:  # noqa: PLR0911
    if mime_type in TEXT_TYPES:
        return _text(_decode(data))
    if mime_type in HTML_TYPES:
        return _text(_html_text(_decode(data)))
    if mime_type in RTF_TYPES:
        return _text(_RTF_CONTROL.sub("", _decode(data)))
    if mime_type == PDF_TYPE:
        pdf_pages = pdf()
        if pdf_pages is None:
            return Extracted((), PDF_EXTRA)
        pages = tuple((number, text) for number, text in enumerate(pdf_pages(data), start=1))
        if not any(text.strip() for _, text in pages):
            return Extracted((), "the PDF has no text layer (scanned pages?)")
        return Extracted(pages)
    return Extracted((), f"{_kind(mime_type)} files have no text extractor here")


def extractable(mime_type: str) -> bool:
    """Return True when `extract` would read the bytes of this type (else it has a reason)."""
    return mime_type in TEXT_TYPES | HTML_TYPES | RTF_TYPES or mime_type == PDF_TYPE


def _kind(mime_type: str) -> str:
    """Return a type as people know it (".docx") when the system knows its extension."""
    import mimetypes

    extension = mimetypes.guess_extension(mime_type, strict=False) if mime_type else None
    return extension or mime_type or "untyped"


def _decode(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


def _text(text: str) -> Extracted:
    if not text.strip():
        return Extracted((), "no text in it")
    return Extracted(((None, text),))


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("p", "br", "div", "li", "h1", "h2", "h3", "h4", "tr"):
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def passages(text: str, size: int = PASSAGE_CHARS) -> Iterator[str]:
    """Split text into passages of about `size` characters at paragraph and word breaks."""
    pending = ""
    for paragraph in re.split(r"\n\s*\n", text):
        words = " ".join(paragraph.split())
        while len(words) > size:
            cut = words.rfind(" ", 0, size + 1)
            cut = cut if cut > 0 else size  # only a word longer than a passage is cut
            if pending:
                yield pending
                pending = ""
            yield words[:cut]
            words = words[cut:].lstrip()
        if not words:
            continue
        if pending and len(pending) + 1 + len(words) > size:
            yield pending
            pending = words
        else:
            pending = f"{pending} {words}" if pending else words
    if pending:
        yield pending
