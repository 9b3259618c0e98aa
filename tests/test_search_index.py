"""The local store's full-text index: extraction, ranking, filters, and exactness.

The index must say exactly what the store holds, after any mix of uploads, replacements,
deletions, prunes and crashes (a hypothesis state machine, and a real SIGKILL loop); a hit
whose document is gone is never shown, even before the index is reconciled.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from objlibd.errors import QueryError, RemoteStoreMissingError, RemoteUnavailableError
from objlibd.remote.base import RemoteDoc
from objlibd.remote.extraction import PDF_EXTRA, extract, passages, pypdf_pages
from objlibd.remote.ftsquery import match_expression
from objlibd.remote.fulltext import INDEX_NAME, Entry, FullTextIndex
from objlibd.remote.local import LocalStore
from objlibd.remote.search import SearchQuery
from search_fixtures import make_pdf, request_for

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


# -- extraction -----------------------------------------------------------------------------


def test_text_html_and_pdf_pages_are_extracted_and_others_say_why_not() -> None:
    html = b"<html><style>p{}</style><p>Caf\xc3\xa9 <b>society</b></p><script>x=1</script></html>"
    pdf = make_pdf(["Page one talks of axioms.", "Page two of identity."])

    text = extract(b"\xef\xbb\xbfplain words", "text/plain")
    markup = extract(html, "text/html")
    pages = extract(pdf, "application/pdf")
    no_pypdf = extract(pdf, "application/pdf", pdf=lambda: None)
    docx = extract(b"PK\x03\x04...", DOCX)
    damaged = extract(b"%PDF-1.4 not really", "application/pdf")

    assert text.pages == ((None, "plain words"),)
    assert " ".join(markup.pages[0][1].split()) == "Café society"
    assert [(n, t.strip()) for n, t in pages.pages] == [
        (1, "Page one talks of axioms."),
        (2, "Page two of identity."),
    ]
    assert (no_pypdf.indexed, no_pypdf.reason) == (False, PDF_EXTRA)
    assert not docx.indexed and ".docx" in docx.reason
    assert not damaged.indexed and damaged.reason


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=300), max_size=12))
def test_passages_keep_every_word_in_order_and_stay_short(paragraphs: list[str]) -> None:
    text = "\n\n".join(paragraphs)

    pieces = list(passages(text, size=100))

    assert "".join("".join(pieces).split()) == "".join(text.split())
    if all(len(word) <= 100 for word in text.split()):  # only a longer word is ever cut
        assert " ".join(pieces).split() == text.split()
    assert all(0 < len(piece) <= 100 for piece in pieces)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is the role of reason?", '"role" OR "reason"'),
        ('the "law of identity" in AND NOT metaphysics', '"law of identity" OR "metaphysics"'),
        ("what is it", '"what" OR "is" OR "it"'),
        ("Café NEAR(x)", '"café" OR "near" OR "x"'),
    ],
)
def test_a_question_becomes_an_fts_query_of_quoted_terms(question: str, expected: str) -> None:
    # AND, NOT and NEAR are FTS5 operators: quoted, they are words ("and", "not" are common).
    assert match_expression(question) == expected


def test_common_words_only_add_to_the_score_when_rarer_terms_are_asked_too() -> None:
    def common(words: list[str]) -> set[str]:
        return {"reason"} & set(words)

    assert match_expression("reason and Aristotle", common) == (
        '("aristotle") AND ("reason" OR "aristotle")'
    )
    assert match_expression('"law of identity" reason', common) == (
        '("law of identity") AND ("law of identity" OR "reason")'
    )
    assert match_expression("reason", common) == '"reason"'


def test_a_big_index_demotes_its_common_words_and_still_ranks_the_rare_passage_first(
    tmp_path: Path,
) -> None:
    index = FullTextIndex.open(tmp_path / INDEX_NAME)
    filler = "everywhere " + "lorem ipsum dolor " * 60
    paragraphs = [f"{filler} {n}" for n in range(2100)]
    paragraphs[1234] = filler + " zygomorphic"
    doc = RemoteDoc("s/documents/big", "big.txt", {"path": "big.txt"})
    index.add(Entry("big", doc, "text/plain", (1, 1)), "\n\n".join(paragraphs).encode)

    common = index._common(["everywhere", "zygomorphic"])
    hits = index.search(SearchQuery("everywhere zygomorphic", top_k=3), lambda _name: True)
    plain = index.search(SearchQuery("everywhere", top_k=3), lambda _name: True)
    index.close()

    assert common == {"everywhere"}
    assert [h[3].text.endswith("zygomorphic") for h in hits] == [True]
    assert len(plain) == 3


def test_a_question_without_words_is_a_usage_error() -> None:
    with pytest.raises(QueryError):
        match_expression("?! --")


# -- the index beside a real local store ----------------------------------------------------


def store_with(
    tmp_path: Path, docs: dict[str, tuple[bytes, str]]
) -> tuple[LocalStore, dict[str, str]]:
    store = LocalStore(tmp_path / "store")
    store.ensure_store("s")
    ids = {}
    for number, (rel, (data, mime)) in enumerate(docs.items()):
        request = request_for(
            tmp_path / f"f{number}", rel, data, mime, collection=rel.split("/")[0]
        )
        ids[rel] = store.upload(request).doc_id
    return store, ids


def ask(tmp_path: Path, question: str, where: str | None = None, top_k: int = 8) -> list[str]:
    searcher = LocalStore(tmp_path / "store").searcher("s", None)
    try:
        result = searcher.search(SearchQuery(question, where, top_k))
    finally:
        searcher.close()
    return [citation.path or "?" for citation in result.citations]


def test_search_ranks_passages_filters_on_metadata_and_lists_what_it_cannot_read(
    tmp_path: Path,
) -> None:
    store, _ids = store_with(tmp_path, {
        "Lectures/reason.txt": (b"Reason is man's means of survival. Reason, reason.", "text/plain"),
        "Lectures/axioms.md": (b"# Axioms\n\nAn axiom is a primary fact. Reason too.", "text/markdown"),
        "Essays/identity.pdf": (make_pdf(["A is A.", "The law of identity, page two."]), "application/pdf"),
        "Essays/scan.docx": (b"PK\x03\x04binary", DOCX),
    })  # fmt: skip
    store.close()
    searcher = LocalStore(tmp_path / "store").searcher("s", None)
    result = searcher.search(SearchQuery('"law of identity"'))
    searcher.close()

    assert ask(tmp_path, "reason") == ["Lectures/reason.txt", "Lectures/axioms.md"]
    assert ask(tmp_path, "reason", where='collection = "Essays"') == []
    assert ask(tmp_path, "axiom OR identity", where='NOT collection = "Lectures"') == [
        "Essays/identity.pdf"
    ]
    assert ask(tmp_path, "reason", top_k=1) == ["Lectures/reason.txt"]
    (cited,) = result.citations
    assert (cited.path, cited.passages[0].page) == ("Essays/identity.pdf", 2)
    assert "law of identity" in cited.passages[0].text
    assert result.answer is None and result.grounded
    assert [path for path, _ in result.not_indexed] == ["Essays/scan.docx"]


def test_replace_and_delete_take_the_old_words_out(tmp_path: Path) -> None:
    store, ids = store_with(tmp_path, {"A/a.txt": (b"old wording here", "text/plain")})
    new = store.upload(request_for(tmp_path / "new", "A/a.txt", b"new wording here", "text/plain"))
    store.delete(ids["A/a.txt"])

    assert (ask(tmp_path, "old"), ask(tmp_path, "new")) == ([], ["A/a.txt"])
    store.delete(new.doc_id)
    assert ask(tmp_path, "wording") == []
    store.close()


def test_pdfs_skipped_without_pypdf_are_indexed_once_it_is_there(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", pdf=lambda: None)
    store.ensure_store("s")
    pdf = make_pdf(["Objectivist epistemology in a PDF."])
    store.upload(request_for(tmp_path / "p", "B/e.pdf", pdf, "application/pdf"))
    store.close()
    before = LocalStore(tmp_path / "store").searcher("s", None).search(SearchQuery("epistemology"))

    LocalStore(tmp_path / "store", pdf=pypdf_pages).ensure_store("s")

    assert before.not_indexed == (("B/e.pdf", PDF_EXTRA),) and before.citations == ()
    assert ask(tmp_path, "epistemology") == ["B/e.pdf"]


def test_searching_reads_only_and_works_while_the_store_is_being_written(tmp_path: Path) -> None:
    store, _ids = store_with(tmp_path, {"A/a.txt": (b"first words", "text/plain")})
    before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "store").rglob("*"))

    assert ask(tmp_path, "first") == ["A/a.txt"]  # the writer's connection is still open
    assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "store").rglob("*")) == before
    store.upload(request_for(tmp_path / "b", "A/b.txt", b"second words", "text/plain"))
    assert ask(tmp_path, "second") == ["A/b.txt"]
    store.close()


def test_a_missing_store_or_index_is_explained_and_nothing_is_created(tmp_path: Path) -> None:
    with pytest.raises(RemoteStoreMissingError) as missing:
        LocalStore(tmp_path / "store").searcher("s", None)
    store, _ids = store_with(tmp_path, {})
    store.close()
    folder = next((tmp_path / "store").glob("s-*"))
    (folder / INDEX_NAME).unlink()
    with pytest.raises(RemoteUnavailableError) as no_index:
        LocalStore(tmp_path / "store").searcher("s", None)

    assert "objlibd sync" in missing.value.hint and "objlibd sync" in no_index.value.hint
    assert not (folder / INDEX_NAME).exists()
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [folder.name, "stores.json"]


# -- exactness: random operations and crashes ------------------------------------------------

PATHS = [f"{c}/doc{i}.txt" for c in ("A", "B") for i in range(4)]
KINDS = ("text/plain", "text/markdown", "text/html", "application/pdf", DOCX)


def body(word: str, kind: str) -> bytes:
    line = f"{word} shares these words: reason and identity."
    if kind == "application/pdf":
        return make_pdf([line, "second page"])
    if kind == "text/html":
        return f"<p>{line}</p>".encode()
    return line.encode()


def stored_docs(folder: Path) -> set[str]:
    """Return the ids of the store's documents, read from its files (torn ones are not)."""
    ids = set()
    for document in (folder / "docs").glob("*.json"):
        try:
            ids.add(json.loads(document.read_text(encoding="utf-8"))["name"])
        except ValueError:
            continue
    return ids


