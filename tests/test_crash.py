"""Crash-exact: `objlibd sync` killed with SIGKILL anywhere, then re-run, ends exact.

Exactly one document per file, the DB consistent with the store, 0 orphans after cleanup.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_fixtures import make_config, make_library, write_config_file
from objlibd.models import FileStatus
from objlibd.remote.local import LocalStore
from objlibd.state.store import StateStore

pytestmark = pytest.mark.e2e


def sync_process(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "objlibd", "sync", "--config", str(config), "--json", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def doc_count(folder: Path) -> int:
    try:
        return sum(1 for name in os.listdir(folder) if name.endswith(".json"))
    except FileNotFoundError:
        return 0


def kill_when(proc: subprocess.Popen[bytes], ready: object, deadline: float) -> bool:
    """SIGKILL `proc` once `ready()` is true; return False if it finished first."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():  # type: ignore[operator]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    proc.kill()
    proc.wait()
    return True


def assert_exact(cfg, paths: list[str]) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(cfg.state.dir / "local-store")
    store.ensure_store(cfg.store.name)
    docs = list(store.list_docs())
    state = StateStore.open(cfg.db_path, readonly=True)
    records = state.files.all_records()
    assert state.db.integrity_check() == "ok"
    state.close()

    assert sorted(d.path for d in docs) == sorted(paths), "exactly one document per file"
    by_id = {d.doc_id: d for d in docs}
    for path in paths:
        record = records[path]
        assert record.status is FileStatus.UPLOADED, (path, record.status)
        assert record.remote_id in by_id
        assert by_id[record.remote_id].sha256 == record.content_hash
        assert record.orphaned_remote_id is None
        assert store.read_bytes(record.remote_id) == (cfg.library.root / path).read_bytes()


def test_sigkill_at_random_points_then_rerun_is_exact(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    root = tmp_path / "library"
    root.mkdir()
    paths = make_library(root, 300)
    cfg = make_config(root, tmp_path / "state")
    config = write_config_file(cfg, tmp_path / "objlibd.toml")
    mid_run = 0

    for attempt in range(10):
        if attempt == 5:  # change content between crashes: replacements crash too
            for path in rng.sample(paths, 20):
                (root / path).write_text(f"edited in round {attempt}", encoding="utf-8")
        docs = next(iter((cfg.state.dir / "local-store").glob("*/docs")), None)
        before = doc_count(docs) if docs else 0
        target = before + rng.randint(1, 25)
        proc = sync_process(config)
        if attempt % 3 == 2:  # a kill at a random moment (start-up, walk, hashing, anywhere)
            start = time.monotonic()
            delay = rng.uniform(0.05, 0.6)
            killed = kill_when(proc, lambda s=start, d=delay: time.monotonic() - s > d, start + 30)
        else:  # a kill right after the store wrote a document, before or during the DB commit

            def wrote_enough(target: int = target) -> bool:
                folder = next(iter((cfg.state.dir / "local-store").glob("*/docs")), None)
                return folder is not None and doc_count(folder) >= target

            killed = kill_when(proc, wrote_enough, time.monotonic() + 30)
        mid_run += killed

    final = subprocess.run(
        [sys.executable, "-m", "objlibd", "sync", "--config", str(config), "--cleanup-orphans", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert final.returncode == 0, final.stderr
    assert mid_run >= 5, "most kills must land while the sync was running"
    assert_exact(cfg, paths)
