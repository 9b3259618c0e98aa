"""Regressions of the rule above all, on real tmpfs drives, through the CLI or the engine the
daemon's batches use (issue: hold arithmetic and lifecycle, yanked and crafted drives).

Each test is one hole found from outside, reproduced as a person meets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon_fixtures import Drive, make_drive, objlibd, store_docs, write_config
from fake_clock import FakeClock
from objlibd import config as config_module
from objlibd.config import LibrarySettings
from objlibd.engine import volume
from objlibd.engine.hold import Hold
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import VolumeUnavailableError
from objlibd.models import FileStatus
from objlibd.remote.base import Checkpoint, RemoteDoc, UploadRequest
from objlibd.remote.local import LocalStore
from objlibd.state import keys
from objlibd.state.store import StateStore

pytestmark = [pytest.mark.mount]

MARKER = ".objlibd-library"


class Library:
    """A config file, state dir and logs for one drive; the CLI and the engine on them."""

    def __init__(self, tmp_path: Path, drive: Drive, name: str = "a", **config: Any) -> None:
        self.drive = drive
        self.dir = tmp_path / f"objlibd {name}"
        self.dir.mkdir()
        self.state_dir = self.dir / "state"
        self.config_path = write_config(
            self.dir / "objlibd.toml", drive.mount_point, self.state_dir, self.dir / "logs",
            **config,
        )  # fmt: skip

    @property
    def root(self) -> Path:
        return self.drive.root

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return objlibd(*args, "--config", str(self.config_path))

    def sync_json(self, *args: str) -> dict[str, Any]:
        done = self.cli("sync", "--json", *args)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        return json.loads(done.stdout)

    def files(self, count: int, folder: str = "Course") -> list[str]:
        paths = []
        for index in range(count):
            rel = f"{folder} {index % 3}/Lecture {index:03d}.txt"
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{rel}\n", encoding="utf-8")
            paths.append(rel)
        return paths

    def state(self) -> StateStore:
        return StateStore.open(self.state_dir / "objlibd.db")

    def hold(self) -> Hold | None:
        state = self.state()
        try:
            return Hold.from_json(state.values.get_json(keys.HOLD))
        finally:
            state.close()

    def statuses(self) -> dict[str, int]:
        state = self.state()
        try:
            return state.files.counts_by_status()
        finally:
            state.close()

    def log_events(self) -> list[str]:
        path = self.dir / "logs" / "objlibd.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["event"] for line in lines if line.startswith("{")]


@pytest.fixture
def lib(tmp_path: Path, drive: Drive) -> Library:
    return Library(tmp_path, drive)


def second_volume(tmp_path: Path, name: str) -> Path:
    """Another tmpfs, ready to be bind-mounted at the drive's mount point."""
    backing = tmp_path / name
    backing.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(backing)], check=True)
    return backing


def swap(drive: Drive, backing: Path) -> None:
    drive.unmount()
    subprocess.run(["mount", "--bind", str(backing), str(drive.mount_point)], check=True)


@pytest.fixture
def cleanup_mounts(tmp_path: Path) -> Iterator[list[Path]]:
    points: list[Path] = []
    yield points
    for point in points:
        while os.path.ismount(point):
            subprocess.run(["umount", "-l", str(point)], check=False)


# 1. the percent rule divides by the files believed present ------------------------------------


def test_the_percent_rule_counts_only_files_believed_present(lib: Library) -> None:
    paths = lib.files(50)
    assert lib.sync_json()["counts"]["uploaded"] == 50
    for rel in paths[:40]:
        (lib.root / rel).unlink()
    assert lib.sync_json()["counts"]["held"] == 40
    assert lib.cli("missing", "--confirm").returncode == 0
    assert lib.statuses()["missing"] == 40

    for rel in paths[40:48]:  # 8 of the 10 still present: 80 %, though only 8 of 50 rows
        (lib.root / rel).unlink()
    summary = lib.sync_json()

    assert summary["counts"]["held"] == 8
    assert summary["counts"]["missing"] == 0
    assert "8 of 10 files (80 %)" in summary["hold"]


