"""Bad input gets a clear message, the rest of the library still syncs, nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine_fixtures import Env, make_config, make_library, write_config_file
from objlibd.cli import main
from objlibd.models import FileStatus
from objlibd.sync import SyncOptions


def test_awkward_entries_are_reported_and_everything_else_syncs(env: Env, tmp_path: Path) -> None:
    paths = make_library(env.root, 10)
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the library", encoding="utf-8")
    (env.root / "escape.txt").symlink_to(outside)
    (env.root / "loop-a.txt").symlink_to(env.root / "loop-b.txt")
    (env.root / "loop-b.txt").symlink_to(env.root / "loop-a.txt")
    (env.root / "dangling.txt").symlink_to(env.root / "nowhere.txt")
    (env.root / "folder-link").symlink_to(env.root, target_is_directory=True)
    (env.root / "inside-link.txt").symlink_to(env.root / paths[0])
    os.close(os.open(os.path.join(os.fsencode(env.root), b"caf\xe9.txt"), os.O_CREAT | os.O_WRONLY))
    (env.root / "empty.txt").write_bytes(b"")
    (env.root / "movie.mkv").write_bytes(b"not a document")
    (env.root / "~$lock.docx").write_bytes(b"office lock file")
    (env.root / "draft.txt.tmp").write_bytes(b"temp")

    summary = env.engine.run(SyncOptions())

    reasons = {p.path: p.reason for p in summary.problems}
    assert reasons["escape.txt"] == "symlink points outside the library: skipped"
    assert reasons["loop-a.txt"] == "symlink loop: skipped"
    assert reasons["dangling.txt"].startswith("broken symlink")
    assert reasons["caf\\xe9.txt"] == "file name is not valid UTF-8: rename it"
    stored = {d.path for d in env.store.list_docs()}
    assert stored == {*paths, "empty.txt", "inside-link.txt"}
    assert summary.failed == 0
    assert summary.exit_code == 0


def test_a_file_that_vanishes_between_walk_and_hash_is_left_for_later(env: Env) -> None:
    paths = make_library(env.root, 6)
    victim = env.root / paths[3]

    def vanish(phase: str, done: int, total: int) -> None:
        if phase == "hash" and victim.exists():
            victim.unlink()

    env.engine.progress = vanish
    summary = env.engine.run(SyncOptions())

    assert summary.uploaded == 5
    assert summary.failed == 0
    assert env.state.record(paths[3]) is None


def test_a_file_over_max_file_mb_is_skipped_with_its_size(env: Env) -> None:
    env.reconfigure()
    from dataclasses import replace

    env.config = replace(env.config, library=replace(env.config.library, max_file_mb=0.001))
    from objlibd.sync import SyncEngine

    env.engine = SyncEngine(env.config, env.state, env.store, clock=env.clock)
    (env.root / "small.txt").write_text("ok", encoding="utf-8")
    (env.root / "big.pdf").write_bytes(b"x" * 5000)

    summary = env.engine.run(SyncOptions())

    assert summary.skipped == 1
    record = env.state.record("big.pdf")
    assert record is not None
    assert record.status is FileStatus.SKIPPED
    assert "larger than max_file_mb" in (record.last_error or "")
    assert {d.path for d in env.store.list_docs()} == {"small.txt"}


def test_a_corrupt_state_db_stops_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    make_library(root, 3)
    cfg = make_config(root, tmp_path / "state")
    config = write_config_file(cfg, tmp_path / "objlibd.toml")
    cfg.state.dir.mkdir(parents=True)
    cfg.db_path.write_bytes(b"\x00garbage" * 512)

    code = main(["sync", "--config", str(config)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"objlibd: state database {cfg.db_path} cannot be used" in err
    assert "Traceback" not in err
    assert cfg.db_path.read_bytes().startswith(b"\x00garbage"), "the evidence is kept"


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A temp dir an unprivileged user can enter (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="objlibd-nobody-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_an_unreadable_file_is_reported_and_the_rest_syncs(world_readable_tmp: Path) -> None:
    """Runs the real CLI as `nobody`, since root can read any file."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the sync as an unprivileged user")
    root = world_readable_tmp / "library"
    paths = make_library(root, 8)
    (root / paths[2]).chmod(0o000)
    cfg = make_config(root, world_readable_tmp / "state")
    config = write_config_file(cfg, world_readable_tmp / "objlibd.toml")
    for path in (world_readable_tmp, *root.rglob("*")):
        if path.is_dir():
            path.chmod(0o755)
    (world_readable_tmp / "state").mkdir()
    os.chown(world_readable_tmp / "state", 65534, 65534)

    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "objlibd", "sync", "--config", str(config), "--json"],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "HOME": "/tmp"},
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["counts"]["uploaded"] == 7
    assert summary["failures"] == [{"path": paths[2], "reason": "cannot read: Permission denied"}]
    assert "read-only for objlibd" in summary["problems"][0]["reason"], "no marker: said so"


def test_a_batch_under_a_folder_swapped_for_a_symlink_uploads_nothing_from_outside(
    env: Env, tmp_path: Path
) -> None:
    make_library(env.root, 3)
    env.engine.run(SyncOptions())
    outside = tmp_path / "outside" / "b"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_text("not in the library", encoding="utf-8")
    (env.root / "a").symlink_to(tmp_path / "outside", target_is_directory=True)

    subtree = env.engine.run_paths([], subtrees=["a/b"])
    touched = env.engine.run_paths(["a/b/secret.txt"])

    assert (subtree.uploaded, touched.uploaded) == (0, 0)
    assert not any(d.path and d.path.startswith("a/") for d in env.store.list_docs())
    assert [p.reason for p in subtree.problems] == ["symlink to a folder: not followed"]
