"""status: the snapshot with and without a daemon, health rules, and the shared files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from objlibd.config import Config, LibrarySettings, StateSettings
from objlibd.models import FileStatus
from objlibd.state.store import StateStore
from objlibd.status import files
from objlibd.status import view as status


def make_config(tmp_path: Path) -> Config:
    point = tmp_path / "U32 Shadow"
    return Config(
        library=LibrarySettings(mount_point=point, root=point / "Lib"),
        state=StateSettings(dir=tmp_path / "state"),
    )


def beat(config: Config, **over: object) -> None:
    config.state.dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    data = {
        "pid": os.getpid(), "started_epoch": now - 90, "updated_epoch": now, "rss_mb": 41.5,
        "volume": {"state": "available", "reason": "library mounted and verified"},
        "watcher": {"alive": True}, "queue": {"pending_paths": 3},
        "next_runs": {"prune": "2026-11-24T00:00:00+00:00"}, "remote": {"breaker": "closed"},
    }  # fmt: skip
    data.update(over)
    files.write_json_atomic(config.state.dir / files.HEARTBEAT_NAME, data)
    pid = {"pid": os.getpid(), "create_time": 0.0, "started_at": now}
    (config.state.dir / "objlibd.pid").write_text(json.dumps(pid))


def test_without_a_daemon_or_db_status_says_not_running(tmp_path: Path) -> None:
    snap = status.snapshot(make_config(tmp_path))

    assert snap["daemon"]["running"] is False
    assert snap["volume"]["state"] == "unavailable"
    assert snap["healthy"] is False
    assert snap["jobs"]["prune"] == {"last_run": None, "last_result": None, "next_run": None}


def test_a_fresh_heartbeat_from_a_live_pid_means_running(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    beat(config)

    snap = status.snapshot(config)

    assert snap["daemon"]["running"] is True
    assert snap["daemon"]["rss_mb"] == 41.5
    assert 89 <= snap["daemon"]["uptime_s"] <= 100
    assert snap["queue"]["pending_paths"] == 3
    assert snap["jobs"]["prune"]["next_run"] == "2026-11-24T00:00:00+00:00"
    assert snap["remote"] == {
        "backend": "local", "store": "objectivism-library", "breaker": "closed",
        "documents": None, "size_bytes": None, "stats_at": None,
    }  # fmt: skip
    assert (snap["healthy"], snap["state"], snap["problems"]) == (True, "healthy", [])


@pytest.mark.parametrize(
    "over",
    [
        {"updated_epoch": 0.0},  # stale
        {"pid": 1},  # written by another pid than the pidfile's
        {"stopped": True},  # the daemon said goodbye
    ],
)
def test_a_stale_or_foreign_heartbeat_means_not_running(tmp_path: Path, over: dict) -> None:
    config = make_config(tmp_path)
    beat(config, **over)

    assert status.snapshot(config)["daemon"]["running"] is False


def test_db_facts_come_from_a_read_only_connection(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    state = StateStore.open(config.db_path)
    state.files.begin_upload("a.pdf", "h1", 1, 1)
    state.files.record_failure("b.pdf", FileStatus.FAILED, "refused")
    job = state.jobs.start_job("prune", trigger="scheduled")
    state.jobs.finish_job(job, "skipped", {}, "volume unavailable: nothing is mounted")
    state.values.set_json("hold", {"reason": "9 files would be marked missing", "paths": []})
    state.close()
    beat(config)

    snap = status.snapshot(config)

    assert snap["files"]["uploading"] == 1
    assert snap["errors"] == [{"path": "b.pdf", "status": "failed", "error": "refused"}]
    assert snap["jobs"]["prune"]["last_result"] == "skipped: volume unavailable: nothing is mounted"
    assert snap["hold"] == "9 files would be marked missing"
    assert snap["healthy"] is False


@pytest.mark.parametrize(
    ("change", "healthy"),
    [
        ({}, True),
        ({"volume": {"state": "unavailable", "reason": "not connected"}, "watcher": {"alive": False}}, True),
        ({"volume": {"state": "degraded", "reason": "wrong drive"}}, False),
        ({"watcher": {"alive": False}}, False),
        ({"remote": {"breaker": "open"}}, False),
        ({"problem": "store mismatch"}, False),
    ],
)  # fmt: skip
def test_health_rules(tmp_path: Path, change: dict, healthy: bool) -> None:
    config = make_config(tmp_path)
    beat(config, **change)

    assert status.snapshot(config)["healthy"] is healthy


def test_pause_flag_round_trip(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"

    assert files.set_pause(state_dir, True) is True
    assert files.set_pause(state_dir, True) is False
    assert files.read_pause(state_dir)["since"].endswith("Z")
    assert files.set_pause(state_dir, False) is True
    assert files.read_pause(state_dir) is None


def test_render_text_mentions_what_matters(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    beat(config)

    text = status.render_text(status.snapshot(config))

    assert "daemon:     running" in text
    assert "watcher:    alive" in text
    assert "queue:      3 paths pending" in text
    assert text.endswith("healthy")


def test_problems_come_with_their_fix_and_the_verdict_is_the_last_line(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    beat(
        config, remote={"breaker": {"state": "open"}}, seen={"breaker_open": "2026-11-30T05:00:00Z"}
    )

    snap = status.snapshot(config)
    text = status.render_text(snap)

    assert snap["state"] == "unhealthy"
    assert [p["code"] for p in snap["problems"]] == ["breaker_open"]
    assert "WARNING: breaker_open (since 2026-11-30T05:00:00Z): the store is rate-limiting" in text
    assert "         fix: nothing if it closes within minutes" in text
    assert text.endswith("NOT HEALTHY")


def test_a_drive_that_is_not_connected_is_a_note_and_still_healthy(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    beat(config, volume={"state": "unavailable", "cause": "not_connected",
                         "reason": "nothing is mounted"}, watcher={"alive": False})  # fmt: skip

    snap = status.snapshot(config)
    text = status.render_text(snap)

    assert (snap["healthy"], snap["state"]) == (True, "waiting")
    assert "note:    drive_not_connected: waiting for the drive: nothing is mounted" in text
    assert text.endswith("\nhealthy")


def test_uploads_under_way_show_rate_in_flight_limiter_waits_and_the_eta(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    now = time.time()
    gemini = {
        "breaker": {"state": "closed"}, "rate_limit_tier": "tier1", "calls_per_file": 2,
        "rate_limit": {"rpm": 20, "calls": 240, "waited_seconds": 312.0, "waiting": 2},
        "in_flight": 4,
    }  # fmt: skip
    phase = {"phase": "upload", "done": 60, "total": 372, "started_epoch": now - 360}
    stats = {"documents": 1840, "size_bytes": 2_254_857_830, "at": "2026-11-30T05:00:00Z"}
    beat(config, remote=gemini, progress=phase, store={"stats": stats})

    snap = status.snapshot(config, now=now)
    text = status.render_text(snap)

    assert snap["progress"]["eta"] == "312 files to upload, about 31 min at tier1"
    assert snap["progress"]["current"]["rate_per_s"] == pytest.approx(60 / 360, abs=0.01)
    assert snap["remote"]["documents"] == 1840
    assert "now:        upload 60/372, 10 files/min; 312 files to upload, about 31 min" in text
    assert "uploads:    4 in flight; rate limit tier1 (20/min): 2 waiting, waited 5m 12s" in text
    assert ": 1840 documents, 2.1 GiB (as of 2026-11-30T05:00:00Z)" in text