class IndexMachine(RuleBasedStateMachine):
    """The store, the engine's view of it (`live`), and crashes in between."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="objlibd-fts-"))
        self.store = LocalStore(self.tmp / "store")
        self.store.ensure_store("s")
        self.folder = next((self.tmp / "store").glob("s-*"))
        self.live: dict[str, tuple[str, str, str]] = {}  # path -> (doc id, word, kind)
        self.dead: list[str] = []  # words of documents that are gone
        self.count = 0
        self.crashed = False

    def teardown(self) -> None:
        self.store.close()

    def _upload(self, path: str, kind: str) -> tuple[str, str, str]:
        self.count += 1
        word = f"uniq{self.count:04d}word"
        file = self.tmp / f"{self.count}.bin"
        doc = self.store.upload(request_for(file, path, body(word, kind), kind))
        return doc.doc_id, word, kind

    def _forget(self, path: str) -> None:
        self.dead.append(self.live.pop(path)[1])

    @precondition(lambda self: not self.crashed)
    @rule(path=st.sampled_from(PATHS), kind=st.sampled_from(KINDS))
    def upload_or_replace(self, path: str, kind: str) -> None:
        old = self.live.get(path)
        self.live[path] = self._upload(path, kind)  # upload first...
        if old is not None:
            self.store.delete(old[0])  # ...then delete the old document
            self.dead.append(old[1])

    @precondition(lambda self: not self.crashed and self.live)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.live)))
        self.store.delete(self.live[path][0])
        self._forget(path)

    @precondition(lambda self: not self.crashed and self.live)
    @rule()
    def prune(self) -> None:
        for path in sorted(self.live)[::2]:
            self.store.delete(self.live[path][0])
            self._forget(path)

    @precondition(lambda self: not self.crashed)
    @rule(path=st.sampled_from(PATHS))
    def crash_after_the_document_before_the_index(self, path: str) -> None:
        if path in self.live:
            return
        self.live[path] = doc = self._upload(path, "text/plain")
        name = doc[0].rsplit("/", 1)[-1]
        conn = sqlite3.connect(self.folder / INDEX_NAME)  # as if its row never committed
        with conn:
            (first, last) = conn.execute(
                "SELECT first_chunk, last_chunk FROM docs WHERE name = ?", (name,)
            ).fetchone()
            conn.execute("DELETE FROM chunks WHERE rowid BETWEEN ? AND ?", (first, last))
            conn.execute("DELETE FROM docs WHERE name = ?", (name,))
        conn.close()
        self.crashed = True

    @precondition(lambda self: not self.crashed and self.live)
    @rule(data=st.data(), torn=st.booleans())
    def crash_in_a_delete_or_a_power_cut_tears_a_document(
        self, data: st.DataObject, torn: bool
    ) -> None:
        path = data.draw(st.sampled_from(sorted(self.live)))
        name = self.live[path][0].rsplit("/", 1)[-1]
        document = self.folder / "docs" / f"{name}.json"
        if torn:
            document.write_bytes(document.read_bytes()[: document.stat().st_size // 2])
        else:  # the delete removed the files and died before the index heard of it
            document.unlink()
            (self.folder / "blobs" / f"{name}.bin").unlink()
        self._forget(path)
        self.crashed = True

    @precondition(lambda self: not self.crashed)
    @rule(how=st.sampled_from(["deleted", "garbage", "kept"]))
    def crash_and_lose_the_index(self, how: str) -> None:
        self.store.close()
        index = self.folder / INDEX_NAME
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{index}{suffix}").unlink(missing_ok=True)
        elif how == "garbage":
            index.write_bytes(b"not a database at all" * 100)
        self.crashed = True
        self.store = LocalStore(self.tmp / "store")  # not bound yet: the restart binds it

    @precondition(lambda self: self.crashed)
    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = LocalStore(self.tmp / "store")
        self.store.ensure_store("s")
        self.crashed = False

    @invariant()
    def the_store_is_what_the_engine_believes(self) -> None:
        assert stored_docs(self.folder) == {doc_id for doc_id, _w, _k in self.live.values()}

    @invariant()
    def the_index_is_exactly_the_store_unless_a_crash_is_unrepaired(self) -> None:
        index = FullTextIndex.open_readonly(self.folder / INDEX_NAME)
        if self.crashed:
            if index is not None:
                index.close()
            return
        assert index is not None
        try:
            indexed, chunks = index.documents(), index.chunk_count()
        finally:
            index.close()
        assert set(indexed) == {doc_id for doc_id, _w, _k in self.live.values()}
        for doc_id, _word, _kind in self.live.values():
            assert json.loads(indexed[doc_id][0])["path"] in PATHS
        assert chunks == sum(count for _meta, count in indexed.values())

    @invariant()
    def search_shows_live_documents_and_never_dead_ones(self) -> None:
        try:
            searcher = LocalStore(self.tmp / "store").searcher("s", None)
        except RemoteUnavailableError:
            assert self.crashed  # only a crash can take the index away
            return
        try:
            for word in self.dead[-3:]:
                assert searcher.search(SearchQuery(word)).citations == ()
            if self.crashed:
                return
            for path, (_doc, word, kind) in sorted(self.live.items())[:3]:
                cited = [c.path for c in searcher.search(SearchQuery(word)).citations]
                assert cited == ([] if kind == DOCX else [path])
        except RemoteUnavailableError:
            assert self.crashed  # a garbage index is only read before the restart rebuilds it
        finally:
            searcher.close()


IndexMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
test_the_index_stays_exact_across_operations_and_crashes = IndexMachine.TestCase


# -- a real crash: SIGKILL while uploading and deleting -------------------------------------

WRITER = textwrap.dedent("""
    import sys, hashlib
    from pathlib import Path
    from objlibd.remote.local import LocalStore
    from objlibd.remote.base import UploadRequest
    root = Path(sys.argv[1]); start = int(sys.argv[2])
    store = LocalStore(root / "store"); store.ensure_store("s")
    docs = [d.doc_id for d in store.list_docs()]
    for n in range(start, start + 100000):
        data = f"killword{n:06d} and some shared text".encode() * 20
        f = root / "src.txt"; f.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        docs.append(store.upload(UploadRequest(f, f"d/{n}.txt", sha, len(data), "text/plain",
                                               (("path", f"d/{n}.txt"), ("sha256", sha)))).doc_id)
        if n % 3 == 0:
            store.delete(docs.pop(0))
        print(n, flush=True)
""")


def test_sigkill_while_writing_then_a_restart_leaves_the_index_exact(tmp_path: Path) -> None:
    start = 0
    for round_number in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(start)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        for _ in range(5 + 7 * round_number):  # a different point in the loop each round
            start = int(child.stdout.readline()) + 1
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        start += 1

    store = LocalStore(tmp_path / "store")
    store.ensure_store("s")
    docs = {doc.doc_id for doc in store.list_docs()}
    folder = next((tmp_path / "store").glob("s-*"))
    index = FullTextIndex.open_readonly(folder / INDEX_NAME)
    assert index is not None
    indexed, chunks = index.documents(), index.chunk_count()
    index.close()
    store.close()

    assert set(indexed) == docs
    assert chunks == sum(count for _meta, count in indexed.values())
