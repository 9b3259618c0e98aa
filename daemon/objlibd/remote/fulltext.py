"""The local store's full-text index: SQLite FTS5 (bm25 ranking, snippets) beside its documents.

One file per store, `<store folder>/index.sqlite`: the store's own index, not the state DB.
The local store keeps it in step: a document is indexed right after its document file is
written, and dropped right after that file is deleted, each change one transaction. A crash
between the two leaves the index behind by the one document in flight, so whenever the store
is bound for writing `reconcile` compares the document files (name, size, mtime) with what
the index recorded and indexes or drops the difference; a hit whose document file is gone or
torn is also dropped at query time. An index that is damaged or of another schema version is
rebuilt from the documents.

Passages (about 1,200 characters, pages kept for PDFs) are the FTS5 rows; a document owns
the contiguous rowid range [first_chunk, last_chunk], so dropping it is a range delete.
Metadata entries live in `meta(doc, key, sval, nval)` for `--where` (`metadatafilter.to_sql`).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from objlibd.remote.base import MetadataValue, RemoteDoc
from objlibd.remote.extraction import (
    Extracted,
    PdfSource,
    capability,
    extract,
    extractable,
    passages,
    pypdf_pages,
)
from objlibd.remote.metadatafilter import parse_filter, to_sql
from objlibd.remote.search import Passage, SearchQuery, SearchResult, group_citations

log = structlog.get_logger("objlibd.remote.local")

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = 1
SNIPPET_TOKENS = 40
_SCHEMA = """
CREATE TABLE docs(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, title TEXT NOT NULL,
  metadata TEXT NOT NULL, json_size INTEGER NOT NULL, json_mtime_ns INTEGER NOT NULL,
  reason TEXT NOT NULL, first_chunk INTEGER, last_chunk INTEGER);
CREATE TABLE meta(doc INTEGER NOT NULL, key TEXT NOT NULL, sval TEXT, nval REAL);
CREATE INDEX meta_key ON meta(key, sval, nval);
CREATE INDEX meta_doc ON meta(doc);
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks USING fts5(
  body, doc UNINDEXED, page UNINDEXED, tokenize = 'unicode61 remove_diacritics 2');