def test_a_foreign_one_file_drive_marked_as_ours_is_held(
    tmp_path: Path, lib: Library, cleanup_mounts: list[Path]
) -> None:
    lib.files(41)
    lib.sync_json()
    other = second_volume(tmp_path, "other drive")
    cleanup_mounts.append(other)
    (other / "Objectivism Library").mkdir()
    (other / "Objectivism Library" / "one.txt").write_text("one file\n", encoding="utf-8")
    swap(lib.drive, other)

    assert lib.cli("sync").returncode == 3, "no marker: not our library"
    assert lib.cli("marker", "--write").returncode == 0  # a person insists it is
    summary = lib.sync_json()

    assert summary["counts"]["held"] == 41
    assert summary["counts"]["missing"] == 0
    assert lib.statuses()["missing"] == 0


# 2, 3. the hold's lifecycle ------------------------------------------------------------------


@pytest.fixture
def engine(lib: Library) -> Iterator[SyncEngine]:
    config = config_module.load(lib.config_path)
    state = StateStore.open(config.db_path)
    store = LocalStore(config.state.dir / "local-store")
    yield SyncEngine(config, state, store, clock=FakeClock(1_800_000_000.0))
    state.close()


def test_a_batch_never_clears_a_hold_new_absences_join_it(lib: Library, engine: SyncEngine) -> None:
    paths = lib.files(40)
    engine.run(SyncOptions())
    for rel in paths[:20]:
        (lib.root / rel).unlink()
    assert engine.run(SyncOptions()).held == 20

    (lib.root / paths[30]).unlink()
    batch = engine.run_paths([paths[30]])  # the daemon's batch for one unrelated deletion

    hold = Hold.from_json(engine.state.values.get_json(keys.HOLD))
    assert hold is not None, "the hold must still stand"
    assert set(hold.paths) == {*paths[:20], paths[30]}
    assert batch.missing == 0
    assert engine.state.files.counts_by_status()["missing"] == 0
    status = json.loads(lib.cli("status", "--json").stdout)
    assert status["hold"] is not None
    assert status["healthy"] is False


def test_a_hold_clears_when_the_files_come_back(lib: Library) -> None:
    paths = lib.files(40)
    lib.sync_json()
    saved = {rel: (lib.root / rel).read_bytes() for rel in paths[:20]}
    for rel in saved:
        (lib.root / rel).unlink()
    assert lib.sync_json()["counts"]["held"] == 20
    for rel, data in saved.items():
        (lib.root / rel).write_bytes(data)

    done = lib.cli("sync", "--json")
    summary = json.loads(done.stdout)

    assert summary["hold"] is None
    assert lib.hold() is None
    assert summary["hold_cleared"] == "20 of 20 held files are back"
    assert summary["counts"]["missing"] == 0
    shown = lib.cli("missing")
    assert "no hold" in shown.stdout


def test_a_daemon_batch_that_sees_held_files_back_takes_a_full_view(
    lib: Library, engine: SyncEngine
) -> None:
    paths = lib.files(40)
    engine.run(SyncOptions())
    saved = {rel: (lib.root / rel).read_bytes() for rel in paths[:20]}
    for rel in saved:
        (lib.root / rel).unlink()
    engine.run(SyncOptions())
    for rel, data in saved.items():
        (lib.root / rel).write_bytes(data)

    engine.run_paths(list(saved)[:3])  # the watcher saw a few of them come back

    assert engine.state.values.get_json(keys.HOLD) is None


def test_confirm_marks_only_the_held_files_still_absent(lib: Library) -> None:
    paths = lib.files(40)
    lib.sync_json()
    saved = {rel: (lib.root / rel).read_bytes() for rel in paths[:20]}
    for rel in saved:
        (lib.root / rel).unlink()
    lib.sync_json()
    for rel in paths[:5]:
        (lib.root / rel).write_bytes(saved[rel])

    done = lib.cli("missing", "--confirm")

    assert done.returncode == 0, done.stderr
    assert "15 files marked missing" in done.stdout
    assert "5 back on the drive" in done.stdout
    assert lib.statuses()["missing"] == 15


# 5. a yanked drive is unavailable, not failure ---------------------------------------------------


