"""Gemini backend: a first sync of 500 files through the engine, 100 ms added to every call.

Targets: throughput >= 0.8x the bound that concurrency and latency allow (issue #3); at most
5 requests per uploaded file and at most 2 full listings of the store per run, fault-free
(issue #10).

The bound: each upload is a chain of sequential calls (Files API start, the one chunk of a
small file, importFile, operations.get until done, delete of the temporary file: 5 calls
when the first poll finds the operation done), plus one poll interval of sleep. With C
uploads in flight and L seconds per call, at most C / (calls_per_file * L + poll_interval)
files finish per second. The request pace starts at tier3 (2000 requests/minute, 2 paced
calls per file: the upload start and the import), i.e. up to ~16.7 files/s, and the fake has
no quota here, so it is not the bound at C = 4, L = 0.1 s (8 files/s); `gemini_pace`
measures the pace against a true quota. calls_per_file is measured from the fake's
request counts, not assumed; it includes the run's own calls (finding the store, the one
listing a first sync makes to adopt what the store already holds), spread over the files.

Run: .venv/bin/python bench/gemini_throughput.py [--files 500] [--latency 0.1] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from common import quiet_logs
from fakes.gemini_server import FakeGemini, Faults
from objlibd import config as config_module
from objlibd.cli.demo import mount_point_of
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.remote.gemini import GeminiStore
from objlibd.remote.ratelimit import TIER_RPM
from objlibd.state.store import StateStore

POLL_INTERVAL = 0.01
GATED_CALLS_PER_FILE = 2


def make_library(root: Path, count: int) -> None:
    """Write `count` small text files."""
    for index in range(count):
        path = root / f"Part {index // 100:02d}/Lecture {index:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"lecture {index}\n".encode() * 20)


RUN_ROUTES = ("stores.list", "stores.create", "documents.list")  # once per run, not per file


def run(files: int, latency: float, concurrency: int) -> tuple[float, int, int, int, int]:
    """Sync `files` new files; return (seconds, requests, of them the run's own, listings,
    documents in the store)."""
    with (
        tempfile.TemporaryDirectory(prefix="objlibd-bench-") as tmp,
        FakeGemini(faults=Faults(latency_seconds=latency)) as fake,
    ):
        root = Path(tmp) / "library"
        make_library(root, files)
        config = config_module.from_mapping(
            {
                "library": {"mount_point": str(mount_point_of(root)), "root": str(root)},
                "store": {"backend": "gemini", "name": "bench"},
                "state": {"dir": f"{tmp}/state"},
                "logs": {"dir": f"{tmp}/logs"},
                "gemini": {
                    "base_url": fake.base_url, "max_concurrent_uploads": concurrency,
                    "rate_limit_tier": "tier3", "poll_interval_seconds": POLL_INTERVAL,
                    "timeout_seconds": 30.0,
                },
            },
            source=Path(tmp) / "objlibd.toml",
        )  # fmt: skip
        state = StateStore.open(config.db_path)
        store = GeminiStore(config.gemini, "test-key", stop=threading.Event())
        engine = SyncEngine(config, state, store)
        start = time.perf_counter()
        summary = engine.run(SyncOptions())
        seconds = time.perf_counter() - start
        assert summary.uploaded == files and summary.exit_code == 0, summary.to_dict()
        requests = sum(fake.counts.values())
        own = sum(fake.counts[route] for route in RUN_ROUTES)
        store.close()
        state.close()
        return seconds, requests, own, fake.listings, len(fake.documents())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    quiet_logs()
    seconds, requests, own, listings, docs = run(args.files, args.latency, args.concurrency)
    assert docs == args.files, f"{docs} documents for {args.files} files"
    calls_per_file = requests / args.files
    per_upload = (requests - own) / args.files
    rate = args.files / seconds
    per_file = calls_per_file * args.latency + POLL_INTERVAL
    bound = args.concurrency / per_file
    limiter_bound = TIER_RPM["tier3"] / 60 / GATED_CALLS_PER_FILE
    print(f"gemini_throughput: first sync of {args.files} small files through the engine, "
          f"{args.latency * 1000:.0f} ms per call, max_concurrent_uploads = {args.concurrency}, "
          "tier3")  # fmt: skip
    print(f"  requests per file   {per_upload:8.3f}  (target <= 5: start, chunk, import, poll, "
          "delete)")  # fmt: skip
    print(f"  + the run's own     {own:8d}  (find the store, one listing; {calls_per_file:.3f} "
          f"per file with them, {requests} in all)")  # fmt: skip
    print(f"  listings per run    {listings:8d}  (target <= 2)")
    print(f"  bound               {bound:8.2f} files/s  "
          f"= {args.concurrency} / ({calls_per_file:.2f} x {args.latency:g} s + {POLL_INTERVAL:g} s)")  # fmt: skip
    print(f"  pace's start bound  {limiter_bound:8.2f} files/s  (not the bound)")
    print(f"  measured            {rate:8.2f} files/s  ({seconds:.1f} s)")
    ratio = rate / min(bound, limiter_bound)
    print(f"  ratio               {ratio:8.2f} x bound (target >= 0.8)")
    ok = ratio >= 0.8 and per_upload <= 5 and listings <= 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
