"""The gemini backend against the real Gemini API (needs GEMINI_API_KEY; `pytest -m live`).

Creates a throw-away File Search store, uploads one small document with identity metadata,
resumes its checkpointed operation, finds, lists and deletes it, then deletes the store.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from objlibd.config import GeminiSettings
from objlibd.remote.base import UploadRequest
from objlibd.remote.gemini import GeminiStore

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("GEMINI_API_KEY"), reason="GEMINI_API_KEY not set"),
]


@pytest.fixture
def live_store() -> Iterator[GeminiStore]:
    """A GeminiStore bound to a fresh store that is deleted afterwards."""
    settings = GeminiSettings(poll_interval_seconds=2.0, operation_deadline_seconds=300.0)
    store = GeminiStore(settings, os.environ["GEMINI_API_KEY"])
    name = store.ensure_store(f"objlibd-live-{uuid.uuid4().hex[:8]}")
    yield store
    from google import genai

    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"])
    client.file_search_stores.delete(name=name, config={"force": True})
    client.close()
    store.close()


def test_a_document_round_trips_through_the_real_service(
    live_store: GeminiStore, tmp_path: Path
) -> None:
    data = b"# objlibd live test\n\nOne small markdown document.\n"
    path = tmp_path / "live.md"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    request = UploadRequest(path, "Live/live.md", sha, len(data), "text/markdown",
                            (("path", "Live/live.md"), ("sha256", sha), ("collection", "Live")))  # fmt: skip
    checkpoints: list[str] = []

    doc = live_store.upload(request, lambda operation, _file: checkpoints.append(operation))
    resumed = live_store.resume(checkpoints[0])
    found = live_store.find("Live/live.md")
    live_store.delete(doc.doc_id)
    live_store.delete(doc.doc_id)

    assert resumed.doc is not None and resumed.doc.doc_id == doc.doc_id
    assert [(d.doc_id, d.sha256) for d in found] == [(doc.doc_id, sha)]
    assert list(live_store.list_docs()) == []
