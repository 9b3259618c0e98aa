"""GeminiStore on the real google-genai SDK, against the local fake of the REST API."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fake_clock import FakeClock
from fakes.gemini_server import Behaviour, FakeGemini, Faults
from objlibd.config import GeminiSettings
from objlibd.errors import (
    CredentialsMissingError,
    RemoteQuotaError,
    RemoteRejectedError,
    RemoteUnavailableError,
    RemoteUncertainError,
    RemoteUnsupportedError,
    SourceUnreadableError,
)
from objlibd.remote import gemini
from objlibd.remote.base import RemoteDoc, UploadRequest
from objlibd.remote.gemini import GeminiStore

KEY = "test-key"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(faults=Faults(retry_delay="0.01s")) as server:
        yield server


def settings_for(fake: FakeGemini, **overrides: Any) -> GeminiSettings:
    """Return settings pointing at the fake with test-sized delays."""
    base = GeminiSettings(
        base_url=fake.base_url,
        rate_limit_tier="tier3",
        timeout_seconds=5.0,
        poll_interval_seconds=0.01,
        operation_deadline_seconds=10.0,
        max_attempts=4,
        retry_initial_delay_seconds=0.01,
        retry_max_delay_seconds=0.05,
        breaker_cooldown_seconds=0.2,
    )
    return replace(base, **overrides)


def open_store(fake: FakeGemini, name: str = "library", **overrides: Any) -> GeminiStore:
    store = GeminiStore(settings_for(fake, **overrides), KEY)
    store.ensure_store(name)
    return store


def request_for(
    root: Path,
    rel: str,
    content: bytes = b"hello world\n",
    mime_type: str = "text/plain",
    extra: tuple[tuple[str, str | float], ...] = (),
) -> UploadRequest:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    sha = hashlib.sha256(content).hexdigest()
    metadata = (("path", rel), ("sha256", sha), *extra)
    return UploadRequest(path, rel, sha, len(content), mime_type, metadata)


def total_requests(fake: FakeGemini) -> int:
    with fake.lock:
        return sum(fake.counts.values())


# -- stores ------------------------------------------------------------------------------


def test_ensure_store_finds_the_store_by_display_name_instead_of_creating_another(
    fake: FakeGemini,
) -> None:
    first = open_store(fake, "objectivism-library")
    second = GeminiStore(settings_for(fake), KEY)

    name = second.ensure_store("objectivism-library")

    assert (name, fake.count("stores.create")) == (first.health()["store"], 1)
    assert name.startswith("fileSearchStores/objectivismlibrary-")


def test_ensure_store_pages_through_more_than_twenty_stores(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake), KEY)
    created = [store.ensure_store(f"store-{i}") for i in range(25)]

    found = GeminiStore(settings_for(fake), KEY).ensure_store("store-24")

    assert (found, fake.count("stores.create")) == (created[24], 25)


@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
def test_both_api_versions_reach_the_fake(
    fake: FakeGemini, api_version: str, tmp_path: Path
) -> None:
    store = open_store(fake, api_version=api_version)

    doc = store.upload(request_for(tmp_path, "a.txt"))

    assert [d["name"] for d in fake.documents()] == [doc.doc_id]


# -- upload ------------------------------------------------------------------------------


def test_an_upload_becomes_one_document_with_identity_metadata_first(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    request = request_for(tmp_path, "Courses/OPAR/lecture 1.md", b"# one\n", "text/markdown",
                          extra=(("collection", "Courses"), ("year", 1991.0)))  # fmt: skip

    doc = store.upload(request)

    with fake.lock:
        (stored,) = [d for s in fake.stores.values() for d in s.documents.values()]
        keys = [entry["key"] for entry in stored.metadata]
    assert keys == ["path", "sha256", "collection", "year"]
    assert fake.documents()[0]["metadata"] == {
        "path": "Courses/OPAR/lecture 1.md",
        "sha256": request.sha256,
        "collection": "Courses",
        "year": 1991.0,
    }
    assert (doc.path, doc.sha256, doc.doc_id) == (request.rel_path, request.sha256,
                                                  fake.documents()[0]["name"])  # fmt: skip


def test_the_temporary_file_is_deleted_after_a_successful_import(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)

    doc = store.upload(request_for(tmp_path, "a.txt"))

    assert (fake.file_names(), fake.count("files.delete")) == ([], 1)
    assert doc.file_id is not None and doc.file_id.startswith("files/")


def test_the_declared_mime_type_is_sent_not_guessed(fake: FakeGemini, tmp_path: Path) -> None:
    store = open_store(fake)

    store.upload(request_for(tmp_path, "notes.rtf", b"{\\rtf1 hi}", "application/rtf"))

    assert fake.documents()[0]["mime_type"] == "text/rtf"


def test_a_file_still_processing_is_waited_for(tmp_path: Path) -> None:
    with FakeGemini(Behaviour(file_processing_polls=2)) as fake:
        store = open_store(fake)

        store.upload(request_for(tmp_path, "a.txt"))

        assert (fake.count("files.get"), len(fake.documents())) == (2, 1)


def test_a_file_that_fails_processing_is_rejected_and_cleaned_up(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.fail_next_files(1)

    with pytest.raises(RemoteRejectedError, match=r"could not process a\.txt"):
        store.upload(request_for(tmp_path, "a.txt"))

    assert (fake.documents(), fake.file_names(), fake.count("stores.importFile")) == ([], [], 0)


def test_concurrent_uploads_each_land_once(fake: FakeGemini, tmp_path: Path) -> None:
    store = open_store(fake)
    requests = [request_for(tmp_path, f"d/{i}.txt", f"file {i}".encode()) for i in range(24)]
    results: list[RemoteDoc] = []
    lock = threading.Lock()

    def work(chunk: list[UploadRequest]) -> None:
        for request in chunk:
            doc = store.upload(request)
            with lock:
                results.append(doc)

    threads = [threading.Thread(target=work, args=(requests[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    paths = sorted(d["metadata"]["path"] for d in fake.documents())
    assert paths == sorted(r.rel_path for r in requests)
    assert len(results) == 24


# -- checkpoint and resume -----------------------------------------------------------------


class CrashError(Exception):
    """Stands in for the process dying right after the checkpoint."""


def test_the_checkpoint_names_operation_and_file_before_any_poll(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    seen: list[tuple[str, str, int]] = []

    def checkpoint(operation: str, file_id: str) -> None:
        seen.append((operation, file_id, fake.count("operations.get")))

    store.upload(request_for(tmp_path, "a.txt"), checkpoint)

    ((operation, file_id, polls),) = seen
    assert "/operations/" in operation and file_id.startswith("files/") and polls == 0


def test_resume_after_a_crash_returns_the_document_without_importing_again(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    saved: list[str] = []

    def crash(operation: str, file_id: str) -> None:
        saved.append(operation)
        raise CrashError

    request = request_for(tmp_path, "a.txt", extra=(("collection", "x"),))
    with pytest.raises(CrashError):
        store.upload(request, crash)
    restarted = open_store(fake)

    doc = restarted.resume(saved[0]).doc

    assert doc is not None
    assert (doc.doc_id, dict(doc.metadata)) == (
        fake.documents()[0]["name"],
        {"path": "a.txt", "sha256": request.sha256, "collection": "x"},
    )
    assert fake.count("stores.importFile") == 1


def test_resume_normalises_a_bare_document_name(tmp_path: Path) -> None:
    with FakeGemini(Behaviour(bare_document_name=True)) as fake:
        store = open_store(fake)

        doc = store.upload(request_for(tmp_path, "a.txt"))

        assert doc.doc_id == fake.documents()[0]["name"]
        assert doc.doc_id.startswith("fileSearchStores/")


@pytest.mark.parametrize(
    "operation",
    ["fileSearchStores/nope-123456789012/operations/unknown", "fileSearchStores/x/operations/y"],
)
def test_resume_of_an_unknown_operation_settles_nothing(fake: FakeGemini, operation: str) -> None:
    store = open_store(fake)

    resumed = store.resume(operation)

    assert (resumed.doc, resumed.error) == (None, None)


def test_resume_of_a_failed_operation_returns_the_servers_message(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.behaviour.op_polls_to_done = 100
    fake.fail_imports_of("a.txt")
    saved: list[str] = []

    def crash(operation: str, file_id: str) -> None:
        saved.append(operation)
        raise CrashError

    with pytest.raises(CrashError):
        store.upload(request_for(tmp_path, "a.txt"), crash)
    fake.behaviour.op_polls_to_done = 1

    resumed = store.resume(saved[0])

    assert (resumed.doc, resumed.error) == (None, "Failed to count tokens.")


def test_resume_of_an_operation_that_cannot_be_polled_now_raises_unavailable(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.behaviour.op_polls_to_done = 100
    saved: list[str] = []

    def crash(operation: str, file_id: str) -> None:
        saved.append(operation)
        raise CrashError

    with pytest.raises(CrashError):
        store.upload(request_for(tmp_path, "a.txt"), crash)
    fake.inject("operations.get", 503, times=10)

    with pytest.raises(RemoteUnavailableError, match="did not succeed in 4 attempts"):
        store.resume(saved[0])


# -- listing, finding, deleting --------------------------------------------------------------


def test_list_docs_pages_twenty_at_a_time_over_more_than_twenty_documents(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    for i in range(45):
        store.upload(request_for(tmp_path, f"many/{i:02}.txt", f"{i}".encode()))
    before = fake.count("documents.list")

    docs = list(store.list_docs())

    assert (len(docs), fake.count("documents.list") - before) == (45, 3)
    assert [d.path for d in docs] == [f"many/{i:02}.txt" for i in range(45)]


def test_find_returns_only_the_documents_of_that_path(fake: FakeGemini, tmp_path: Path) -> None:
    store = open_store(fake)
    first = store.upload(request_for(tmp_path, "a.txt", b"one"))
    second = store.upload(request_for(tmp_path, "a.txt", b"two"))
    store.upload(request_for(tmp_path, "b.txt"))

    found = store.find("a.txt")

    assert sorted(d.doc_id for d in found) == sorted([first.doc_id, second.doc_id])


def test_delete_forces_and_a_missing_document_counts_as_deleted(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    doc = store.upload(request_for(tmp_path, "a.txt"))

    store.delete(doc.doc_id)
    store.delete(doc.doc_id)

    assert (fake.documents(), fake.count("documents.delete")) == ([], 2)


def test_forget_file_of_a_missing_file_is_fine(fake: FakeGemini) -> None:
    store = open_store(fake)

    store.forget_file("files/neverexisted")

    assert fake.count("files.delete") == 1


def test_failed_documents_are_deleted_while_listing_not_returned(tmp_path: Path) -> None:
    behaviour = Behaviour(failed_import_keeps_document=True)
    with FakeGemini(behaviour) as fake:
        store = open_store(fake)
        fake.fail_imports_of("bad.txt")
        with pytest.raises(RemoteRejectedError):
            store.upload(request_for(tmp_path, "bad.txt"))
        good = store.upload(request_for(tmp_path, "good.txt"))

        docs = list(store.list_docs())

        assert ([d.doc_id for d in docs], len(fake.documents())) == ([good.doc_id], 1)


# -- errors ----------------------------------------------------------------------------------


def test_429s_and_5xx_are_retried_until_the_upload_succeeds(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.inject("files.upload", 500)
    fake.inject("files.upload.chunk", 503)
    fake.inject("stores.importFile", 429, times=2, retry_delay="0.01s")
    fake.inject("operations.get", 503)

    store.upload(request_for(tmp_path, "a.txt"))

    assert len(fake.documents()) == 1
    assert (fake.count("stores.importFile"), fake.count("operations.get")) == (3, 2)


def test_the_servers_retry_delay_is_honoured(fake: FakeGemini) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    store = GeminiStore(settings_for(fake, retry_max_delay_seconds=60.0), KEY,
                        clock=clock.clock, sleep=clock.sleep)  # fmt: skip
    fake.inject("stores.list", 429, retry_delay="7s")

    store.ensure_store("library")

    assert 7.0 in clock.slept


def test_a_server_retry_delay_shorter_than_the_backoff_does_not_shorten_it(
    fake: FakeGemini,
) -> None:
    """max(backoff, server): the config promises the server's delay only when longer."""
    clock = FakeClock(0.0, yield_on_sleep=True)
    settings = settings_for(fake, retry_initial_delay_seconds=5.0, retry_max_delay_seconds=60.0)
    store = GeminiStore(settings, KEY, clock=clock.clock, sleep=clock.sleep)
    fake.inject("stores.list", 429, retry_delay="0.01s")

    store.ensure_store("library")

    assert [pause for pause in clock.slept if pause > 0] and min(clock.slept) >= 5.0


