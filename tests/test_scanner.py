"""The walk, the filters and the pure diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from objlibd.config import LibrarySettings
from objlibd.models import DiskEntry, FileStatus, StateIndex
from objlibd.scanner import Filters, diff, sha256_file, stat_paths, walk

FILTERS = Filters.from_settings(LibrarySettings())


@pytest.mark.parametrize(
    ("name", "eligible"),
    [("a.pdf", True), ("A.PDF", True), ("notes.md", True), (".hidden.pdf", False),
     ("~$doc.docx", False), ("x.tmp", False), ("movie.mkv", False), ("noext", False),
     (".objlibd-library", False), ("draft.pdf.part", False), ("pdf", False)],
)  # fmt: skip
def test_filters_decide_by_name(name: str, eligible: bool) -> None:
    assert FILTERS.eligible(name) is eligible


def entry(path: str, size: int = 10, mtime: int = 100) -> DiskEntry:
    return DiskEntry(path, size, mtime)


def record(path: str, status: FileStatus = FileStatus.UPLOADED, size: int = 10,
           mtime: int = 100) -> tuple[str, FileStatus, int, int]:  # fmt: skip
    return path, status, size, mtime


def index(*rows: tuple[str, FileStatus, int, int]) -> StateIndex:
    built = StateIndex()
    for path, status, size, mtime in rows:
        if status in (FileStatus.UPLOADED, FileStatus.SKIPPED):
            built.settled[path] = (path, size, mtime)
        else:
            built.unsettled[path] = status.value
    return built


@pytest.mark.parametrize(
    ("disk", "known", "expected"),
    [
        ([entry("a")], [], ("new", ["a"])),
        ([entry("a")], [record("a")], ("unchanged", 1)),
        ([entry("a", mtime=101)], [record("a")], ("check", ["a"])),
        ([entry("a", size=11)], [record("a")], ("check", ["a"])),
        ([], [record("a")], ("missing", ["a"])),
        ([entry("a")], [record("a", FileStatus.MISSING)], ("check", ["a"])),
        ([entry("a")], [record("a", FileStatus.FAILED)], ("check", ["a"])),
        ([entry("a")], [record("a", FileStatus.UPLOADING)], ("check", ["a"])),
        ([entry("a")], [record("a", FileStatus.DELETED)], ("new", ["a"])),
        ([], [record("a", FileStatus.DELETED)], ("missing", [])),
        ([entry("a")], [record("a", FileStatus.SKIPPED)], ("unchanged", 1)),
    ],
)
def test_diff_table(
    disk: list[DiskEntry], known: list[tuple[str, FileStatus, int, int]], expected: tuple
) -> None:  # type: ignore[type-arg]
    result = diff({e.path: tuple(e) for e in disk}, index(*known))  # type: ignore[misc]

    kind, value = expected
    got = {
        "new": [e.path for e in result.new],
        "check": [e.path for e in result.check],
        "missing": result.missing,
        "unchanged": result.unchanged,
    }[kind]
    assert got == value


def test_force_checks_everything() -> None:
    result = diff({"a": tuple(entry("a"))}, index(record("a")), force=True)  # type: ignore[dict-item]

    assert [e.path for e in result.check] == ["a"]


def test_diff_reports_every_indexed_path_not_on_disk_as_missing() -> None:
    known = index(record("a"), record("b"))

    result = diff({}, known)

    assert result.missing == ["a", "b"]


def test_walk_skips_excluded_folders_and_reports_unlistable_ones(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("x")
    (tmp_path / "Deep" / "er").mkdir(parents=True)
    (tmp_path / "Deep" / "er" / "a.txt").write_text("a")

    result = walk(tmp_path, FILTERS)

    assert list(result.entries) == ["Deep/er/a.txt"]
    assert result.covers("Deep/er/a.txt")


def test_walk_of_a_vanished_subtree_is_empty_not_an_error(tmp_path: Path) -> None:
    result = walk(tmp_path, FILTERS, "gone")

    assert (result.entries, result.problems) == ({}, [])


def test_stat_paths_costs_only_the_paths_given(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")

    result, absent = stat_paths(tmp_path, FILTERS, ["a.txt", "b.txt", "c.tmp", ""])

    assert list(result.entries) == ["a.txt"]
    assert absent == {"b.txt"}


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    target = tmp_path / "a.bin"
    target.write_bytes(b"abc" * 100_000)

    assert sha256_file(target) == hashlib.sha256(b"abc" * 100_000).hexdigest()


def test_undecodable_folder_names_are_reported_not_descended(tmp_path: Path) -> None:
    import os

    folder = os.path.join(os.fsencode(tmp_path), b"Vorlesungen \xfc")
    os.mkdir(folder)
    with open(os.path.join(folder, b"a.txt"), "wb") as handle:
        handle.write(b"a")
    (tmp_path / "Caf\u00e9 notes.txt").write_text("accents are fine")

    result = walk(tmp_path, FILTERS)

    assert list(result.entries) == ["Caf\u00e9 notes.txt"]
    assert [p.reason for p in result.problems] == ["folder name is not valid UTF-8: rename it"]
