"""The state database: schema, migrations, constraints, triggers, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from objlibd.errors import StateError
from objlibd.models import FileStatus, Listing
from objlibd.state import migrations
from objlibd.state.store import StateStore


def columns(db: Path, table: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_fresh_database_gets_the_whole_schema(tmp_path: Path) -> None:
    db = tmp_path / "objlibd.db"

    state = StateStore.open(db)

    assert state.db.schema_version == migrations.LATEST
    assert {
        "path", "content_hash", "size", "mtime_ns", "status", "remote_id", "remote_file_id",
        "upload_hash", "enrichment_version", "orphaned_remote_id", "missing_since", "attempts",
        "last_error", "created_at", "updated_at",
    } <= columns(db, "files")  # fmt: skip
    assert {"kind", "status", "done", "total", "counts", "error", "retry_count", "started_at",
            "finished_at"} <= columns(db, "jobs")  # fmt: skip
    assert {"key", "value"} <= columns(db, "library_config")
    assert {"kind", "detail", "decided_at"} <= columns(db, "decisions")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    state.close()


def test_migrating_again_is_a_no_op(tmp_path: Path) -> None:
    db = tmp_path / "objlibd.db"
    StateStore.open(db).close()
    conn = sqlite3.connect(db, isolation_level=None)

    applied = migrations.migrate(conn, db)

    assert applied == 0
    assert not list(tmp_path.glob("*.bak-*"))
    conn.close()


def test_an_older_database_migrates_with_its_rows_kept_and_a_backup_made(tmp_path: Path) -> None:
    db = tmp_path / "objlibd.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrations.migrate(conn, db, upto=1)
    conn.execute("INSERT INTO files(path, status, content_hash) VALUES ('a.txt', 'uploaded', 'h')")
    conn.execute("INSERT INTO library_config(key, value) VALUES ('store_name', 's')")
    conn.close()

    state = StateStore.open(db)

    assert state.db.schema_version == migrations.LATEST
    assert state.files.record("a.txt").status is FileStatus.UPLOADED  # type: ignore[union-attr]
    assert state.values.get_config("store_name") == "s"
    assert (tmp_path / "objlibd.db.bak-v1").exists()
    state.jobs.start_job("sync")
    state.close()


def test_status_is_enforced_by_check_constraint() -> None:
    state = StateStore.memory()

    with pytest.raises(sqlite3.IntegrityError), state.db.transaction() as conn:
        conn.execute("INSERT INTO files(path, status) VALUES ('x', 'bogus')")


def test_status_changes_are_logged_and_updated_at_is_touched(tmp_path: Path) -> None:
    state = StateStore.open(tmp_path / "objlibd.db")
    state.files.begin_upload("a.txt", "h1", 1, 1)
    state.files.record_uploaded("a.txt", remote_id="d1", remote_file_id=None, upload_hash="h1",
                          enrichment_version="v", replaced_remote_id=None)  # fmt: skip
    state.files.mark_missing(["a.txt"], "2026-01-01T00:00:00.000Z")

    rows = state.db.query(
        "SELECT old_status, new_status FROM status_log ORDER BY id"
    )  # test reads the log table directly

    assert [tuple(r) for r in rows] == [
        (None, "uploading"),
        ("uploading", "uploaded"),
        ("uploaded", "missing"),
    ]
    state.close()


def test_a_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "objlibd.db"
    db.write_bytes(b"this is not a database" * 100)

    with pytest.raises(StateError) as caught:
        StateStore.open(db)

    assert "is damaged: file is not a database" in caught.value.message
    assert "moved aside" in caught.value.hint
    assert db.read_bytes().startswith(b"this is not"), "the evidence is kept"


def garble_pages(db: Path) -> None:
    """Overwrite every page after the first: the header stays intact, the tables do not."""
    data = bytearray(db.read_bytes())
    for index in range(4096, len(data)):
        data[index] = (data[index] * 31 + 7 + index) % 256
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbled pages", "not a database"])
def test_a_writer_moves_a_damaged_database_aside_and_starts_fresh(
    tmp_path: Path, damage: str
) -> None:
    db = tmp_path / "objlibd.db"
    state = StateStore.open(db)
    for index in range(200):
        state.values.set_config(f"filler.{index}", "x" * 300)
    state.close()
    if damage == "garbled pages":
        garble_pages(db)
    else:
        db.write_bytes(b"this is not a database" * 100)
    evidence = db.read_bytes()

    fresh = StateStore.open(db, repair=True)

    assert fresh.db.rebuilt is not None
    kept = Path(fresh.db.rebuilt["moved_to"])
    assert kept.name.startswith("objlibd.db.damaged-")
    assert kept.read_bytes() == evidence, "the damaged file is kept as it was"
    assert fresh.values.get_config("filler.1") is None
    assert fresh.values.get_json("state.rebuilt")["moved_to"] == str(kept)
    assert fresh.db.integrity_check() == "ok"
    fresh.close()
    again = StateStore.open(db, repair=True)
    assert again.db.rebuilt is None, "a healthy database is left alone"
    again.close()


def test_a_database_from_a_newer_objlibd_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "objlibd.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")

    with pytest.raises(StateError) as caught:
        StateStore.open(db)

    assert "newer" in caught.value.message


def test_readonly_open_of_a_missing_database_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        StateStore.open(tmp_path / "nope.db", readonly=True)

    assert "objlibd sync" in caught.value.hint


def test_readers_see_writes_while_the_writer_is_open(tmp_path: Path) -> None:
    db = tmp_path / "objlibd.db"
    writer = StateStore.open(db)
    reader = StateStore.open(db, readonly=True)
    writer.files.record_skipped("big.pdf", "too big", 1, 1)

    counts = reader.files.counts_by_status()

    assert counts["skipped"] == 1
    reader.close()
    writer.close()


# -- the walk cache: trusted only for the exact files table it was checked against ----------


def generation(state: StateStore) -> int:
    generation = state.walk.index().generation
    assert generation is not None
    return generation


@pytest.mark.parametrize(
    ("write", "bumps"),
    [
        (lambda s: s.files.begin_upload("new.txt", "h", 1, 1), True),  # insert
        (
            lambda s: s.files.record_failure("a.txt", FileStatus.FAILED, "boom"),
            True,
        ),  # upsert: status
        (lambda s: s.files.record_stat("a.txt", 2, 2), True),  # size and mtime
        (lambda s: s.files.mark_missing(["a.txt"], "2026-01-01T00:00:00.000Z"), True),
        (lambda s: s.files.forget(["a.txt"]), True),  # delete
        (
            lambda s: s.files.record_orphan("a.txt", "old-doc"),
            False,
        ),  # not a column the index reads
        (lambda s: s.values.set_config("k", "v"), False),
    ],
)
def test_every_change_the_index_can_see_moves_the_generation(
    write: Callable[[StateStore], object], bumps: bool
) -> None:
    state = StateStore.memory()
    state.files.begin_upload("a.txt", "h", 1, 1)
    before = generation(state)

    write(state)

    assert (generation(state) != before) is bumps


def test_a_saved_walk_is_returned_with_the_unsettled_files_until_a_file_row_changes() -> None:
    state = StateStore.memory()
    state.files.begin_upload("a.txt", "h", 1, 1)
    folders: dict[str, Listing] = {"": (["a.txt"], [1], [1])}
    assert state.walk.cached_walk() is None

    assert state.walk.save_walk(folders, generation(state))
    assert state.walk.cached_walk() == (folders, {"a.txt": "uploading"})

    state.files.record_stat("a.txt", 1, 2)
    assert state.walk.cached_walk() is None


def test_a_walk_checked_against_an_older_generation_is_not_saved() -> None:
    state = StateStore.memory()
    state.files.begin_upload("a.txt", "h", 1, 1)
    seen = generation(state)
    state.files.record_stat("a.txt", 1, 2)  # a write between the index read and the save

    assert not state.walk.save_walk({"": (["a.txt"], [1], [1])}, seen)
    assert state.walk.cached_walk() is None


def test_an_unreadable_cached_walk_is_ignored_not_fatal() -> None:
    state = StateStore.memory()
    state.walk.save_walk({}, generation(state))
    with state.db.transaction() as conn:
        conn.execute("UPDATE walk_cache SET listing = x'ff00ff'")

    assert state.walk.cached_walk() is None


def test_a_readers_data_version_changes_only_when_another_connection_commits(
    tmp_path: Path,
) -> None:
    """What the daemon's heartbeat keys its DB facts on (a one-shot CLI is another writer)."""
    writer = StateStore.open(tmp_path / "state.db")
    reader = StateStore.open(tmp_path / "state.db", readonly=True)
    try:
        first = reader.db.data_version()
        reader.files.counts_by_status()
        quiet = reader.db.data_version()
        writer.values.set_config("note", "changed elsewhere")
        changed = reader.db.data_version()
    finally:
        reader.close()
        writer.close()

    assert first == quiet != changed


def test_a_reader_meeting_a_database_not_migrated_yet_gets_a_clear_error(tmp_path: Path) -> None:
    """The daemon creates the file, then migrates it; `status` may look in between."""
    db = tmp_path / "objlibd.db"
    sqlite3.connect(db).close()  # created, nothing in it yet

    with pytest.raises(StateError, match="is being created"):
        StateStore.open(db, readonly=True)