def test_a_call_that_keeps_failing_ends_as_unavailable_after_max_attempts(
    fake: FakeGemini,
) -> None:
    store = open_store(fake)
    fake.inject("documents.list", 503, times=10)

    with pytest.raises(
        RemoteUnavailableError, match=r"did not succeed in 4 attempts; last error: 503 UNAVAILABLE"
    ):
        list(store.list_docs())

    assert fake.count("documents.list") == 4


def test_a_hung_connection_times_out_and_is_retried(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake, timeout_seconds=0.5), KEY)
    fake.inject_hang("stores.list", seconds=5.0)
    started = time.monotonic()

    store.ensure_store("library")

    assert (fake.count("stores.list"), time.monotonic() - started < 4.0) == (2, True)


def test_a_dropped_connection_is_retried(fake: FakeGemini) -> None:
    store = open_store(fake)
    fake.inject_hang("documents.list", seconds=0.0, mode="drop")

    assert list(store.list_docs()) == []


def test_an_import_whose_answer_was_lost_is_not_sent_twice(
    fake: FakeGemini, tmp_path: Path
) -> None:
    """The service imported the file and the connection broke: the outcome is in doubt."""
    store = open_store(fake)
    fake.inject_hang("stores.importFile", seconds=0.0, mode="process_drop")

    with pytest.raises(RemoteUncertainError, match="may have been done") as caught:
        store.upload(request_for(tmp_path, "a.txt"))

    assert (fake.count("stores.importFile"), len(fake.documents())) == (1, 1)
    assert caught.value.operation is None
    assert caught.value.file_id in fake.file_names(), "kept until the doubt is settled"


