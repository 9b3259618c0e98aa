"""The rule above all, on a real mount: a missing, empty or wrong drive never marks anything.

A tmpfs mounted at a path with a space in its name plays "U32 Shadow".
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine_fixtures import make_config, make_library, write_config_file
from objlibd.cli import main
from objlibd.engine.volume import probe
from objlibd.models import Availability
from objlibd.state.store import StateStore

pytestmark = pytest.mark.mount


@pytest.fixture
def synced(drive, tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """A 40-file library on the drive, synced once; returns (drive, config path, config)."""
    make_library(drive.root, 40)
    cfg = make_config(drive.root, tmp_path / "state", mount_point=drive.mount_point)
    path = write_config_file(cfg, tmp_path / "objlibd.toml")
    assert main(["sync", "--config", str(path)]) == 0
    capsys.readouterr()
    return drive, path, cfg


def mount_other_volume(drive, *, make_root: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Mount a different, empty volume where the drive was (same name, new disk)."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(drive.mount_point)],
                   check=True)  # fmt: skip
    if make_root:
        drive.root.mkdir()


def counts(cfg) -> dict[str, int]:  # type: ignore[no-untyped-def]
    state = StateStore.open(cfg.db_path, readonly=True)
    try:
        return state.files.counts_by_status()
    finally:
        state.close()


def test_first_sync_marks_the_library(synced) -> None:  # type: ignore[no-untyped-def]
    drive, _, cfg = synced

    marker = json.loads((drive.root / ".objlibd-library").read_text(encoding="utf-8"))

    assert marker["library_id"]
    assert counts(cfg)["uploaded"] == 40
    assert sorted(p.name for p in drive.mount_point.iterdir()) == [drive.root.name], (
        "nothing but the library folder is on the drive"
    )


def test_unmounted_drive_exits_3_and_marks_nothing(synced, capsys) -> None:  # type: ignore[no-untyped-def]
    drive, path, cfg = synced
    drive.unmount()

    code = main(["sync", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 3
    assert 'library disk not connected: nothing is mounted at "' in err
    assert 'connect "U32 Shadow" and retry' in err
    assert counts(cfg)["missing"] == 0
    assert list(drive.mount_point.iterdir()) == [], "the empty mount point stays untouched"


def test_an_empty_directory_in_the_drives_place_is_unavailable(synced, capsys) -> None:  # type: ignore[no-untyped-def]
    drive, path, cfg = synced
    drive.unmount()
    (drive.mount_point / drive.root.name).mkdir()  # a stale folder where the drive was

    code = main(["sync", "--config", str(path), "--prune-missing", "--cleanup-orphans"])

    assert code == 3
    assert counts(cfg)["missing"] == 0
    shutil.rmtree(drive.mount_point / drive.root.name)


def test_another_drive_without_the_marker_is_degraded(synced, capsys) -> None:  # type: ignore[no-untyped-def]
    drive, path, cfg = synced
    drive.unmount()
    mount_other_volume(drive)  # same name, same library folder name, but not our library

    code = main(["sync", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 3
    assert "marker" in err and "missing" in err
    assert "objlibd marker --write" in err
    assert counts(cfg)["missing"] == 0
    found = probe(cfg.library, "x")
    assert found.availability is Availability.DEGRADED


def test_a_marker_with_another_library_id_is_degraded(synced, capsys) -> None:  # type: ignore[no-untyped-def]
    drive, path, cfg = synced
    marker = drive.root / ".objlibd-library"
    marker.write_text(json.dumps({"library_id": "someone-else"}), encoding="utf-8")
    for item in list(drive.root.iterdir())[:3]:
        if item.is_dir():
            shutil.rmtree(item)

    code = main(["sync", "--config", str(path)])

    assert code == 3
    assert "wrong library" in capsys.readouterr().err
    assert counts(cfg)["missing"] == 0


def test_mounted_without_the_library_folder_is_degraded(synced, capsys) -> None:  # type: ignore[no-untyped-def]
    drive, path, _ = synced
    drive.unmount()
    mount_other_volume(drive, make_root=False)

    code = main(["sync", "--config", str(path)])

    assert code == 3
    assert "is mounted but the library folder" in capsys.readouterr().err
    assert not drive.root.exists(), "objlibd never creates folders on the drive"


def test_half_the_library_gone_is_held_until_confirmed(synced, capsys) -> None:  # type: ignore[no-untyped-def]
    drive, path, cfg = synced
    files = sorted(p for p in drive.root.rglob("*.txt"))
    for file in files[:20]:
        file.unlink()

    held = main(["sync", "--config", str(path)])
    out = capsys.readouterr().out
    shown = main(["missing", "--config", str(path)])
    listing = capsys.readouterr().out

    assert held == 0
    assert "HELD: 20 of 40 files (50 %)" in out
    assert counts(cfg)["missing"] == 0
    assert shown == 0
    assert "objlibd missing --confirm" in listing

    assert main(["missing", "--config", str(path), "--confirm"]) == 0
    assert counts(cfg)["missing"] == 20


def test_unmount_between_detection_and_marking_marks_nothing(drive, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The availability re-check right before marking catches an eject mid-run."""
    from objlibd.engine.sync import SyncEngine, SyncOptions
    from objlibd.errors import VolumeUnavailableError
    from objlibd.remote.local import LocalStore

    paths = make_library(drive.root, 10)
    cfg = make_config(drive.root, tmp_path / "state", mount_point=drive.mount_point)
    state = StateStore.open(cfg.db_path)
    engine = SyncEngine(cfg, state, LocalStore(cfg.state.dir / "store"))
    engine.run(SyncOptions())
    (drive.root / paths[0]).unlink()

    def eject(phase: str, done: int, total: int) -> None:
        if drive.mounted:
            subprocess.run(["umount", "-l", str(drive.mount_point)], check=True)

    engine.progress = eject
    (drive.root / "Course 0" / "new.txt").write_text("new", encoding="utf-8")
    with pytest.raises(VolumeUnavailableError):
        engine.run(SyncOptions())

    assert state.files.counts_by_status()["missing"] == 0
    state.close()


