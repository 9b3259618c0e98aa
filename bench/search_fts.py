"""The local store's full-text index at 50,000 documents: build time and query latency.

Issue #15 asks for the index build time and the query p50 at 50k documents. Each is measured
against a same-run baseline: a bare FTS5 table (same tokenizer) filled with the same passages
in one transaction, and queried with the same MATCH / bm25 / LIMIT, without objlibd's
documents table, metadata, snippets or the check that a hit's document still exists.

* build: `FullTextIndex.open` + `reconcile` over a store of N documents with no index yet
  (what the first bind after an upgrade, or after a lost index, does); then the same
  reconcile with nothing to do (what every daemon start and `objlibd sync` pays).
* upload: the local store's upload with and without its index (1,000 documents), per file.
* query: `objlibd search`'s local searcher (FTS5 MATCH, bm25 ORDER BY, snippet, metadata,
  the alive check) on 300 questions of 2-3 words drawn like words in text; p50 and p95.

Run: .venv/bin/python bench/search_fts.py [--docs 50000] [--queries 300]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import quiet_logs
from objlibd.remote.base import UploadRequest
from objlibd.remote.extraction import passages
from objlibd.remote.ftsquery import match_expression
from objlibd.remote.fulltext import INDEX_NAME
from objlibd.remote.local import LocalStore
from objlibd.remote.search import SearchQuery

VOCABULARY = 30_000
SYLLABLES = ["ka", "lo", "mi", "ne", "ra", "su", "ti", "vo", "ze", "qua", "bri", "sto", "pel"]


def vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """Return made-up words and Zipf weights (a few very common, most rare)."""
    words = sorted(
        {"".join(rng.choices(SYLLABLES, k=rng.randint(2, 5))) for _ in range(VOCABULARY * 2)}
    )
    words = words[:VOCABULARY]
    rng.shuffle(words)
    return words, [1.0 / (rank + 1) for rank in range(len(words))]


def document(rng: random.Random, words: list[str], weights: list[float]) -> str:
    paragraphs = []
    for _ in range(rng.randint(1, 4)):
        paragraphs.append(" ".join(rng.choices(words, weights, k=rng.randint(40, 200))) + ".")
    return "\n\n".join(paragraphs)


def write_store(root: Path, texts: list[str]) -> Path:
    """Lay out a local store of `texts` the way LocalStore writes it (no index yet)."""
    store = LocalStore(root)
    store.ensure_store("bench")
    store.close()
    folder = next(root.glob("bench-*"))
    (folder / INDEX_NAME).unlink()
    for suffix in ("-wal", "-shm"):
        (folder / f"{INDEX_NAME}{suffix}").unlink(missing_ok=True)
    for number, text in enumerate(texts):
        name = f"doc-{number:06d}"
        data = text.encode()
        (folder / "blobs" / f"{name}.bin").write_bytes(data)
        rel = f"Collection {number % 20:02d}/Lecture {number:06d}.txt"
        doc = {
            "name": f"localStores/{folder.name}/documents/{name}",
            "displayName": rel,
            "customMetadata": {"path": rel, "sha256": hashlib.sha256(data).hexdigest(),
                               "collection": f"Collection {number % 20:02d}"},
            "sizeBytes": len(data),
            "mimeType": "text/plain",
        }  # fmt: skip
        (folder / "docs" / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def build_bare(path: Path, texts: list[str]) -> float:
    """The floor: the same passages into a bare FTS5 table, one transaction."""
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')"
    )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO t(body) VALUES (?)", ((p,) for text in texts for p in passages(text))
    )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start


def build_ours(folder: Path) -> float:
    """Bind the store the way the engine does: the index is opened and reconciled."""
    store = LocalStore(folder.parent)
    start = time.perf_counter()
    store.ensure_store("bench")
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def questions(rng: random.Random, words: list[str], weights: list[float], count: int) -> list[str]:
    return [" ".join(rng.choices(words, weights, k=rng.randint(2, 3))) for _ in range(count)]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def query_ours(folder: Path, asks: list[str]) -> list[float]:
    searcher = LocalStore(folder.parent).searcher("bench", None)
    timings = []
    for question in asks:
        start = time.perf_counter()
        searcher.search(SearchQuery(question, top_k=8))
        timings.append(time.perf_counter() - start)
    searcher.close()
    return timings


def query_bare(path: Path, asks: list[str]) -> list[float]:
    conn = sqlite3.connect(path)
    timings = []
    for question in asks:
        start = time.perf_counter()
        conn.execute(
            "SELECT rowid, bm25(t) FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 8",
            (match_expression(question),),
        ).fetchall()
        timings.append(time.perf_counter() - start)
    conn.close()
    return timings


def upload_cost(tmp: Path, texts: list[str]) -> tuple[float, float]:
    """Per-file upload time of the local store with its index, and with the index closed."""
    files = []
    for number, text in enumerate(texts):
        path = tmp / f"src-{number}.txt"
        data = text.encode()
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        files.append(UploadRequest(path, f"u/{number}.txt", sha, len(data), "text/plain",
                                   (("path", f"u/{number}.txt"), ("sha256", sha))))  # fmt: skip
    timings = []
    for indexed in (False, True, False, True):
        store = LocalStore(tmp / f"upload-{indexed}-{len(timings)}")
        store.ensure_store("u")
        if not indexed:
            store.close()  # the index is closed: upload skips it, the rest is the same
        start = time.perf_counter()
        for request in files:
            store.upload(request)
        timings.append((time.perf_counter() - start) / len(files))
        store.close()
    return min(timings[1], timings[3]), min(timings[0], timings[2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    quiet_logs()
    rng = random.Random(15)
    words, weights = vocabulary(rng)
    texts = [document(rng, words, weights) for _ in range(args.docs)]
    megabytes = sum(len(t) for t in texts) / 1e6
    chunks = sum(1 for t in texts for _ in passages(t))
    with tempfile.TemporaryDirectory(prefix="objlibd-bench-fts-") as tmp_dir:
        tmp = Path(tmp_dir)
        folder = write_store(tmp / "store", texts)
        bare = build_bare(tmp / "bare.sqlite", texts)
        ours = build_ours(folder)
        noop = min(build_ours(folder) for _ in range(3))
        size = sum(p.stat().st_size for p in folder.glob(f"{INDEX_NAME}*")) / 1e6
        asks = questions(rng, words, weights, args.queries)
        query_ours(folder, asks[:20])  # warm the page cache for both
        query_bare(tmp / "bare.sqlite", asks[:20])
        ours_q = percentiles(query_ours(folder, asks))
        bare_q = percentiles(query_bare(tmp / "bare.sqlite", asks))
        with_index, without = upload_cost(tmp, texts[:1000])
    print(f"search_fts: {args.docs} documents, {megabytes:.0f} MB of text, {chunks} passages")
    print(f"  build (reconcile from nothing)  {ours:7.1f} s   bare FTS5 {bare:6.1f} s   "
          f"ratio {ours / bare:5.2f} x   ({args.docs / ours:,.0f} docs/s)")  # fmt: skip
    print(f"  reconcile, nothing to do        {noop * 1000:7.0f} ms")
    print(f"  index on disk                   {size:7.0f} MB ({size / megabytes:.2f} x the text)")
    print(f"  query p50 / p95                 {ours_q[0] * 1000:7.2f} / {ours_q[1] * 1000:.2f} ms   "
          f"bare {bare_q[0] * 1000:.2f} / {bare_q[1] * 1000:.2f} ms   "
          f"p50 ratio {ours_q[0] / bare_q[0]:5.2f} x")  # fmt: skip
    print(f"  local upload per file           {with_index * 1000:7.2f} ms with the index, "
          f"{without * 1000:.2f} ms without ({with_index / without:.2f} x)")  # fmt: skip


if __name__ == "__main__":
    main()
