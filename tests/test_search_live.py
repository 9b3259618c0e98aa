"""`objlibd search` against the real Gemini API (needs GEMINI_API_KEY; `pytest -m live`).

Uploads one document with identity metadata into a throw-away store, asks the configured
default model a question only that document answers, and checks that a citation maps back
to its path through `customMetadata` (and, with a filter that excludes it, that it is not
cited). The store is deleted afterwards.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_fixtures import wait_for
from objlibd.config import GeminiSettings, SearchSettings
from objlibd.remote.base import UploadRequest
from objlibd.remote.gemini import GeminiStore
from objlibd.remote.gemini.search import GeminiSearcher
from objlibd.remote.search import SearchQuery, SearchResult

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("GEMINI_API_KEY"), reason="GEMINI_API_KEY not set"),
]
WORD = f"quorblax{uuid.uuid4().hex[:6]}"
TEXT = (
    f"# The {WORD} principle\n\nThe {WORD} principle says that a lighthouse keeper named "
    f"Ottoline Brask painted every stair of her tower a different colour in 1911.\n"
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[GeminiStore, str]]:
    """A store holding one document, deleted afterwards."""
    settings = GeminiSettings(poll_interval_seconds=2.0, operation_deadline_seconds=300.0)
    store = GeminiStore(settings, os.environ["GEMINI_API_KEY"])
    name = store.ensure_store(f"objlibd-live-search-{uuid.uuid4().hex[:8]}")
    data = TEXT.encode()
    path = tmp_path / "principle.md"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.upload(UploadRequest(path, "Notes/principle.md", sha, len(data), "text/markdown",
                               (("path", "Notes/principle.md"), ("sha256", sha),
                                ("collection", "Notes"))))  # fmt: skip
    yield store, name
    from google import genai

    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"])
    client.file_search_stores.delete(name=name, config={"force": True})
    client.close()
    store.close()


def test_the_real_service_cites_the_document_by_its_path(live: tuple[GeminiStore, str]) -> None:
    store, name = live
    searcher = GeminiSearcher(store, name, SearchSettings().model)
    question = f"What did the lighthouse keeper do, according to the {WORD} principle?"
    answers: list[SearchResult] = []

    def cited() -> bool:  # a fresh document can take a moment to become searchable
        answers.append(searcher.search(SearchQuery(question)))
        return bool(answers[-1].citations)

    found = wait_for(cited, 90.0, interval=10.0)
    filtered = searcher.search(SearchQuery(question, where='collection = "Elsewhere"'))

    result = answers[-1]
    assert found, result
    assert result.citations[0].path == "Notes/principle.md"
    assert result.citations[0].metadata.get("collection") == "Notes"
    assert result.answer and "Brask" in result.answer
    assert all(c.path != "Notes/principle.md" for c in filtered.citations)