# -- found by identity, not by name: "U32 Shadow 1" ---------------------------------------------


@pytest.fixture
def beside(drive, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Mount points next to the drive's own; unmounted afterwards."""
    made: list[Path] = []

    def mount(name: str, source: Path | None = None) -> Path:
        point = drive.mount_point.parent / name
        point.mkdir()
        made.append(point)
        argv = ["mount", "--bind", str(source), str(point)] if source else [
            "mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point)]  # fmt: skip
        subprocess.run(argv, check=True)
        return point

    yield mount
    for point in made:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_our_drive_mounted_as_u32_shadow_1_is_found_by_its_marker_and_synced(  # type: ignore[no-untyped-def]
    synced, beside, capsys
) -> None:
    drive, path, cfg = synced
    drive.unmount()
    other = beside("U32 Shadow 1", drive.backing)  # the same disk, under the next free name
    (other / drive.root.name / "Course 0" / "added while elsewhere.txt").write_text("new\n")

    code = main(["sync", "--config", str(path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    state = StateStore.open(cfg.db_path, readonly=True)
    found = probe(cfg.library, state.values.get_config("library_id"))
    state.close()

    assert code == 0
    assert (summary["counts"]["uploaded"], summary["counts"]["missing"]) == (1, 0)
    assert counts(cfg)["uploaded"] == 41
    assert found.available and found.found_at == str(other)
    assert f'library found by its marker at "{other}"' in found.reason
    assert list(drive.mount_point.iterdir()) == [], "nothing written at the empty mount point"


def test_doctor_names_where_our_drive_was_found_instead_of_failing(  # type: ignore[no-untyped-def]
    synced, beside, capsys
) -> None:
    drive, path, _cfg = synced
    drive.unmount()
    other = beside("U32 Shadow 1", drive.backing)

    code = main(["doctor", "--config", str(path), "--offline", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}

    mount = checks["mount point mounted"]
    assert mount["level"] == "WARN"
    assert f'mounted at "{other}"' in mount["detail"]
    assert f'rmdir "{drive.mount_point}"' in mount["fix"]
    assert checks["library root readable"]["level"] == "OK"
    assert checks["marker matches the DB"]["level"] == "OK"
    assert code in (0, 1)  # the rest (no service installed here) is not this test's business


def test_an_unmarked_or_foreign_volume_beside_the_mount_point_is_never_used(  # type: ignore[no-untyped-def]
    synced, beside, capsys
) -> None:
    drive, path, cfg = synced
    drive.unmount()
    unmarked = beside("U32 Shadow 1")
    (unmarked / drive.root.name).mkdir()
    (unmarked / drive.root.name / "stranger.txt").write_text("not ours\n")
    foreign = beside("U32 Shadow 2")
    (foreign / drive.root.name).mkdir()
    (foreign / drive.root.name / ".objlibd-library").write_text(
        json.dumps({"library_id": "someone-else"}), encoding="utf-8"
    )

    code = main(["sync", "--config", str(path)])

    assert code == 3
    assert "nothing is mounted" in capsys.readouterr().err
    assert counts(cfg)["missing"] == 0
    assert sorted(p.name for p in (unmarked / drive.root.name).iterdir()) == ["stranger.txt"]


def test_two_drives_carrying_our_marker_beside_an_empty_mount_point_are_not_guessed(  # type: ignore[no-untyped-def]
    synced, beside, capsys
) -> None:
    drive, path, cfg = synced
    drive.unmount()
    beside("U32 Shadow 1", drive.backing)
    beside("U32 Shadow 2", drive.backing)  # e.g. a clone of the drive

    code = main(["sync", "--config", str(path)])

    assert code == 3
    assert "marker is on 2 drives" in capsys.readouterr().err
    assert counts(cfg)["missing"] == 0
