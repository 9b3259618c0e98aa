"""`objlibd search` on the gemini backend: the real google-genai SDK against the local fake.

Must-show 1 of issue #15: the fake serves `models/{m}:generateContent` with `fileSearch`
(both key spellings), grounding chunks from stored documents with their customMetadata, and
`metadata_filter`; a 20-file library synced by `objlibd sync` is searched, the phrase's file is
cited by path, `--where` narrows. Then the error paths (no key, unknown or retired model,
store missing, quota, no grounding) and `doctor --deep` (must-show 3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from fakes.gemini_server import Behaviour, FakeGemini
from objlibd.cli import main
from objlibd.doctor import report as doctor
from objlibd.doctor.checks import Level
from objlibd.doctor.report import Probes
from objlibd.doctor.search import NAME as DEEP_CHECK
from test_gemini_sync import FAKE_KEY, Site, write_config

TOPICS = (
    "metaphysics", "epistemology", "ethics", "politics", "aesthetics", "logic", "induction",
    "concepts", "definitions", "axioms", "volition", "emotions", "values", "virtue",
    "rights", "capitalism", "art", "romanticism", "objectivity", "certainty",
)  # fmt: skip
COURSES = ("Course A", "Course B", "Course C", "Course D")
# §5 of gemini-file-search-query.md, as the real service would send it.
EXAMPLE = json.loads((Path(__file__).parent / "fakes" / "query_example.json").read_text())


@pytest.fixture(autouse=True)
def _key_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    for name in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "OBJLIBD_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def make_twenty(root: Path) -> list[str]:
    paths = []
    for index, topic in enumerate(TOPICS):
        rel = f"{COURSES[index % 4]}/Lecture {index:02d} {topic.title()}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(
            f"Lecture {index} covers {topic}.\n\nIts distinctive word is zeta{topic}{index}.",
            encoding="utf-8",
        )
        paths.append(rel)
    return paths


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(Behaviour(api_key=FAKE_KEY)) as server:
        yield server


@pytest.fixture
def site(tmp_path: Path, fake: FakeGemini) -> Site:
    root = tmp_path / "library"
    root.mkdir()
    site = Site(tmp_path, root, tmp_path / "objlibd.toml", fake, make_twenty(root))
    write_config(site)
    return site


def run(site: Site, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([*args, "--config", str(site.config)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def search(
    site: Site, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    code, out, err = run(site, "search", *args, "--json", capsys=capsys)
    assert out.strip(), err
    return code, json.loads(out)


@pytest.fixture
def synced(site: Site, capsys: pytest.CaptureFixture[str]) -> Site:
    code, _out, err = run(site, "sync", capsys=capsys)
    assert code == 0, err
    return site


def set_search(site: Site, text: str) -> None:
    with site.config.open("a", encoding="utf-8") as handle:
        handle.write(f"[search]\n{text}\n")


# -- must-show 1: the fake, through the SDK, and objlibd search ------------------------------


def test_a_phrase_from_one_of_20_synced_files_cites_its_path(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = search(synced, "Which lecture has the word zetaaxioms9?", capsys=capsys)

    assert (code, result["backend"], result["grounded"]) == (0, "gemini", True)
    assert result["model"] == "gemini-3.5-flash"
    assert "zetaaxioms9" in result["answer"]
    first = result["citations"][0]
    assert (first["path"], first["state"]) == ("Course B/Lecture 09 Axioms.txt", "present")
    assert "zetaaxioms9" in first["passages"][0]["text"]
    assert first["metadata"]["collection"] == "Course B"
    # An imported document's title is its File ID, which reads as the file's name.
    assert re.fullmatch(r"lecture-09-axioms-[0-9a-f]{12}", first["title"])


def test_where_narrows_to_the_filtered_collection(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    question = "lecture covers"

    _code, wide = search(synced, question, "--top-k", "20", capsys=capsys)
    _code, narrow = search(
        synced, question, "--top-k", "20", "--where", 'collection = "Course C"', capsys=capsys
    )
    _code, none = search(synced, "zetaaxioms9", "--where", 'collection = "Course C"', capsys=capsys)

    assert {c["metadata"]["collection"] for c in wide["citations"]} == set(COURSES)
    assert {c["metadata"]["collection"] for c in narrow["citations"]} == {"Course C"}
    assert len(narrow["citations"]) == 5
    assert (none["grounded"], none["citations"]) == (False, [])


def test_the_text_output_says_answer_sources_and_states(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (synced.root / "Course A/Lecture 00 Metaphysics.txt").unlink()

    code, out, _err = run(synced, "search", "zetametaphysics0 please", capsys=capsys)

    assert code == 0
    assert out.startswith("Answer (gemini-3.5-flash):\n  Its distinctive word is zetametaphysics0.")
    assert "1. Course A/Lecture 00 Metaphysics.txt  [missing]" in out


def test_without_metadata_in_citations_the_file_id_title_maps_back(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    synced.fake.behaviour.chunk_metadata = False  # as an SDK older than 1.69 would see it

    _code, result = search(synced, "zetavolition10", capsys=capsys)

    first = result["citations"][0]
    assert (first["path"], first["metadata"]) == ("Course C/Lecture 10 Volition.txt", {})
    assert first["state"] == "present"  # no sha256 to compare: it is there


def test_the_reference_example_parses_into_grouped_citations(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    synced.fake.behaviour.canned_answer = EXAMPLE

    _code, result = search(synced, "Who wrote I, Claudius?", capsys=capsys)

    assert result["answer"].startswith("I, Claudius is a 1934 novel by Robert Graves")
    paths = [(c["path"], len(c["passages"])) for c in result["citations"]]
    assert paths == [("notes/i-claudius.md", 2), ("notes/claudius-the-god.md", 1)]
    scores = [p["score"] for p in result["citations"][0]["passages"]]
    assert scores == [0.92, 0.61]
    assert result["citations"][0]["metadata"]["tags"] == "fiction, rome"
    assert result["citations"][0]["state"] == "missing"  # not in this library


def test_an_answer_without_grounding_says_so_and_exits_1(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    synced.fake.behaviour.grounding = False

    code, out, _err = run(synced, "search", "zetaethics2", capsys=capsys)

    assert code == 1
    assert "Not grounded in the library" in out


# -- the wire: what the SDK sends, and what the fake accepts ---------------------------------


def client_for(fake: FakeGemini) -> genai.Client:
    options = types.HttpOptions(base_url=fake.base_url, api_version="v1beta")
    return genai.Client(api_key=FAKE_KEY, http_options=options)


def test_the_sdk_sends_snake_case_inside_filesearch_and_camel_case_works_too(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies: list[dict[str, Any]] = []
    synced.fake.on("models.generateContent", lambda call: bodies.append(json.loads(call.body)))
    search(
        synced, "zetalogic5", "--where", 'collection = "Course B"', "--top-k", "3", capsys=capsys
    )
    (store,) = synced.fake.store_names()
    raw = {
        "contents": [{"role": "user", "parts": [{"text": "zetalogic5"}]}],
        "tools": [{"file_search": {"fileSearchStoreNames": [store], "topK": 3,
                                   "metadataFilter": 'collection = "Course B"'}}],
    }  # fmt: skip

    reply = httpx2.post(
        f"{synced.fake.base_url}/v1beta/models/gemini-3.5-flash:generateContent",
        json=raw, headers={"x-goog-api-key": FAKE_KEY},
    )  # fmt: skip

    sent = bodies[0]  # the SDK's; the second is the raw request above
    inner = sent["tools"][0]["fileSearch"]
    assert inner == {
        "file_search_store_names": [store], "top_k": 3,
        "metadata_filter": 'collection = "Course B"',
    }  # fmt: skip
    assert "systemInstruction" in sent
    chunks = reply.json()["candidates"][0]["groundingMetadata"]["groundingChunks"]
    (chunk,) = chunks
    path = next(e for e in chunk["retrievedContext"]["customMetadata"] if e["key"] == "path")
    assert path["stringValue"] == "Course B/Lecture 05 Logic.txt"


@pytest.mark.parametrize(
    ("tools", "model", "says"),
    [
        ([{"file_search": {"file_search_store_names": [f"fileSearchStores/s{i}" for i in range(6)]}}],
         "gemini-3.5-flash", "At most 5"),
        ([{"file_search": {}}], "gemini-3.5-flash", "must be specified"),
        ([{"file_search": {"file_search_store_names": ["fileSearchStores/nope"]}}],
         "gemini-3.5-flash", "does not exist"),
        ([{"file_search": {"file_search_store_names": ["x"]}}, {"google_search": {}}],
         "gemini-3.5-flash", "cannot be combined"),
        ([{"file_search": {"file_search_store_names": ["x"]}}], "gemini-2.5-flash", "not found"),
    ],
)  # fmt: skip
def test_the_fake_refuses_what_the_service_refuses(
    fake: FakeGemini, tools: list[dict[str, Any]], model: str, says: str
) -> None:
    client = client_for(fake)
    with pytest.raises(genai_errors.ClientError) as refused:
        client.models.generate_content(model=model, contents="q", config={"tools": tools})
    client.close()

    assert says in str(refused.value)


def test_streaming_carries_the_grounding_too(synced: Site) -> None:
    (store,) = synced.fake.store_names()
    client = client_for(synced.fake)
    tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store]))

    chunks = list(client.models.generate_content_stream(
        model="gemini-3.5-flash", contents="zetarights14",
        config=types.GenerateContentConfig(tools=[tool]),
    ))  # fmt: skip
    client.close()

    grounding = chunks[-1].candidates[0].grounding_metadata
    assert grounding.grounding_chunks[0].retrieved_context.custom_metadata[0].string_value == (
        "Course C/Lecture 14 Rights.txt"
    )


# -- errors: clear messages, usual exit codes, nothing created -------------------------------


def test_no_key_is_exit_2_with_both_ways_to_give_one(
    synced: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")

    code, _out, err = run(synced, "search", "ethics", capsys=capsys)

    assert code == 2
    assert "Gemini API key" in err and "objlibd key set" in err


def test_an_unknown_model_is_a_config_error_naming_the_key(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    set_search(synced, 'model = "gemini-9.9-flash"')

    code, _out, err = run(synced, "search", "ethics", capsys=capsys)

    assert code == 2
    assert f"objlibd: {synced.config}: [search] model 'gemini-9.9-flash': Gemini does not" in err
    assert "hint: set [search] model to one of: gemini-3.8-flash" in err


def test_a_retired_model_is_refused_at_load(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    set_search(site, 'model = "gemini-2.5-flash"')

    code, _out, err = run(site, "search", "ethics", capsys=capsys)

    assert code == 2
    assert "[search] model: 'gemini-2.5-flash' is being shut down" in err
    assert site.fake.count("models.generateContent") == 0


def test_a_store_that_does_not_exist_is_explained_and_not_created(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(site, "search", "ethics", capsys=capsys)

    assert code == 1
    assert 'the Gemini store "objlibd-e2e" does not exist yet' in err
    assert site.fake.store_names() == {}
    assert site.fake.count("stores.create") == 0


def test_a_store_deleted_on_the_service_is_said_so(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (store,) = synced.fake.store_names()
    client = client_for(synced.fake)
    client.file_search_stores.delete(name=store, config={"force": True})
    client.close()

    code, _out, err = run(synced, "search", "ethics", capsys=capsys)

    assert code == 1
    assert f"the Gemini store {store} does not exist" in err


def test_a_quota_that_stays_exhausted_is_said_so_after_one_retry(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    synced.fake.inject("models.generateContent", 429, times=2, retry_delay="0.01s")

    code, _out, err = run(synced, "search", "ethics", capsys=capsys)

    assert code == 1
    assert "quota for gemini-3.5-flash is used up" in err
    assert synced.fake.count("models.generateContent") == 2
    assert FAKE_KEY not in err


# -- must-show 3: doctor --deep --------------------------------------------------------------


def deep_check(site: Site) -> doctor.Check:
    probes = Probes(
        manager=lambda _c: None, keystore=lambda: None,  # type: ignore[arg-type,return-value]
        environ={"GEMINI_API_KEY": FAKE_KEY},
    )  # fmt: skip
    report = doctor.run(site.config, probes, deep=True)
    return next(check for check in report.checks if check.name == DEEP_CHECK)


def test_doctor_deep_ok_on_a_healthy_store_fail_after_a_deletion_behind_our_back(
    synced: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = deep_check(synced)
    sample = "Course A/Lecture 00 Metaphysics.txt"  # the first synced text file by path
    doc = next(d for d in synced.fake.documents() if d["metadata"]["path"] == sample)
    client = client_for(synced.fake)
    client.file_search_stores.documents.delete(name=doc["name"], config={"force": True})
    client.close()
    broken = deep_check(synced)
    code, out, _err = run(synced, "doctor", "--deep", capsys=capsys)

    assert healthy.level is Level.OK
    assert f"found {sample} (gemini)" in healthy.detail
    assert broken.level is Level.FAIL
    assert f"from {sample}: no citation maps back to it" in broken.detail
    assert code == 1 and "FAIL  search finds a synced file" in out


def test_doctor_deep_offline_does_not_call_the_service(synced: Site) -> None:
    probes = Probes(manager=lambda _c: None, keystore=lambda: None, environ={})  # type: ignore[arg-type,return-value]
    report = doctor.run(synced.config, probes, offline=True, deep=True)

    check = next(c for c in report.checks if c.name == DEEP_CHECK)
    assert (check.level, check.detail) == (Level.OK, "not checked (--offline)")
    assert synced.fake.count("models.generateContent") == 0
