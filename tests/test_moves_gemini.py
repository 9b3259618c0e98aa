"""Moves through the real SDK against the fake Gemini: counted requests, SIGKILL mid-move.

Must-show 1 (requests) and 2 (SIGKILL) of issue #13: a renamed folder costs one upload and
one document delete per file; `objlibd sync` killed anywhere in a run full of moves (the
import sent, mid-poll, the old document's delete) and run again ends with exactly one
document per file on disk, the old paths gone from the store and nothing marked missing.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from fakes.gemini_server import Behaviour, FakeGemini, Faults
from objlibd.state.store import StateStore
from test_gemini_sync import (
    FAKE_KEY,
    Killer,
    Site,
    assert_exact,
    kill_after,
    make_site,
    operation_pending,
    start_sync,
    sync,
)

pytestmark = pytest.mark.e2e
SEED = int(os.environ.get("OBJLIBD_MOVES_SEED", "1313"))  # another seed: a longer soak


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def rename(site: Site, old: str, new: str) -> None:
    (site.root / old).rename(site.root / new)
    site.paths = sorted(p.relative_to(site.root).as_posix() for p in site.root.rglob("*.txt"))


def statuses(site: Site) -> dict[str, int]:
    state = StateStore.open(site.state_dir / "objlibd.db", readonly=True)
    try:
        return state.files.counts_by_status()
    finally:
        state.close()


def test_a_renamed_folder_costs_one_upload_and_one_delete_per_file(tmp_path: Path) -> None:
    with FakeGemini(Behaviour(api_key=FAKE_KEY), Faults(retry_delay="0.02s")) as fake:
        site = make_site(tmp_path, fake, 100)
        sync(site)
        imports, deletes = fake.count("stores.importFile"), fake.count("documents.delete")
        rename(site, "Course 3", "Course 3 (2026)")

        summary = sync(site)

        assert (summary["counts"]["moved"], summary["counts"]["missing"]) == (20, 0)
        assert fake.count("stores.importFile") - imports == 20
        assert fake.count("documents.delete") - deletes == 20
        assert summary["hold"] is None
        assert_exact(site)


def test_sigkill_mid_move_then_rerun_converges_to_one_document_per_file(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    behaviour = Behaviour(api_key=FAKE_KEY, op_polls_to_done=3, op_seconds_to_done=0.5)
    with FakeGemini(behaviour, Faults(retry_delay="0.02s"), seed=SEED) as fake:
        site = make_site(tmp_path, fake, 200)
        sync(site)
        killer = Killer()
        for route in ("stores.importFile", "operations.get", "documents.delete"):
            fake.on(route, killer)
        points = [("stores.importFile", None), ("operations.get", operation_pending(fake)),
                  ("documents.delete", None), ("random", None)]  # fmt: skip
        folders = [f"Course {i}" for i in range(5)]
        killed = 0
        for round_number in range(8):
            index = round_number % len(folders)
            renamed = f"{folders[index].split(' (')[0]} (round {round_number})"
            rename(site, folders[index], renamed)
            folders[index] = renamed
            route, condition = points[round_number % len(points)]
            proc = start_sync(site)
            if route == "random":
                killed += kill_after(proc, rng.uniform(0.2, 1.5))
            else:
                killer.arm(proc, route, rng.randint(1, 20), condition)
                proc.wait(timeout=120)
                killed += proc.returncode == -signal.SIGKILL

        final = sync(site, "--cleanup-orphans")

        assert final["exit_code"] == 0, final["stderr"][-3000:]
        assert killed >= 5, "most kills must land while the sync was running"
        assert_exact(site)  # one document per file on disk, the old paths' documents gone
        counts = statuses(site)
        assert (counts["missing"], counts["uploaded"]) == (0, 200)
