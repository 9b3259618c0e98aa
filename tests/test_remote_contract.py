"""One behaviour suite over every store backend: what the engine relies on.

`local` always runs; the Gemini backend joins through the `store` fixture's params (the
real google-genai SDK against the fake server in tests/fakes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from objlibd.remote.base import RemoteStore, UploadRequest
from objlibd.remote.local import LocalStore


def _local(tmp_path: Path) -> Iterator[RemoteStore]:
    yield LocalStore(tmp_path / "local-store")


def _gemini(tmp_path: Path) -> Iterator[RemoteStore]:
    import os

    from fakes.gemini_server import FakeGemini
    from objlibd.config import GeminiSettings
    from objlibd.remote.gemini import GeminiStore

    saved = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    with FakeGemini() as fake:
        settings = GeminiSettings(
            base_url=fake.base_url, rate_limit_tier="tier3", timeout_seconds=5.0,
            poll_interval_seconds=0.01, retry_initial_delay_seconds=0.01,
            retry_max_delay_seconds=0.05,
        )  # fmt: skip
        store = GeminiStore(settings, "test-key")
        yield store
        store.close()
    if saved is None:
        os.environ.pop("NO_PROXY", None)
    else:
        os.environ["NO_PROXY"] = saved


BACKENDS = {"local": _local, "gemini": _gemini}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RemoteStore]:
    """A store of each backend, unbound (call ensure_store)."""
    yield from BACKENDS[request.param](tmp_path)


def upload(store: RemoteStore, tmp_path: Path, rel: str, text: str = "hello") -> UploadRequest:
    local = tmp_path / "src" / rel
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text, encoding="utf-8")
    import hashlib

    digest = hashlib.sha256(text.encode()).hexdigest()
    return UploadRequest(local, rel, digest, len(text), "text/plain",
                         (("path", rel), ("sha256", digest), ("collection", "c")))  # fmt: skip


def test_ensure_store_is_idempotent(store: RemoteStore) -> None:
    first = store.ensure_store("contract-store")

    assert store.ensure_store("contract-store") == first
    assert store.ensure_store("another-store") != first


def test_upload_returns_a_document_carrying_identity_metadata(
    store: RemoteStore, tmp_path: Path
) -> None:
    store.ensure_store("contract-store")
    request = upload(store, tmp_path, "Lectures/one.txt")

    doc = store.upload(request)

    listed = list(store.list_docs())
    assert [d.doc_id for d in listed] == [doc.doc_id]
    assert (listed[0].path, listed[0].sha256) == ("Lectures/one.txt", request.sha256)
    assert listed[0].metadata["collection"] == "c"


def test_uploading_twice_makes_two_documents(store: RemoteStore, tmp_path: Path) -> None:
    """The failure mode the engine must avoid: stores do not dedupe by content."""
    store.ensure_store("contract-store")
    request = upload(store, tmp_path, "a.txt")

    first, second = store.upload(request), store.upload(request)

    assert first.doc_id != second.doc_id
    assert len(store.find("a.txt")) == 2


def test_find_matches_by_path_metadata(store: RemoteStore, tmp_path: Path) -> None:
    store.ensure_store("contract-store")
    store.upload(upload(store, tmp_path, "a.txt"))
    wanted = store.upload(upload(store, tmp_path, "b.txt"))

    assert [d.doc_id for d in store.find("b.txt")] == [wanted.doc_id]
    assert store.find("nope.txt") == []


def test_delete_removes_and_deleting_again_is_fine(store: RemoteStore, tmp_path: Path) -> None:
    store.ensure_store("contract-store")
    doc = store.upload(upload(store, tmp_path, "a.txt"))

    store.delete(doc.doc_id)
    store.delete(doc.doc_id)

    assert list(store.list_docs()) == []


def test_checkpoint_is_reported_before_the_upload_returns_and_resume_finds_it(
    store: RemoteStore, tmp_path: Path
) -> None:
    store.ensure_store("contract-store")
    seen: list[str] = []

    doc = store.upload(upload(store, tmp_path, "a.txt"), lambda op, _file: seen.append(op))

    assert len(seen) == 1
    resumed = store.resume(seen[0])
    assert resumed.doc is not None
    assert (resumed.doc.doc_id, resumed.error) == (doc.doc_id, None)


def test_resume_of_an_operation_the_store_does_not_know_settles_nothing(
    store: RemoteStore,
) -> None:
    store_id = store.ensure_store("contract-store")

    resumed = store.resume(f"{store_id}/operations/never-started")

    assert (resumed.doc, resumed.error) == (None, None)


def test_stores_are_isolated(store: RemoteStore, tmp_path: Path) -> None:
    store.ensure_store("first")
    store.upload(upload(store, tmp_path, "a.txt"))

    store.ensure_store("second")

    assert list(store.list_docs()) == []


def test_health_names_the_backend_and_holds_no_secret(store: RemoteStore) -> None:
    store.ensure_store("contract-store")

    health = store.health()

    assert health["backend"] == store.backend
    assert "key" not in str(health).lower()


def test_find_store_uses_an_existing_store_and_creates_none(store: RemoteStore) -> None:
    assert store.find_store("contract-store") is None
    assert store.find_store("contract-store") is None, "looking twice still creates nothing"
    made = store.ensure_store("contract-store")
    store.ensure_store("another-store")

    assert store.find_store("contract-store") == made
    assert list(store.list_docs(read_only=True)) == []  # bound to the store it found


def test_finding_no_local_store_leaves_no_trace(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "local-store")

    assert local.find_store("nothing-here") is None
    assert not (tmp_path / "local-store").exists()
