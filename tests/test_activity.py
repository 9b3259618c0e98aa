"""`objlibd activity`: batches, jobs and decisions, newest first, with counts and durations."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine_fixtures import make_config, make_library, write_config_file
from fake_clock import FakeClock
from objlibd.cli import main
from objlibd.config import Config
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.remote.local import LocalStore
from objlibd.state.store import StateStore
from objlibd.status import activity


@pytest.fixture
def library(tmp_path: Path) -> tuple[Config, Path]:
    root = tmp_path / "library"
    make_library(root, 10)
    cfg = make_config(root, tmp_path / "state", prune_after_days=0.00001)
    return cfg, write_config_file(cfg, tmp_path / "objlibd.toml")


def engine(cfg: Config, clock: FakeClock | None = None) -> tuple[StateStore, SyncEngine]:
    state = StateStore.open(cfg.db_path)
    store = LocalStore(cfg.state.dir / "local-store")
    return state, SyncEngine(cfg, state, store, clock=clock or FakeClock(time.time()))


def activity_json(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    capsys.readouterr()  # the engine's own log lines
    assert main(["activity", "--json", "--config", str(path), *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_batch_a_prune_and_a_confirm_are_listed_with_their_counts(
    library: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = library
    clock = FakeClock(time.time())
    state, sync = engine(cfg, clock)
    sync.run(SyncOptions())
    (cfg.library.root / "Course 0/Lecture 0000.txt").unlink()
    sync.run_paths(["Course 0/Lecture 0000.txt"], trigger="batch")  # one file missing
    clock.advance(60)
    sync.prune_missing(trigger="scheduled")
    for name in sorted(cfg.library.root.rglob("*.txt"))[:6]:
        name.unlink()
    sync.run(SyncOptions())  # held: 6 of 9 at once
    sync.confirm_missing()
    state.close()

    items = activity_json(path, capsys)

    kinds = [(i["type"], i["kind"]) for i in items]
    assert set(kinds[:2]) == {("decision", "confirm_missing"), ("job", "confirm_missing")}
    assert kinds[2:] == [("job", "sync"), ("job", "prune"), ("job", "batch"), ("job", "sync")]
    batch = next(i for i in items if i["kind"] == "batch")
    prune = next(i for i in items if i["kind"] == "prune")
    confirm = next(i for i in items if i["type"] == "job" and i["kind"] == "confirm_missing")
    assert (batch["counts"], batch["trigger"], batch["status"]) == ({"missing": 1}, "batch",
                                                                     "completed")  # fmt: skip
    assert prune["counts"] == {"pruned": 1}
    assert confirm["counts"] == {"missing": 6}
    assert next(i for i in items if i["type"] == "decision")["detail"]["count"] == 6
    assert all(
        i["duration_s"] is not None and i["duration_s"] >= 0 for i in items if i["type"] == "job"
    )


def test_n_and_since_limit_the_list_and_people_get_one_line_each(
    library: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = library
    state, sync = engine(cfg)
    for _ in range(3):
        sync.run(SyncOptions())
    state.close()

    assert len(activity_json(path, capsys, "-n", "2")) == 2
    assert activity_json(path, capsys, "--since", "2999-01-01T00:00:00") == []
    capsys.readouterr()
    assert main(["activity", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "sync" in lines[0] and "completed" in lines[0] and "10 unchanged" in lines[0]
    assert "10 uploaded" in lines[-1]
    assert main(["activity", "--since", "whenever", "--config", str(path)]) == 2


def test_a_retry_is_a_decision_in_the_activity(
    library: tuple[Config, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, path = library
    state, sync = engine(cfg)
    sync.run(SyncOptions())
    state.failures.record_permanent_failure("Course 1/Lecture 0001.txt", "h", "refused", failures=3,
                                   quarantined_at="2026-11-20T10:00:00Z")  # fmt: skip
    state.close()
    assert main(["retry", "--all", "--config", str(path)]) == 0
    capsys.readouterr()

    [latest] = activity_json(path, capsys, "-n", "1")

    assert (latest["type"], latest["kind"], latest["detail"]["count"]) == ("decision", "retry", 1)
    assert activity.render([latest]) == [
        f"{latest['at'][:19].replace('T', ' ')}  decision  retried held-back files (count 1)"
    ]


def test_nothing_done_yet_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "library"
    root.mkdir()
    path = write_config_file(make_config(root, tmp_path / "state"), tmp_path / "objlibd.toml")

    assert main(["activity", "--config", str(path)]) == 0
    assert "nothing done yet" in capsys.readouterr().err
