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
from objlibd.remote.ftsquery import fold, match_expression
from objlibd.remote.metadatafilter import parse_filter, to_sql
from objlibd.remote.search import Passage, SearchQuery

# The local store catches index faults by these names: sqlite3 is imported only here.
IndexFault = sqlite3.Error
IndexDamaged = sqlite3.DatabaseError

log = structlog.get_logger("objlibd.remote.local")

INDEX_NAME = "index.sqlite"
PRIVATE_FILE = 0o600
SCHEMA_VERSION = 1
SNIPPET_TOKENS = 40
RECONCILE_BATCH = 256  # documents per transaction when the index catches up
COMMON_SHARE = 0.05  # a word in more than this share of the passages is "common" for ranking
COMMON_MIN_PASSAGES = 2000  # below this, every question is ranked over the whole index
_SCHEMA = """
CREATE TABLE docs(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, title TEXT NOT NULL,
  metadata TEXT NOT NULL, json_size INTEGER NOT NULL, json_mtime_ns INTEGER NOT NULL,
  reason TEXT NOT NULL, first_chunk INTEGER, last_chunk INTEGER);
CREATE TABLE meta(doc INTEGER NOT NULL, key TEXT NOT NULL, sval TEXT, nval REAL);
CREATE INDEX meta_key ON meta(key, sval, nval);
CREATE INDEX meta_doc ON meta(doc);
CREATE INDEX docs_unindexed ON docs(reason) WHERE reason != '';
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks USING fts5(
  body, doc UNINDEXED, page UNINDEXED, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE chunk_terms USING fts5vocab(chunks, 'row');
"""

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

    def release_memory(self) -> None:
        """Drop this connection's page cache between batches (as `Database.release_memory`)."""
        with self._lock:
            self._conn.execute("PRAGMA shrink_memory")

    # -- upkeep ---------------------------------------------------------------------------

    def add(self, entry: Entry, read: Callable[[], bytes]) -> None:
        """Index (or re-index) one document, reading its bytes only if it has text: one transaction."""
        extracted = self._extract(entry, read)
        with self._transaction() as conn:
            _insert(conn, entry, extracted)

    def _extract(self, entry: Entry, read: Callable[[], bytes]) -> Extracted:
        if not extractable(entry.mime_type):
            return extract(b"", entry.mime_type, pdf=self._pdf)
        try:
            return extract(read(), entry.mime_type, pdf=self._pdf)
        except OSError as err:
            return Extracted((), f"its stored bytes are unreadable: {err.strerror or err}")

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
        if len(wanted) > RECONCILE_BATCH:
            log.info("local.index.building", documents=len(wanted))
        indexed = 0
        for start in range(0, len(wanted), RECONCILE_BATCH):
            batch = []
            for name in wanted[start : start + RECONCILE_BATCH]:
                loaded = load(name)
                if loaded is not None:
                    entry = Entry(name, loaded[0], loaded[1], on_disk[name])
                    batch.append((entry, self._extract(entry, loaded[2])))
            with self._transaction() as conn:  # a batch per transaction: commits are the cost
                for entry, extracted in batch:
                    _insert(conn, entry, extracted)
            indexed += len(batch)
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('capability', ?)", (able,))
        gone = sum(1 for name in dropped if name not in on_disk)
        if indexed or gone:
            log.info("local.index.reconciled", indexed=indexed, dropped=gone)
        return indexed, gone

    # -- reading ----------------------------------------------------------------------------

    def search(self, query: SearchQuery, alive: Callable[[str], bool]) -> list[Hit]:
        """Return the best `top_k` passages for the question, best first (alive documents only).

        Ranking reads rowids and scores only; snippets (which re-read the text) are made for
        the passages shown.
        """
        condition, params = "1", list[object]()
        if query.where is not None:
            condition, params = to_sql(parse_filter(query.where), "doc")
        match = match_expression(query.question, self._common)
        ranked = self._read(
            f"SELECT rowid, doc, bm25(chunks) FROM chunks WHERE chunks MATCH ? AND {condition} "
            "ORDER BY bm25(chunks) LIMIT ?",
            (match, *params, query.top_k * 2 + 8),
        )
        docs = self._docs({int(doc) for _rowid, doc, _rank in ranked})
        chosen = [
            (int(rowid), docs[int(doc)], float(rank))
            for rowid, doc, rank in ranked
            if int(doc) in docs and alive(docs[int(doc)][0])
        ][: query.top_k]
        if not chosen:
            return []
        marks = ",".join("?" * len(chosen))
        shown = {
            int(rowid): (page, snippet)
            for rowid, page, snippet in self._read(
                f"SELECT rowid, page, snippet(chunks, 0, '', '', '…', {SNIPPET_TOKENS}) "
                f"FROM chunks WHERE chunks MATCH ? AND rowid IN ({marks})",
                (match, *(rowid for rowid, _doc, _rank in chosen)),
            )
        }
        hits: list[Hit] = []
        for rowid, (_name, doc_id, title, metadata), rank in chosen:
            page, snippet = shown[rowid]
            passage = Passage(str(snippet), int(page) if page else None, float(f"{-rank:.4g}"))
            hits.append((title, doc_id, json.loads(metadata), passage))
        return hits

    def _common(self, words: list[str]) -> set[str]:
        """Return the words found in more than COMMON_SHARE of the passages."""
        try:
            (size,) = self._read("SELECT COALESCE(MAX(rowid), 0) FROM chunks")[0]
            if size < COMMON_MIN_PASSAGES:
                return set()
            found = set()
            for word in words:
                rows = self._read("SELECT doc FROM chunk_terms WHERE term = ?", (fold(word),))
                if rows and int(rows[0][0]) > COMMON_SHARE * int(size):
                    found.add(word)
        except sqlite3.OperationalError:  # an index from before the vocabulary table
            return set()
        return found

    def _docs(self, ids: set[int]) -> dict[int, tuple[str, str, str, str]]:
        """Return {row id: (name, doc id, title, metadata JSON)} for `ids`."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._read(
            f"SELECT id, name, doc_id, title, metadata FROM docs WHERE id IN ({marks})",
            tuple(ids),
        )
        return {int(row[0]): (str(row[1]), str(row[2]), str(row[3]), str(row[4])) for row in rows}

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


def _insert(conn: sqlite3.Connection, entry: Entry, extracted: Extracted) -> None:
    """Write one document's row, metadata and passages (inside the caller's transaction)."""
    pieces = [(page, text) for page, whole in extracted.pages for text in passages(whole)]
    metadata = dict(entry.doc.metadata)
    reason = extracted.reason if extracted.reason or pieces else "no text in it"
    _drop(conn, entry.name)
    (doc,) = conn.execute(
        "INSERT INTO docs(name, doc_id, title, metadata, json_size, json_mtime_ns, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (entry.name, entry.doc.doc_id, entry.doc.display_name, json.dumps(metadata),
         *entry.stat, reason),
    ).fetchone()  # fmt: skip
    conn.executemany(
        "INSERT INTO meta(doc, key, sval, nval) VALUES (?, ?, ?, ?)",
        [(doc, key, value if isinstance(value, str) else None,
          None if isinstance(value, str) else float(value))
         for key, value in metadata.items()],
    )  # fmt: skip
    if not pieces:
        return
    first = int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM chunks").fetchone()[0]) + 1
    conn.executemany(
        "INSERT INTO chunks(rowid, body, doc, page) VALUES (?, ?, ?, ?)",
        [(first + i, text, doc, page) for i, (page, text) in enumerate(pieces)],
    )
    conn.execute(
        "UPDATE docs SET first_chunk = ?, last_chunk = ? WHERE id = ?",
        (first, first + len(pieces) - 1, doc),
    )


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
        path.chmod(PRIVATE_FILE)  # the library's text: its owner's only, like the blobs
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