@pytest.mark.parametrize(
    ("fault", "imports", "in_doubt"),
    [
        ("429", 2, False),  # refused at the door: sent again
        ("500", 1, True),  # may have been done: never sent again blind
        ("503", 1, True),
        ("hang", 1, True),  # the connection closed with no answer
    ],
)
def test_only_a_429_sends_an_import_again(
    fake: FakeGemini, tmp_path: Path, fault: str, imports: int, in_doubt: bool
) -> None:
    store = open_store(fake)
    if fault == "hang":
        fake.inject_hang("stores.importFile", seconds=0.0, mode="drop")
    else:
        fake.inject("stores.importFile", int(fault), retry_delay="0.01s")

    try:
        store.upload(request_for(tmp_path, "a.txt"))
        doubted = False
    except RemoteUncertainError:
        doubted = True

    assert (fake.count("stores.importFile"), doubted) == (imports, in_doubt)
    assert len(fake.documents()) == (0 if in_doubt else 1)


def test_polls_that_keep_failing_leave_the_import_in_doubt_with_its_operation(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.inject("operations.get", 503, times=10)
    seen: list[str] = []

    with pytest.raises(RemoteUncertainError) as caught:
        store.upload(request_for(tmp_path, "a.txt"), lambda op, _file: seen.append(op))

    assert caught.value.operation == seen[0]
    assert fake.count("stores.importFile") == 1


def test_a_full_store_raises_quota_at_once_without_retrying(tmp_path: Path) -> None:
    with FakeGemini(Behaviour(storage_limit_bytes=10)) as fake:
        store = open_store(fake)

        with pytest.raises(RemoteQuotaError, match="storage limit of 10 bytes") as caught:
            store.upload(request_for(tmp_path, "a.txt", b"more than ten bytes"))

        assert (fake.count("stores.importFile"), fake.file_names()) == (1, [])
        assert "delete documents" in caught.value.hint


def test_an_operation_ending_with_an_error_is_a_rejection_with_the_servers_message(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.fail_imports_of("sheet.csv")

    with pytest.raises(RemoteRejectedError, match=r"sheet\.csv: Failed to count tokens\."):
        store.upload(request_for(tmp_path, "sheet.csv", b"a,b\n", "text/csv"))

    assert (fake.documents(), fake.file_names()) == ([], [])


def test_a_400_on_import_is_permanent_and_carries_the_servers_message(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    fake.inject("stores.importFile", 400, message="Request contains an invalid argument.")

    with pytest.raises(RemoteRejectedError, match="invalid argument") as caught:
        store.upload(request_for(tmp_path, "a.txt"))

    assert (fake.count("stores.importFile"), type(caught.value)) == (1, RemoteRejectedError)


@pytest.mark.parametrize(
    ("size", "mime_type", "message"),
    [
        (101 * 1024 * 1024, "application/pdf", "exceeds the 100 MB File Search limit"),
        (10, "application/epub+zip", "does not accept application/epub\\+zip"),
        (10, "application/octet-stream", "does not accept application/octet-stream"),
    ],
)
def test_too_large_or_unsupported_files_are_skipped_before_any_call(
    fake: FakeGemini, tmp_path: Path, size: int, mime_type: str, message: str
) -> None:
    store = open_store(fake)
    request = replace(request_for(tmp_path, "x.bin"), size=size, mime_type=mime_type)
    before = total_requests(fake)

    with pytest.raises(RemoteUnsupportedError, match=message):
        store.upload(request)

    assert total_requests(fake) == before


def test_more_than_twenty_metadata_entries_are_refused_before_any_call(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    extra = tuple((f"k{i}", f"v{i}") for i in range(19))
    before = total_requests(fake)

    with pytest.raises(RemoteRejectedError, match="21 metadata entries"):
        store.upload(request_for(tmp_path, "a.txt", extra=extra))

    assert total_requests(fake) == before


def test_the_fake_itself_refuses_more_than_twenty_metadata_entries(fake: FakeGemini) -> None:
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.base_url))
    store = client.file_search_stores.create(config={"display_name": "s"})
    metadata = [types.CustomMetadata(key=f"k{i}", string_value="v") for i in range(21)]

    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.import_file(
            file_search_store_name=store.name or "", file_name="files/x",
            config=types.ImportFileConfig(custom_metadata=metadata),
        )  # fmt: skip

    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")  # the file comes first


# -- credentials -----------------------------------------------------------------------------


class KeyChain:
    """An OS keychain stand-in, injected where `keyring` would be asked."""

    def __init__(self, stored: str | None = None) -> None:
        self.stored = stored
        self.asked: list[tuple[str, str]] = []

    def get_password(self, service_name: str, username: str) -> str | None:
        self.asked.append((service_name, username))
        return self.stored

    def set_password(self, service_name: str, username: str, password: str) -> None:
        self.stored = password

    def delete_password(self, service_name: str, username: str) -> None:
        self.stored = None


def test_a_missing_key_names_both_ways_to_provide_one() -> None:
    with pytest.raises(CredentialsMissingError) as caught:
        gemini.open_gemini(GeminiSettings(), environ={}, keystore=KeyChain)

    assert "GEMINI_API_KEY" in caught.value.message
    assert "export GEMINI_API_KEY=" in caught.value.hint
    assert "objlibd key set" in caught.value.hint
    assert "python -m keyring set objlibd gemini-api-key" in caught.value.hint


def test_the_key_comes_from_the_keychain_when_the_environment_has_none(fake: FakeGemini) -> None:
    chain = KeyChain(KEY)

    store = gemini.open_gemini(settings_for(fake), environ={}, keystore=lambda: chain)
    store.ensure_store("library")

    assert chain.asked == [("objlibd", "gemini-api-key")]


def test_the_environment_key_wins_over_the_keychain(fake: FakeGemini) -> None:
    chain = KeyChain("not this one")

    store = gemini.open_gemini(
        settings_for(fake), environ={"GEMINI_API_KEY": KEY}, keystore=lambda: chain
    )

    assert store.ensure_store("library").startswith("fileSearchStores/")
    assert chain.asked == []


def test_a_null_os_keychain_counts_as_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real keyring with its null backend: a machine without a keychain."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")

    with pytest.raises(CredentialsMissingError):
        gemini.open_gemini(GeminiSettings(), environ={})


def test_a_wrong_key_is_refused_with_a_hint_and_without_echoing_the_key(
    fake: FakeGemini,
) -> None:
    secret = "objlibd-canary-not-the-right-key-0123456789"
    store = GeminiStore(settings_for(fake), secret)

    with pytest.raises(RemoteRejectedError, match="API key not valid") as caught:
        store.ensure_store("library")

    assert "GEMINI_API_KEY" in caught.value.hint
    assert secret not in f"{caught.value.message} {caught.value.hint} {store.health()}"


# -- breaker, limiter, health ----------------------------------------------------------------


def test_the_breaker_trips_on_a_429_storm_then_recovers_after_the_cooldown(
    fake: FakeGemini,
) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    settings = settings_for(fake, breaker_cooldown_seconds=300.0, max_attempts=6)
    store = GeminiStore(settings, KEY, clock=clock.clock, sleep=clock.sleep)
    fake.inject("stores.list", 429, times=3, retry_delay=None)

    with capture_logs() as logs:
        store.ensure_store("library")

    events = [e["event"] for e in logs if e["event"].startswith("remote.breaker.")]
    assert events == ["remote.breaker.opened", "remote.breaker.half_open", "remote.breaker.closed"]
    assert store.health()["breaker"] == {"state": "closed", "error_rate": 0.0, "consecutive": 0,
                                         "opened_at": None, "trips": 1}  # fmt: skip
    assert clock.now >= 300.0


def test_while_the_breaker_is_open_concurrency_drops_to_one(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake, max_attempts=3, breaker_cooldown_seconds=3600.0), KEY)
    fake.inject("stores.list", 429, times=3, retry_delay="0s")

    with pytest.raises(RemoteUnavailableError):
        store.ensure_store("library")

    health = store.health()
    assert (health["concurrency"], health["max_concurrency"]) == (1, 4)
    assert health["breaker"]["state"] == "open"  # type: ignore[index]


def test_calls_wait_out_an_open_breaker_instead_of_hammering(fake: FakeGemini) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    settings = settings_for(fake, breaker_cooldown_seconds=300.0, max_attempts=3)
    store = GeminiStore(settings, KEY, clock=clock.clock, sleep=clock.sleep)
    fake.inject("stores.list", 429, times=3, retry_delay=None)
    with pytest.raises(RemoteUnavailableError):
        store.ensure_store("library")
    calls = fake.count("stores.list")

    store.ensure_store("library")

    assert (calls, fake.count("stores.list"), clock.now >= 300.0) == (3, 4, True)


def test_gated_calls_are_spaced_by_the_rate_tier(fake: FakeGemini) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    store = GeminiStore(settings_for(fake, rate_limit_tier="tier1"), KEY,
                        clock=clock.clock, sleep=clock.sleep)  # fmt: skip

    for i in range(3):
        store.ensure_store(f"s{i}")

    assert [s for s in clock.slept if s >= 1.0] == pytest.approx([3.0, 3.0])


def test_health_reports_store_breaker_tier_and_concurrency_without_the_key(
    fake: FakeGemini,
) -> None:
    store = open_store(fake)

    health = store.health()

    assert set(health) == {"backend", "store", "breaker", "rate_limit_tier", "rate_limit", "pace",
                           "concurrency", "max_concurrency", "in_flight", "calls_per_file",
                           "failing_for_s", "last_error"}  # fmt: skip
    assert (health["backend"], health["rate_limit_tier"], health["concurrency"]) == (
        "gemini",
        "tier3",
        4,
    )
    assert (health["in_flight"], health["calls_per_file"], health["failing_for_s"]) == (0, 2, None)
    assert KEY not in repr(health)


