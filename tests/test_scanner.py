"""The walk, the filters and the pure diff."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from objlibd.config import LibrarySettings
from objlibd.engine.changes import diff, diff_quiet
from objlibd.engine.disk import sha256_file, stat_paths
from objlibd.engine.filters import Filters
from objlibd.engine.scanner import OPEN_FOLDERS, walk
from objlibd.models import DiskEntry, FileStatus, StateIndex

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


@pytest.mark.parametrize(
    ("disk", "known", "exact"),
    [
        ([entry("a")], [record("a")], True),
        ([entry("a")], [record("a"), record("b", FileStatus.MISSING)], True),  # already missing
        ([entry("a")], [record("a"), record("b", FileStatus.DELETED)], True),
        ([], [], True),
        ([entry("a"), entry("b")], [record("a")], False),  # new
        ([entry("a", mtime=101)], [record("a")], False),  # changed
        ([entry("a")], [record("a", FileStatus.FAILED)], False),  # a retry
        ([], [record("a")], False),  # a settled file gone
    ],
)
def test_diff_is_exact_only_when_the_disk_holds_exactly_the_settled_files(
    disk: list[DiskEntry], known: list[tuple[str, FileStatus, int, int]], exact: bool
) -> None:
    assert diff({e.path: tuple(e) for e in disk}, index(*known)).exact is exact  # type: ignore[misc]


@pytest.mark.parametrize("status", list(FileStatus))
def test_the_quiet_diff_is_the_full_diff_of_an_exact_disk(status: FileStatus) -> None:
    known = index(record("a"), record("b", FileStatus.SKIPPED), record("c", status),
                  record("d", FileStatus.DELETED), record("e", FileStatus.MISSING))  # fmt: skip
    disk = {path: sig for path, sig in known.settled.items()}

    full = diff(disk, known)

    assert full.exact
    assert diff_quiet(len(disk), known.unsettled) == full


def test_two_walks_of_an_unchanged_tree_are_equal_and_any_stat_change_shows(
    tmp_path: Path,
) -> None:
    import os

    for rel in ("a.txt", "Sub/b.pdf", "Sub/c.md", "Sub/Deeper/d.txt", "Sub/skip.tmp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)

    first, second = walk(tmp_path, FILTERS), walk(tmp_path, FILTERS)

    assert first.folders == second.folders
    assert sorted(first.folders) == ["", "Sub", "Sub/Deeper"]
    assert first.count == len(first.entries) == 4
    stat = (tmp_path / "Sub/c.md").stat()
    assert first.entries["Sub/c.md"] == ("Sub/c.md", stat.st_size, stat.st_mtime_ns)
    os.utime(tmp_path / "Sub/c.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert walk(tmp_path, FILTERS).folders != first.folders


def test_a_library_root_reached_through_a_symlink_is_walked(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.txt").write_text("a")
    (tmp_path / "link").symlink_to(tmp_path / "real")

    result = walk(tmp_path / "link", FILTERS)

    assert list(result.entries) == ["a.txt"]
    assert result.problems == []


def library_with_link(tmp_path: Path, link: str) -> Path:
    """A library whose folder `link` is a symlink to a folder outside it; return the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not library")
    root = tmp_path / "library"
    root.mkdir()
    (root / link).symlink_to(outside)
    return root


def test_a_subtree_that_became_a_symlink_is_reported_and_not_followed(tmp_path: Path) -> None:
    root = library_with_link(tmp_path, "Folder")

    result = walk(root, FILTERS, "Folder")

    assert result.entries == {}
    assert [(p.path, p.reason) for p in result.problems] == [
        ("Folder", "symlink to a folder: not followed")
    ]
    assert result.covers("Folder/secret.txt")  # what was under it is gone, not unreadable


def test_a_symlinked_folder_inside_the_library_is_reported_not_followed(tmp_path: Path) -> None:
    root = library_with_link(tmp_path, "Linked")
    (root / "broken").symlink_to(tmp_path / "nowhere")

    result = walk(root, FILTERS)

    assert result.entries == {}
    assert [(p.path, p.reason) for p in result.problems] == [
        ("Linked", "symlink to a folder: not followed")
    ]


