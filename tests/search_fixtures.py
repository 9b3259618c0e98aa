"""Helpers for the search tests: documents with words found nowhere else, and small PDFs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from objlibd.remote.base import UploadRequest


def make_pdf(pages: list[str]) -> bytes:
    """Return a small valid PDF whose pages show `pages` (Helvetica, one line each)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    font = 3 + 2 * len(pages)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for index, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * index} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def request_for(
    file: Path, rel_path: str, data: bytes, mime_type: str, **extra: str | float
) -> UploadRequest:
    """Write `data` to `file` and return its upload request with identity metadata."""
    file.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    metadata: tuple[tuple[str, str | float], ...] = (("path", rel_path), ("sha256", sha))
    metadata += tuple(extra.items())
    return UploadRequest(file, rel_path, sha, len(data), mime_type, metadata)