def test_a_store_that_does_not_answer_is_failing_until_any_answer(fake: FakeGemini) -> None:
    """Only unanswered calls (5xx, connection errors) count; a 429 or a refusal is an answer."""
    clock = FakeClock()
    store = GeminiStore(settings_for(fake, max_attempts=2), KEY, clock=clock, sleep=clock.sleep)
    fake.inject("stores.list", status=503, times=2)

    with pytest.raises(RemoteUnavailableError):
        store.ensure_store("library")
    clock.advance(90)
    failing = store.health()
    fake.inject("stores.list", status=429, times=1)
    store.ensure_store("library")

    assert failing["failing_for_s"] == pytest.approx(90, abs=1)
    assert "503" in str(failing["last_error"])
    assert store.health()["failing_for_s"] is None


def test_stats_are_the_stores_own_counts(fake: FakeGemini, tmp_path: Path) -> None:
    store = open_store(fake)
    for name in ("a.txt", "b.txt"):
        store.upload(request_for(tmp_path, name, content=name.encode() * 10))

    assert store.stats() == {"documents": 2, "pending": 0, "failed": 0, "size_bytes": 100}
    assert GeminiStore(settings_for(fake), KEY).stats() is None  # no store chosen yet


def test_concurrency_is_the_configured_maximum(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake, max_concurrent_uploads=7), KEY)

    assert store.concurrency == 7


def test_using_the_store_before_ensure_store_is_a_programming_error(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake), KEY)

    with pytest.raises(RuntimeError, match="ensure_store"):
        list(store.list_docs())


def test_a_configured_rpm_overrides_the_tiers_number(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake, rate_limit_tier="free", rate_limit_rpm=600.0), KEY)

    assert store.health()["rate_limit"] == {
        "rpm": 600.0,
        "calls": 0,
        "waited_seconds": 0.0,
        "waiting": 0,
    }
    assert store.health()["pace"] == {
        "rpm": 600.0, "source": "configured", "limit": None, "ceiling": None, "quota_429s": 0,
        "cuts": 0, "calls": 0, "waited_s": 0.0,
    }  # fmt: skip


def test_a_file_that_vanished_before_upload_is_reported_as_unreadable_not_rejected(
    fake: FakeGemini, tmp_path: Path
) -> None:
    store = open_store(fake)
    request = request_for(tmp_path, "gone.txt")
    request.local_path.unlink()

    with pytest.raises(SourceUnreadableError, match=r"cannot read gone\.txt") as caught:
        store.upload(request)

    assert caught.value.gone, "the engine re-probes the drive, then takes the missing path"
    assert fake.count("files.upload") == 0


def test_the_sdk_does_not_retry_on_its_own(fake: FakeGemini) -> None:
    store = GeminiStore(settings_for(fake, max_attempts=1), KEY)
    fake.inject("stores.list", 503)

    with pytest.raises(RemoteUnavailableError, match="did not succeed in 1 attempts"):
        store.ensure_store("library")

    assert fake.count("stores.list") == 1
