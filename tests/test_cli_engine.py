"""The engine's commands as people run them: demo, sync --json, store list, marker, the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine_fixtures import make_config, make_library, write_config_file
from objlibd.cli import main


def test_demo_makes_a_library_and_config_and_syncs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    config = tmp_path / "demo" / "objlibd.toml"
    again = main(["sync", "--config", str(config), "--json"])
    summary = json.loads(capsys.readouterr().out)
    listed = main(["store", "list", "--config", str(config), "--json"])
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert code == 0
    assert "uploaded         8" in out
    assert "objlibd run --config" in out
    assert (again, summary["counts"]["uploaded"], summary["counts"]["unchanged"]) == (0, 0, 8)
    assert listed == 0
    assert len(docs) == 8
    assert all(d["path"] and len(d["sha256"]) == 64 for d in docs)


def test_sync_json_has_stable_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "library"
    make_library(root, 3)
    config = write_config_file(make_config(root, tmp_path / "state"), tmp_path / "objlibd.toml")

    assert main(["sync", "--config", str(config), "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)

    assert set(planned) == {
        "trigger", "dry_run", "counts", "hashed", "duration_s", "hold", "hold_cleared", "stopped",
        "problems",
        "failures", "planned", "duplicates", "pace", "exit_code",
    }  # fmt: skip
    assert planned["dry_run"] is True
    assert len(planned["planned"]["upload"]) == 3
    assert not (tmp_path / "state" / "local-store").exists(), "a dry run creates no store"


def test_marker_write_re_marks_a_restored_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "library"
    make_library(root, 4)
    config = write_config_file(make_config(root, tmp_path / "state"), tmp_path / "objlibd.toml")
    assert main(["sync", "--config", str(config)]) == 0
    (root / ".objlibd-library").unlink()  # e.g. restored from a backup without hidden files

    refused = main(["sync", "--config", str(config)])
    shown = main(["marker", "--config", str(config)])
    written = main(["marker", "--config", str(config), "--write"])
    synced = main(["sync", "--config", str(config), "--json"])
    out = capsys.readouterr().out

    assert (refused, shown, written, synced) == (3, 1, 0, 0)
    assert "degraded" in out
    assert json.loads(out[out.index("{") :])["counts"]["unchanged"] == 4


def test_sync_refuses_while_another_objlibd_owns_the_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "library"
    make_library(root, 2)
    cfg = make_config(root, tmp_path / "state")
    config = write_config_file(cfg, tmp_path / "objlibd.toml")
    owner = (
        "import sys, signal; from pathlib import Path; from objlibd.runtime.pidfile import PidFile;"
        "PidFile(Path(sys.argv[1]) / 'objlibd.pid').acquire(); print('ready', flush=True);"
        "signal.pause()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", owner, str(cfg.state.dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"

        code = main(["sync", "--config", str(config)])
    finally:
        holder.kill()
        holder.wait()

    err = capsys.readouterr().err
    assert code == 1
    assert f"another objlibd is working on {cfg.state.dir}" in err
    assert "objlibd stop" in err
    assert os.path.exists(cfg.state.dir / "objlibd.pid"), "the owner's claim is left alone"
