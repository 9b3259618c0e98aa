"""Reconcile of an unchanged 50,000-file library vs a bare scandir+stat walk of the same tree.

Target (issue #2): reconcile <= 1.5x the bare walk; peak RSS of `objlibd sync` < 150 MB.
A quiet library's reconcile compares the walk with the walk cache (valid while no file row
changed) instead of reading the per-file index; the first reconcile after any change reads
the index ("cold"), and is reported too.
Run: .venv/bin/python bench/engine_reconcile.py [--files N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from common import (
    MetadataOnlyStore,
    bare_walk,
    best_of_pairs,
    make_library,
    peak_rss_mb_children,
    quiet_logs,
)
from engine_fixtures import make_config, write_config_file
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.state.store import StateStore

RUNS = 7


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="objlibd-bench-") as tmp:
        base = Path(tmp)
        root = base / "library"
        make_library(root, args.files)
        cfg = make_config(root, base / "state")
        config_path = write_config_file(cfg, base / "objlibd.toml")
        state = StateStore.open(cfg.db_path)
        engine = SyncEngine(cfg, state, MetadataOnlyStore(cfg.state.dir / "local-store"))
        seeded = engine.run(SyncOptions())
        assert seeded.uploaded == args.files, seeded.to_dict()
        os.sync()  # let writeback of the fresh tree finish before anything is timed

        def reconcile() -> None:
            summary = engine.run(SyncOptions())
            assert summary.unchanged == args.files and summary.hashed == 0, summary.to_dict()

        def cold_reconcile() -> None:
            state.walk.forget_walk()
            reconcile()

        walk_s, quiet_s = best_of_pairs(RUNS, lambda: bare_walk(str(root)), reconcile)
        cold_walk_s, cold_s = best_of_pairs(RUNS, lambda: bare_walk(str(root)), cold_reconcile)
        state.close()

        cli = [sys.executable, "-m", "objlibd", "sync", "--config", str(config_path), "--json"]
        subprocess.run(cli, check=True, capture_output=True)
        rss = peak_rss_mb_children()

    print(f"engine_reconcile: {args.files} unchanged files (best of {RUNS}, run alternately)")
    print(f"  bare scandir+stat walk   {walk_s * 1000:8.1f} ms  (baseline)")
    print(f"  objlibd reconcile        {quiet_s * 1000:8.1f} ms  (in-process)")
    print(f"  ratio                    {quiet_s / walk_s:8.2f} x  (target <= 1.5)")
    print(
        f"  cold reconcile           {cold_s * 1000:8.1f} ms  = {cold_s / cold_walk_s:.2f} x "
        "(first after a change: reads the per-file index)"
    )
    print(f"  peak RSS `objlibd sync`  {rss:8.1f} MB  (target < 150)")


if __name__ == "__main__":
    main()