class YankingStore(LocalStore):
    """The embedded store; runs `before` ahead of upload number `at` (0-based)."""

    def __init__(self, root: Path, at: int, before: Any) -> None:
        super().__init__(root)
        self.at, self.before, self.calls = at, before, 0
        self._lock = threading.Lock()

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        with self._lock:  # uploads run on several threads
            self.calls += 1
            if self.calls == self.at + 1:
                self.before(request)
        return super().upload(request, checkpoint)


def _engine_with(lib: Library, store: LocalStore) -> SyncEngine:
    config = config_module.load(lib.config_path)
    return SyncEngine(config, StateStore.open(config.db_path), store)


def test_a_drive_yanked_mid_sync_parks_the_run_and_records_nothing(lib: Library) -> None:
    lib.files(200)
    store = YankingStore(lib.state_dir / "local-store", 50, lambda _r: lib.drive.unmount())
    engine = _engine_with(lib, store)

    with pytest.raises(VolumeUnavailableError):
        engine.run(SyncOptions())

    counts = engine.state.files.counts_by_status()
    assert counts["failed"] == counts["error"] == counts["missing"] == 0
    assert engine.state.jobs.last_job("sync").status == "skipped"  # type: ignore[union-attr]
    assert store.calls < 200, "the run stops soon after the drive went away"
    engine.state.close()

    lib.drive.mount(make_root=False)
    summary = lib.sync_json()
    docs = store_docs(lib.state_dir)
    assert summary["counts"]["failed"] == 0
    assert len(docs) == 200
    assert all(len(shas) == 1 for shas in docs.values()), "every file exactly once"


def test_files_vanishing_mid_sync_on_a_present_drive_take_the_missing_path(lib: Library) -> None:
    paths = lib.files(10)
    lib.sync_json()
    (lib.root / paths[3]).write_text("edited\n", encoding="utf-8")
    os.utime(lib.root / paths[3], (2_000_000_000, 2_000_000_000))
    new = lib.root / "Course 0" / "brand new.txt"
    new.write_text("new\n", encoding="utf-8")

    def vanish(_request: UploadRequest) -> None:
        (lib.root / paths[3]).unlink()
        new.unlink()

    engine = _engine_with(lib, YankingStore(lib.state_dir / "local-store", 0, vanish))
    summary = engine.run(SyncOptions())

    assert summary.failed == 0
    assert engine.state.files.record(paths[3]).status is FileStatus.MISSING  # type: ignore[union-attr]
    assert engine.state.files.record("Course 0/brand new.txt") is None, "never uploaded: forgotten"
    engine.state.close()


# 6. the marker is never written through a symlink -------------------------------------------------


def test_the_marker_never_follows_a_symlinked_temp_file(tmp_path: Path, lib: Library) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    lib.files(3)
    (lib.root / f"{MARKER}.tmp").symlink_to(victim)

    assert lib.cli("sync").returncode == 0

    assert victim.read_text(encoding="utf-8") == "precious\n"
    marker = lib.root / MARKER
    assert marker.is_file() and not marker.is_symlink()
    assert not (lib.root / f"{MARKER}.tmp").exists()

    (lib.root / f"{MARKER}.tmp").symlink_to(victim)
    marker.unlink()
    marker.symlink_to(victim)  # a crafted marker too
    assert lib.cli("marker", "--write").returncode == 0
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert marker.is_file() and not marker.is_symlink()
    assert not os.path.lexists(lib.root / f"{MARKER}.tmp")


# 7. nothing off the drive: symlinked roots, ".." in the config --------------------------------------


def test_a_library_root_that_is_a_symlink_off_the_drive_is_refused(
    tmp_path: Path, lib: Library
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "private.txt").write_text("off the drive\n", encoding="utf-8")
    config = config_module.load(lib.config_path)
    lib.root.rmdir()
    lib.root.symlink_to(elsewhere)

    done = lib.cli("sync")  # the config, resolved, puts the root off the drive
    found = volume.probe(config.library, None)  # a daemon that loaded it before the swap

    assert done.returncode == 2
    assert "resolves to" in done.stderr
    assert found.availability.value == "degraded"
    assert "symlink" in found.reason
    assert not (lib.state_dir / "local-store").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["private.txt"]


