"""The daemon's part of the heartbeat: a full store, the store's counts, and the verdict on a beat."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fake_clock import FakeClock
from objlibd.config import Config, LibrarySettings, NotifySettings, StateSettings
from objlibd.engine.summary import SyncSummary
from objlibd.remote.local import LocalStore
from objlibd.runtime.vitals import STATS_EVERY, StoreNotes, Vitals
from objlibd.status import view as status


def test_a_full_store_stands_until_an_upload_goes_through(tmp_path: Path) -> None:
    notes = StoreNotes(LocalStore(tmp_path / "store"))

    notes.note(SyncSummary(store_full="Corpus has reached the storage limit", failed=3))
    first = notes.full
    notes.note(SyncSummary(store_full="Corpus has reached the storage limit"))
    notes.note(SyncSummary(unchanged=10))  # nothing uploaded: proves nothing
    still = notes.full
    notes.note(SyncSummary(uploaded=1))

    assert first is not None and first["message"] == "Corpus has reached the storage limit"
    assert still == first  # the same since
    assert notes.full is None


def test_the_stores_own_counts_are_read_after_changes_at_most_once_a_minute(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.ensure_store("library")
    clock = FakeClock()
    notes = StoreNotes(store, clock=clock)
    notes.note(SyncSummary())  # nothing known yet: read once
    empty = notes.stats
    blobs = next((tmp_path / "store").glob("*/blobs"))
    for name in ("a", "b"):
        (blobs / f"{name}.bin").write_bytes(b"12345")  # what two uploads leave
    notes.note(SyncSummary(uploaded=2))  # changed, but within the minute
    throttled = notes.stats
    clock.advance(STATS_EVERY)
    notes.note(SyncSummary(unchanged=5))  # due now, and still stale from the upload

    assert empty is not None and empty["documents"] == 0
    assert throttled == empty
    assert notes.stats is not None
    assert (notes.stats["documents"], notes.stats["size_bytes"]) == (2, 10)


def test_a_beat_is_judged_and_what_needs_a_person_is_announced(tmp_path: Path) -> None:
    point = tmp_path / "U32 Shadow"
    config = Config(
        library=LibrarySettings(mount_point=point, root=point / "Lib"),
        state=StateSettings(dir=tmp_path / "state"), notify=NotifySettings(),
    )  # fmt: skip
    config = replace(config, sync=replace(config.sync, heartbeat_seconds=0.1))
    config.state.dir.mkdir()
    sent: list[list[str]] = []

    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        sent.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    vitals = Vitals(config, runner=runner)
    vitals.notifier.platform, vitals.notifier.which = "linux", lambda n: f"/usr/bin/{n}"
    notes = StoreNotes(LocalStore(tmp_path / "store"))
    notes.full = {
        "message": "Corpus has reached the storage limit",
        "since": "2026-11-30T05:00:00Z",
    }
    now = time.time()

    beats = [beat_for(vitals, notes, now + t) for t in (0.0, 0.5, 1.5)]

    assert beats[-1]["store"]["full"] == notes.full
    assert "store_full" in beats[-1]["seen"]
    assert len(sent) == 1 and "the store is full" in sent[0][-1]
    assert "raise its storage tier" in sent[0][-1]


def beat_for(vitals: Vitals, notes: StoreNotes, now: float) -> dict[str, Any]:
    beat: dict[str, Any] = {
        "pid": 1, "started_epoch": now - 60, "updated_epoch": now, "rss_mb": 30.0,
        "volume": {"state": "available", "reason": "ok", "hint": "", "cause": ""},
        "watcher": {"alive": True}, "queue": {"pending_paths": 0}, "remote": {"breaker": None},
        "db": status._empty_db(),
    }  # fmt: skip
    vitals.add(beat, busy=False, notes=notes, now=now)
    vitals.judge(beat, now)
    return beat