"""
_STOPWORD_TEXT = (
    "a about an and are as at be but by can could did do does for from had has have how i if "
    "in into is it its me my no not of on or our so than that the their them then there these they "
    "this to was we were what when where which who whom why will with would you your"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_PHRASE = re.compile(r'"([^"]*)"')
_WORD = re.compile(r"\w+")

# (title, doc id, metadata, passage): one ranked hit, before grouping into citations.
Hit = tuple[str, str, dict[str, MetadataValue], Passage]
# A document to (re)index from its file name: the document, its MIME type, its bytes' reader.
Loaded = tuple[RemoteDoc, str, Callable[[], bytes]]


@dataclass(frozen=True, slots=True)
class Entry:
    """A document to index: its file name (no .json), the document, type, and file stat."""

    name: str
    doc: RemoteDoc
    mime_type: str
    stat: tuple[int, int]  # the document file's (size, mtime_ns) when it was indexed


class FullTextIndex:
    """The FTS5 index of one local store; thread-safe (one connection under a lock)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, pdf: PdfSource) -> None:
        self._conn = conn
        self.path = path
        self._pdf = pdf
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, pdf: PdfSource = pypdf_pages) -> FullTextIndex:
        """Open the index for writing, creating it, or rebuilding one that cannot be used."""
        try:
            conn = _connect_for_writing(path)
        except sqlite3.DatabaseError as err:
            log.warning("local.index.rebuilt", index=str(path), reason=str(err))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            conn = _connect_for_writing(path)
        return cls(conn, path, pdf)

    @classmethod
    def open_readonly(cls, path: Path) -> FullTextIndex | None:
        """Open an existing index for searching only; None when there is none (yet)."""
        if not path.exists():
            return None
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA busy_timeout = 5000")
        return cls(conn, path, pypdf_pages)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- upkeep ---------------------------------------------------------------------------

    def add(self, entry: Entry, read: Callable[[], bytes]) -> None:
        """Index (or re-index) one document, reading its bytes only if it has text: one transaction."""
        if not extractable(entry.mime_type):
            extracted = extract(b"", entry.mime_type, pdf=self._pdf)
        else:
            try:
                extracted = extract(read(), entry.mime_type, pdf=self._pdf)
            except OSError as err:
                extracted = Extracted((), f"its stored bytes are unreadable: {err.strerror or err}")
        pieces = [(page, text) for page, whole in extracted.pages for text in passages(whole)]
        metadata = dict(entry.doc.metadata)
        with self._transaction() as conn:
            _drop(conn, entry.name)
            (doc,) = conn.execute(
                "INSERT INTO docs(name, doc_id, title, metadata, json_size, json_mtime_ns, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (entry.name, entry.doc.doc_id, entry.doc.display_name, json.dumps(metadata),
                 *entry.stat, extracted.reason if extracted.reason or pieces else "no text in it"),
            ).fetchone()  # fmt: skip
            conn.executemany(
                "INSERT INTO meta(doc, key, sval, nval) VALUES (?, ?, ?, ?)",
                [(doc, key, value if isinstance(value, str) else None,
                  None if isinstance(value, str) else float(value))
                 for key, value in metadata.items()],
            )  # fmt: skip
            if pieces:
                first = (
                    int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM chunks").fetchone()[0])
                    + 1
                )
                conn.executemany(
                    "INSERT INTO chunks(rowid, body, doc, page) VALUES (?, ?, ?, ?)",
                    [(first + i, text, doc, page) for i, (page, text) in enumerate(pieces)],
                )
                conn.execute(
                    "UPDATE docs SET first_chunk = ?, last_chunk = ? WHERE id = ?",
                    (first, first + len(pieces) - 1, doc),
                )

    def remove(self, name: str) -> None:
        """Drop one document (by file name); one that is not indexed is fine."""
        with self._transaction() as conn:
            _drop(conn, name)

    def reconcile(self, docs_dir: Path, load: Callable[[str], Loaded | None]) -> tuple[int, int]:
        """Bring the index in step with the document files; return (indexed, dropped).

        A document file whose name or stat the index does not have is (re)indexed through
        `load` (None: torn or gone, so not a document); an indexed name without its file is
        dropped. Documents skipped for want of an extractor are tried again when this
        process can extract more (pypdf installed since).
        """
        on_disk = dict(_document_files(docs_dir))
        recorded = {
            str(name): (int(size), int(mtime), str(reason))
            for name, size, mtime, reason in self._read(
                "SELECT name, json_size, json_mtime_ns, reason FROM docs"
            )
        }
        able = capability(self._pdf)
        retry = self._setting("capability") != able
        dropped = [name for name, seen in recorded.items() if on_disk.get(name) != seen[:2]]
        for name in dropped:
            self.remove(name)
        wanted = [
            name
            for name, stat in on_disk.items()
            if name not in recorded
            or recorded[name][:2] != stat
            or (retry and recorded[name][2] != "")
        ]
        indexed = 0
        for name in wanted:
            loaded = load(name)
            if loaded is not None:
                doc, mime_type, read = loaded
                self.add(Entry(name, doc, mime_type, on_disk[name]), read)
                indexed += 1
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('capability', ?)", (able,))
        gone = sum(1 for name in dropped if name not in on_disk)
        if indexed or gone:
            log.info("local.index.reconciled", indexed=indexed, dropped=gone)
        return indexed, gone

    # -- reading ----------------------------------------------------------------------------

    def search(self, query: SearchQuery, alive: Callable[[str], bool]) -> list[Hit]:
        """Return the best `top_k` passages for the question, best first (alive documents only)."""
        condition, params = "1", list[object]()
        if query.where is not None:
            condition, params = to_sql(parse_filter(query.where), "d.id")
        rows = self._read(
            "SELECT d.name, d.doc_id, d.title, d.metadata, c.page, "
            f"snippet(chunks, 0, '', '', '…', {SNIPPET_TOKENS}), bm25(chunks) "
            "FROM chunks c JOIN docs d ON d.id = c.doc "
            f"WHERE chunks MATCH ? AND {condition} ORDER BY bm25(chunks) LIMIT ?",
            (match_expression(query.question), *params, query.top_k * 2 + 8),
        )
        hits: list[Hit] = []
        for name, doc_id, title, metadata, page, snippet, rank in rows:
            if len(hits) == query.top_k:
                break
            if alive(str(name)):
                passage = Passage(str(snippet), int(page) if page else None, round(-rank, 4))
                hits.append((str(title), str(doc_id), json.loads(metadata), passage))
        return hits

    def not_indexed(self) -> list[tuple[str, str]]:
        """Return (path or title, reason) of every document the index holds no text for."""
        rows = self._read("SELECT title, metadata, reason FROM docs WHERE reason != ''")
        found = [
            (str(json.loads(meta).get("path") or title), str(why)) for title, meta, why in rows
        ]
        return sorted(found)

    def documents(self) -> dict[str, tuple[str, int]]:
        """Return {doc id: (metadata JSON, passages)} of every indexed document (tests)."""
        rows = self._read(
            "SELECT doc_id, metadata, COALESCE(last_chunk - first_chunk + 1, 0) FROM docs"
        )
        return {str(doc_id): (str(meta), int(count)) for doc_id, meta, count in rows}

    def chunk_count(self) -> int:
        """Return how many passages the FTS table holds (tests: no passage without a doc)."""
        return int(self._read("SELECT COUNT(*) FROM chunks")[0][0])

    def _setting(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")


class LocalSearcher:
    """Searches a local store's index read-only; `read_doc` confirms a hit's document exists."""

    backend = "local"

    def __init__(self, index: FullTextIndex, read_doc: Callable[[str], RemoteDoc | None]) -> None:
        self._index = index
        self._read_doc = read_doc

    def search(self, query: SearchQuery) -> SearchResult:
        """Return the best passages grouped per document, and what the index cannot search."""
        try:
            hits = self._index.search(query, lambda name: self._read_doc(name) is not None)
            skipped = self._index.not_indexed()
        except sqlite3.DatabaseError as err:
            from objlibd.errors import RemoteUnavailableError

            raise RemoteUnavailableError(
                f"the local store's search index cannot be read: {err}",
                hint="run `objlibd sync` (or restart the daemon): it repairs or rebuilds it",
            ) from None
        citations = group_citations(
            [(title, doc, meta, passage) for title, doc, meta, passage in hits]
        )
        return SearchResult("local", None, citations, bool(citations), None, tuple(skipped))

    def close(self) -> None:
        """Close the index."""
        self._index.close()


def match_expression(question: str) -> str:
    """Return the FTS5 query for a question: quoted phrases kept, other words OR-ed.

    Common words are left out unless nothing else is left; every term is quoted, so FTS5
    operators in a question are plain words.
    """
    from objlibd.errors import QueryError

    phrases = [_words(phrase) for phrase in _PHRASE.findall(question)]
    words = _words(_PHRASE.sub(" ", question))
    kept = [word for word in words if word not in _STOPWORDS] or words
    terms = ['"' + " ".join(phrase) + '"' for phrase in phrases if phrase]
    terms += [f'"{word}"' for word in dict.fromkeys(kept)]
    if not terms:
        raise QueryError(f"nothing to search for in {question!r}: it has no words")
    return " OR ".join(terms)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _drop(conn: sqlite3.Connection, name: str) -> None:
    row = conn.execute("SELECT id, first_chunk, last_chunk FROM docs WHERE name = ?", (name,))
    found = row.fetchone()
    if found is None:
        return
    doc, first, last = found
    if first is not None:
        conn.execute("DELETE FROM chunks WHERE rowid BETWEEN ? AND ?", (first, last))
    conn.execute("DELETE FROM meta WHERE doc = ?", (doc,))
    conn.execute("DELETE FROM docs WHERE id = ?", (doc,))


def _document_files(docs_dir: Path) -> Iterator[tuple[str, tuple[int, int]]]:
    with os.scandir(docs_dir) as entries:
        for entry in entries:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                yield entry.name.removesuffix(".json"), (stat.st_size, stat.st_mtime_ns)


def _connect_for_writing(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            conn.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
        conn.execute("SELECT COUNT(*) FROM docs").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn
