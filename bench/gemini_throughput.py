"""Gemini backend upload throughput against the local fake with 100 ms added to every call.

Target (issue #3): >= 0.8x the bound that concurrency and latency allow.

The bound: each upload is a chain of sequential calls (Files API start, the one chunk of a
small file, importFile, operations.get until done, delete of the temporary file: 5 calls
when the first poll finds the operation done), plus one poll interval of sleep. With C
uploads in flight and L seconds per call, at most C / (calls_per_file * L + poll_interval)
files finish per second. The rate limiter runs at tier3 (2000 requests/minute, 2 gated
calls per file: the upload start and the import), i.e. up to ~16.7 files/s, so it is not
the bound at C = 4, L = 0.1 s (8 files/s). calls_per_file is measured from the fake's
request counts, not assumed.

Run: .venv/bin/python bench/gemini_throughput.py [--files 500] [--latency 0.1] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

from fakes.gemini_server import FakeGemini, Faults
from objlibd.config import GeminiSettings
from objlibd.remote.base import UploadRequest
from objlibd.remote.gemini import GeminiStore
from objlibd.remote.ratelimit import TIER_RPM

POLL_INTERVAL = 0.01
GATED_CALLS_PER_FILE = 2


def make_requests(root: Path, count: int) -> list[UploadRequest]:
    """Write `count` small text files; return their upload requests."""
    requests = []
    for index in range(count):
        rel = f"Part {index // 100:02d}/Lecture {index:04d}.txt"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = f"lecture {index}\n".encode() * 20
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        metadata = (("path", rel), ("sha256", sha), ("collection", rel.split("/", maxsplit=1)[0]))
        requests.append(UploadRequest(path, rel, sha, len(data), "text/plain", metadata))
    return requests


def run(files: int, latency: float, concurrency: int) -> tuple[float, float, int]:
    """Upload `files` files; return (seconds, calls per file, documents in the store)."""
    with (
        tempfile.TemporaryDirectory(prefix="objlibd-bench-") as tmp,
        FakeGemini(faults=Faults(latency_seconds=latency)) as fake,
    ):
        requests = make_requests(Path(tmp), files)
        settings = GeminiSettings(
            base_url=fake.base_url, max_concurrent_uploads=concurrency,
            rate_limit_tier="tier3", poll_interval_seconds=POLL_INTERVAL, timeout_seconds=30,
        )  # fmt: skip
        store = GeminiStore(settings, "test-key")
        store.ensure_store("bench")
        before = sum(fake.counts.values())
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=store.concurrency) as pool:
            list(pool.map(store.upload, requests))
        seconds = time.perf_counter() - start
        calls = sum(fake.counts.values()) - before
        store.close()
        return seconds, calls / files, len(fake.documents())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    seconds, calls_per_file, docs = run(args.files, args.latency, args.concurrency)
    assert docs == args.files, f"{docs} documents for {args.files} files"
    rate = args.files / seconds
    per_file = calls_per_file * args.latency + POLL_INTERVAL
    bound = args.concurrency / per_file
    limiter_bound = TIER_RPM["tier3"] / 60 / GATED_CALLS_PER_FILE
    print(f"gemini_throughput: {args.files} small files, {args.latency * 1000:.0f} ms per call, "
          f"max_concurrent_uploads = {args.concurrency}, tier3")  # fmt: skip
    print(f"  calls per file      {calls_per_file:8.2f}  (start, chunk, import, poll, delete)")
    print(f"  bound               {bound:8.2f} files/s  "
          f"= {args.concurrency} / ({calls_per_file:.2f} x {args.latency:g} s + {POLL_INTERVAL:g} s)")  # fmt: skip
    print(f"  limiter bound       {limiter_bound:8.2f} files/s  (not the bound)")
    print(f"  measured            {rate:8.2f} files/s  ({seconds:.1f} s)")
    ratio = rate / min(bound, limiter_bound)
    print(f"  ratio               {ratio:8.2f} x bound (target >= 0.8)")
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