@pytest.mark.parametrize("which", ["root", "state", "logs"])
def test_config_paths_are_checked_resolved(tmp_path: Path, drive: Drive, which: str) -> None:
    mount = drive.mount_point
    paths = {
        "root": f"{mount}/../elsewhere" if which == "root" else f"{mount}/Objectivism Library",
        "state": f"{tmp_path}/x/../{mount.name}/state" if which == "state" else f"{tmp_path}/s",
        "logs": f"{mount}/sub/../logs" if which == "logs" else f"{tmp_path}/l",
    }
    config = tmp_path / "objlibd.toml"
    config.write_text(
        f'[library]\nmount_point = "{mount}"\nroot = "{paths["root"]}"\n'
        f'[store]\nbackend = "local"\n[state]\ndir = "{paths["state"]}"\n'
        f'[logs]\ndir = "{paths["logs"]}"\n',
        encoding="utf-8",
    )

    done = objlibd("sync", "--dry-run", "--config", str(config))

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert {"root": "[library] root", "state": "[state] dir", "logs": "[logs] dir"}[which] in (
        done.stderr
    )
    assert sorted(p.name for p in mount.iterdir()) == ["Objectivism Library"], "nothing created"


# 8. another library's marker is never overwritten unasked ------------------------------------------


def test_a_fresh_state_refuses_a_drive_marked_by_another_library(
    tmp_path: Path, lib: Library
) -> None:
    lib.files(5)
    lib.sync_json()
    marker = (lib.root / MARKER).read_bytes()
    theirs = Library(tmp_path, lib.drive, name="b")

    done = theirs.cli("sync")

    assert done.returncode == 3
    assert "this drive is library" in done.stderr
    assert "objlibd marker --adopt" in done.stderr
    assert (lib.root / MARKER).read_bytes() == marker
    assert theirs.cli("marker", "--write").returncode != 0

    adopted = theirs.cli("marker", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert theirs.sync_json()["counts"]["uploaded"] == 5
    assert (lib.root / MARKER).read_bytes() == marker
    state = theirs.state()
    assert state.jobs.decisions()[0][0] == "marker_adopted"
    state.close()


def test_marker_write_refuses_a_foreign_marker_unless_forced(
    tmp_path: Path, lib: Library, cleanup_mounts: list[Path]
) -> None:
    lib.files(3)
    lib.sync_json()
    ours = volume.read_marker(lib.root / MARKER).library_id
    other = second_volume(tmp_path, "their drive")
    cleanup_mounts.append(other)
    (other / "Objectivism Library").mkdir()
    foreign = volume.Marker(volume.new_library_id(), "theirs")
    volume.write_marker(
        LibrarySettings(root=other / "Objectivism Library", mount_point=other), foreign
    )
    swap(lib.drive, other)

    refused = lib.cli("marker", "--write")
    assert refused.returncode == 1
    assert f"marked as library {foreign.library_id}" in refused.stderr
    assert "--force" in refused.stderr
    assert volume.read_marker(lib.root / MARKER).library_id == foreign.library_id

    forced = lib.cli("marker", "--write", "--force")
    assert forced.returncode == 0, forced.stderr
    assert volume.read_marker(lib.root / MARKER).library_id == ours
    state = lib.state()
    assert state.jobs.decisions()[0][0] == "marker_written"
    state.close()


# 9. a full drive says so and leaves nothing behind ------------------------------------------------


@pytest.fixture
def tiny_drive(tmp_path: Path) -> Iterator[Drive]:
    yield from make_drive(tmp_path, "256k")


def test_a_full_drive_on_the_first_sync_says_full_and_leaves_nothing(
    tmp_path: Path, tiny_drive: Drive
) -> None:
    lib = Library(tmp_path, tiny_drive)
    lib.files(3)
    filler = tiny_drive.mount_point / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)

    done = lib.cli("sync")

    assert "the drive is full" in done.stdout + done.stderr
    assert "read-only" not in done.stdout + done.stderr
    assert sorted(p.name for p in lib.root.iterdir()) == ["Course 0", "Course 1", "Course 2"]