def test_a_subtree_under_a_folder_that_became_a_symlink_is_not_followed(tmp_path: Path) -> None:
    root = library_with_link(tmp_path, "Folder")
    (tmp_path / "outside" / "Deeper").mkdir()
    (tmp_path / "outside" / "Deeper" / "b.txt").write_text("not library either")

    walked = walk(root, FILTERS, "Folder/Deeper")
    touched, absent = stat_paths(root, FILTERS, ["Folder/Deeper/b.txt", "Folder/secret.txt"])

    assert walked.entries == {}
    assert [(p.path, p.reason) for p in walked.problems] == [
        ("Folder", "symlink to a folder: not followed")
    ]
    assert touched.entries == {}
    assert absent == {"Folder/Deeper/b.txt", "Folder/secret.txt"}


def test_a_library_root_that_vanished_is_unreadable_not_empty(tmp_path: Path) -> None:
    result = walk(tmp_path / "ejected", FILTERS)

    assert result.unreadable_dirs == [""]
    assert not result.covers("any/file.pdf")


def nest(top: Path, depth: int, *, sibling: bool = False) -> str:
    """Make `depth` folders inside each other under `top` (os.makedirs itself recurses).

    Each level holds a file; with `sibling`, also a folder beside the next level (so the walk
    must come back to every level after the deepest one). Returns the deepest relative path.
    """
    fd = os.open(top, os.O_RDONLY)
    try:
        for level in range(depth):
            os.mkdir("d", dir_fd=fd)
            if sibling:
                os.mkdir("s", dir_fd=fd)
                side = os.open(f"s/{level}.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd)
                os.close(side)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("deep.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    return "/".join(["d"] * depth)


def flatten(top: Path) -> None:
    """Remove what `nest` made without recursing (shutil.rmtree recurses per level)."""
    level = 0
    while (top / "d").is_dir():
        level += 1
        if (top / "d" / "d").is_dir():
            (top / "d" / "d").rename(top / f"up{level}")
        shutil.rmtree(top / "d")
        if (top / f"up{level}").is_dir():
            (top / f"up{level}").rename(top / "d")


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Path]:
    """A folder for `nest`, emptied again without recursion."""
    yield tmp_path
    flatten(tmp_path)


def test_a_walk_has_no_depth_limit(deep: Path) -> None:
    tmp_path = deep
    deepest = nest(tmp_path, 1100)

    found = walk(tmp_path, FILTERS)
    subtree = walk(tmp_path, FILTERS, "d/d/d")

    assert list(found.entries) == [f"{deepest}/deep.txt"]
    assert list(subtree.entries) == [f"{deepest}/deep.txt"]
    assert found.problems == []


def test_a_deep_walk_comes_back_to_every_level_with_few_descriptors(deep: Path) -> None:
    tmp_path = deep
    depth = 3 * OPEN_FOLDERS  # past the descriptor budget: levels are re-opened from the root
    nest(tmp_path, depth, sibling=True)
    expected = {"/".join(["d"] * level + ["s", f"{level}.txt"]) for level in range(depth)}
    expected.add("/".join(["d"] * depth + ["deep.txt"]))

    found = walk(tmp_path, FILTERS)

    assert set(found.entries) == expected
    assert found.problems == []


def test_a_deep_walk_fits_in_a_small_descriptor_limit(deep: Path) -> None:
    tmp_path = deep
    nest(tmp_path, 1100, sibling=True)
    script = (
        "import resource, sys; from pathlib import Path\n"
        "from objlibd.config import LibrarySettings\n"
        "from objlibd.engine.filters import Filters\n"
        "from objlibd.engine.scanner import walk\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))\n"
        "found = walk(Path(sys.argv[1]), Filters.from_settings(LibrarySettings()))\n"
        "print(found.count, len(found.problems))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1101", "0"]
