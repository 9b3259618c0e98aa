"""Gemini backend: renaming a 250-file folder vs uploading 250 new files (issue #13).

A 1,000-file library is synced into the fake Gemini (no latency), then every call gets
`--latency` (100 ms) and the two runs alternate: the baseline adds a folder of 250 new
files and syncs; the measured run renames a 250-file folder and syncs (250 moves: 250
uploads plus 250 deletes of the old documents). Target: the rename's wall <= 1.1x the
baseline's (best of `--pairs`, run alternately so both see the same machine load).

Run: .venv/bin/python bench/gemini_moves.py [--files 250] [--latency 0.1] [--pairs 2]
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
from objlibd.engine.summary import SyncSummary
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.remote.gemini import GeminiStore
from objlibd.state.store import StateStore

FOLDERS = 4


def write_folder(folder: Path, count: int, tag: str) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"Lecture {index:04d}.txt").write_bytes(f"{tag} {index}\n".encode() * 20)


def timed(engine: SyncEngine) -> tuple[float, SyncSummary]:
    start = time.perf_counter()
    summary = engine.run(SyncOptions())
    return time.perf_counter() - start, summary


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=250)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    quiet_logs()
    with (
        tempfile.TemporaryDirectory(prefix="objlibd-bench-") as tmp,
        FakeGemini(faults=Faults()) as fake,
    ):
        root = Path(tmp) / "library"
        for part in range(FOLDERS):
            write_folder(root / f"Part {part}", args.files, f"part {part}")
        config = config_module.from_mapping(
            {
                "library": {"mount_point": str(mount_point_of(root)), "root": str(root)},
                "store": {"backend": "gemini", "name": "bench"},
                "state": {"dir": f"{tmp}/state"},
                "logs": {"dir": f"{tmp}/logs"},
                "sync": {"mass_missing_files": 100_000, "mass_missing_percent": 100.0},
                "gemini": {
                    "base_url": fake.base_url, "rate_limit_tier": "tier3",
                    "poll_interval_seconds": 0.01, "timeout_seconds": 30.0,
                },
            },
            source=Path(tmp) / "objlibd.toml",
        )  # fmt: skip
        state = StateStore.open(config.db_path)
        store = GeminiStore(config.gemini, "test-key", stop=threading.Event())
        engine = SyncEngine(config, state, store)
        seeded, _ = timed(engine)
        fake.faults.latency_seconds = args.latency
        new_s, moved_s = [], []
        for run in range(args.pairs):
            write_folder(root / f"New {run}", args.files, f"new {run}")
            seconds, summary = timed(engine)
            assert summary.uploaded == args.files and summary.exit_code == 0, summary.to_dict()
            new_s.append(seconds)
            before = dict(fake.counts)
            old = f"Part {run % FOLDERS}"
            (root / old).rename(root / f"{old} renamed {run}")
            seconds, summary = timed(engine)
            assert (summary.moved, summary.uploaded, summary.missing) == (args.files, 0, 0), (
                summary.to_dict()
            )
            moved_s.append(seconds)
            imports = fake.counts["stores.importFile"] - before.get("stores.importFile", 0)
            deletes = fake.counts["documents.delete"] - before.get("documents.delete", 0)
        on_disk = sum(1 for p in root.rglob("*.txt"))
        docs = len(fake.documents())
        store.close()
        state.close()
    ratio = min(moved_s) / min(new_s)
    print(f"gemini_moves: {args.files}-file folder renamed vs {args.files} new files, "
          f"{args.latency * 1000:.0f} ms per call, concurrency 4, best of {args.pairs} "
          f"(seed sync of {FOLDERS * args.files} files {seeded:.1f} s)")  # fmt: skip
    print(f"  {args.files} new files   {min(new_s):7.2f} s  (runs: "
          f"{', '.join(f'{s:.2f}' for s in new_s)})")  # fmt: skip
    print(f"  rename ({args.files} moves) {min(moved_s):7.2f} s  (runs: "
          f"{', '.join(f'{s:.2f}' for s in moved_s)}); last: {imports} imports, "
          f"{deletes} document deletes")  # fmt: skip
    print(f"  ratio            {ratio:7.2f} x  (target <= 1.1)")
    print(f"  store            {docs} documents for {on_disk} files on disk")
    return 0 if ratio <= 1.1 and docs == on_disk else 1


if __name__ == "__main__":
    sys.exit(main())
