"""Bad input gets a clear message, the rest of the library still syncs, nothing is lost.

The table below is issue #10's cases 4-14, through the CLI (and the daemon) as a user meets
them: per row the exit code, a message that names the fix, no traceback, and the store and
the state DB unchanged (or, for a damaged DB, rebuilt to the same rows). Daemon rows start
`objlibd run`, do the damage while it runs, and require the daemon to live on while
`objlibd status` names the problem. Real files, real SQLite, real mounts (as root a tiny
tmpfs is the full state disk, a read-only one the unwritable state dir).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from daemon_fixtures import (
    DaemonProcess,
    Drive,
    log_events,
    objlibd,
    read_heartbeat,
    status_json,
    unmount,
    wait_for,
)
from engine_fixtures import Env, make_config, make_library, write_config_file
from objlibd.cli.demo import mount_point_of
from objlibd.engine.sync import SyncOptions
from objlibd.models import FileStatus
from test_scanner import flatten, nest


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
    assert env.state.files.record(paths[3]) is None


def test_a_file_over_max_file_mb_is_skipped_with_its_size(env: Env) -> None:
    env.reconfigure()
    from dataclasses import replace

    env.config = replace(env.config, library=replace(env.config.library, max_file_mb=0.001))
    from objlibd.engine.sync import SyncEngine

    env.engine = SyncEngine(env.config, env.state, env.store, clock=env.clock)
    (env.root / "small.txt").write_text("ok", encoding="utf-8")
    (env.root / "big.pdf").write_bytes(b"x" * 5000)

    summary = env.engine.run(SyncOptions())

    assert summary.skipped == 1
    record = env.state.files.record("big.pdf")
    assert record is not None
    assert record.status is FileStatus.SKIPPED
    assert "larger than max_file_mb" in (record.last_error or "")
    assert {d.path for d in env.store.list_docs()} == {"small.txt"}


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


# -- issue #10, cases 4-14: one row each ------------------------------------------------------

STORE = "test-store"
AS_ROOT = os.geteuid() == 0


@dataclass
class World:
    """A library, its config, state and log dirs, and what the store and DB hold."""

    tmp: Path
    root: Path
    mount: Path
    extra: str = ""
    sync_extra: str = ""
    state_name: str = "state"
    logs_at: Path | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.tmp / self.state_name

    @property
    def logs(self) -> Path:
        return self.logs_at or self.tmp / "logs"

    @property
    def config(self) -> Path:
        path = self.tmp / "objlibd.toml"
        path.write_text(
            f'[library]\nmount_point = "{self.mount}"\nroot = "{self.root}"\n'
            f'[store]\nbackend = "local"\nname = "{STORE}"\n'
            f'[state]\ndir = "{self.state}"\n[logs]\ndir = "{self.logs}"\n'
            "[sync]\nquiet_seconds = 0.3\nmax_wait_seconds = 2.0\nvolume_poll_seconds = 0.3\n"
            f"heartbeat_seconds = 0.3\n{self.sync_extra}\n{self.extra}",
            encoding="utf-8",
        )
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return objlibd(*args, "--config", str(self.config), timeout=120)

    def sync(self) -> None:
        done = self.cli("sync")
        assert done.returncode == 0, done.stdout + done.stderr

    @property
    def db(self) -> Path:
        return self.state / "objlibd.db"

    def docs(self) -> list[tuple[str, str, str]] | None:
        """(path, sha256, doc id) of every document in the local store; None if none exists."""

        registry = self.state / "local-store" / "stores.json"
        if not registry.exists():
            return None
        folder = registry.parent / json.loads(registry.read_text())[STORE].split("/", 1)[1]
        found = []
        for doc in sorted((folder / "docs").glob("*.json")):
            data = json.loads(doc.read_text())
            meta = data["customMetadata"]
            found.append((meta["path"], meta["sha256"], data["name"]))
        return sorted(found)

    def rows(self) -> list[tuple[Any, ...]] | None:
        """The DB's files as (path, status, content hash, document); None if there is no DB."""
        if not self.db.exists():
            return None
        uri = f"{self.db.as_uri()}?immutable=1"  # reads without writing a byte (full disks)
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            try:
                return conn.execute(
                    "SELECT path, status, content_hash, remote_id FROM files ORDER BY path"
                ).fetchall()
            except sqlite3.DatabaseError as err:
                return [("unreadable", str(err))]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = tmp_path / "library"
    make_library(root, 6)
    made = World(tmp_path, root, mount_point_of(root))
    yield made
    for cleanup in reversed(made.cleanups):
        cleanup()


def mount_tmpfs(world: World, where: Path, options: str) -> None:
    if not AS_ROOT:
        pytest.skip("needs root to mount a tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    world.cleanups.append(lambda: unmount(where, lazy=True))


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its disk is full."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    for index in range(64):  # the last partial blocks
        with contextlib.suppress(OSError), (folder / f"filler{index}").open("wb") as handle:
            handle.write(b"\0" * 512)
            handle.flush()


def garble(db: Path) -> None:
    """Garble every page after the first: the header is intact, the tables are not."""
    data = bytearray(db.read_bytes())
    for index in range(4096, len(data)):
        data[index] = (data[index] * 31 + 7 + index) % 256
    db.write_bytes(bytes(data))


# -- the rows -----------------------------------------------------------------------------------


def fresh(world: World) -> None:
    """Nothing synced yet."""


def synced(world: World) -> None:
    world.sync()


def garble_table(db: Path, table: str) -> None:
    """Garble the pages of one table's b-tree: the header and the other tables are intact."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    data = bytearray(db.read_bytes())
    start = (root - 1) * size
    for index in range(start, start + size):
        data[index] = (data[index] * 31 + 7 + index) % 256
    db.write_bytes(bytes(data))


def damaged_db(world: World) -> None:
    """The files table's pages garbled; library_config (which library, which store) readable."""
    world.sync()
    garble_table(world.db, "files")


def damaged_beyond_salvage(world: World) -> None:
    """Every page after the header garbled: not even the library's id can be read back."""
    world.sync()
    state = sqlite3.connect(world.db)  # enough pages that garbling reaches every table
    with state:
        state.executemany(
            "INSERT INTO library_config(key, value) VALUES (?, ?)",
            [(f"filler.{i}", "x" * 300) for i in range(100)],
        )
    state.close()
    garble(world.db)


def deep_folders(world: World) -> None:
    nest(world.root, 1100)
    world.cleanups.append(lambda: flatten(world.root))


def bad_number(key: str, value: str) -> Callable[[World], None]:
    def act(world: World) -> None:
        table, name = key.split(".")
        if table == "sync":
            world.sync_extra = f"{name} = {value}"
        else:
            world.extra = f"[{table}]\n{name} = {value}\n"

    return act


def uncreatable_log_dir(world: World) -> None:
    (world.tmp / "a-file").write_text("not a folder", encoding="utf-8")
    world.logs_at = world.tmp / "a-file" / "logs"


def read_only_state_dir(world: World) -> None:
    world.sync()
    mount_tmpfs(world, world.tmp / "ro-state", "ro,size=1m")
    world.state_name = "ro-state"


def full_state_disk(world: World) -> None:
    mount_tmpfs(world, world.state, "size=8m")
    world.sync()
    fill(world.state)
    (world.root / "Course 0" / "new after the disk filled.txt").write_text("new", "utf-8")


def zombie_owner(world: World) -> None:
    world.sync()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    assert wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10)
    (world.state / "objlibd.pid").write_text(
        f'{{"pid": {child.pid}, "create_time": {created}, "started_at": 1.0}}', "utf-8"
    )
    world.cleanups.append(child.wait)


def newline_in_a_name(world: World) -> None:
    (world.root / "Course 0" / "two\nlines.txt").write_text("tricky", encoding="utf-8")
    world.sync()


def kill_9_leftovers(world: World) -> None:
    world.sync()
    registry = (world.state / "local-store" / "stores.json").read_text()
    folder = world.state / "local-store" / registry.split('"')[3].split("/", 1)[1]
    old = time.time() - 3600
    for leftover in (folder / "blobs" / "lost-0123456789ab.bin", folder / "docs" / ".x.json.1.tmp",
                     folder / "blobs" / ".y.bin.tmp"):  # fmt: skip
        leftover.write_bytes(b"left behind by kill -9")
        os.utime(leftover, (old, old))


@dataclass(frozen=True)
class Row:
    case: int
    name: str
    setup: Callable[[World], None]
    argv: tuple[str, ...]
    code: int
    says: str  # in stdout or stderr: what happened or what to do
    store_and_db: str = "unchanged"  # or "rebuilt" (same rows again), or "synced"
    root: bool = False


ROWS = [
    Row(4, "dry-run-cleanup-orphans-fresh", fresh, ("sync", "--dry-run", "--cleanup-orphans"),
        0, "dry run: nothing was changed"),
    Row(4, "dry-run-cleanup-orphans-synced", synced, ("sync", "--dry-run", "--cleanup-orphans"),
        0, "dry run: nothing was changed"),
    Row(5, "store-list-fresh", fresh, ("store", "list"), 0, "nothing synced yet"),
    Row(8, "damaged-db-sync", damaged_db, ("sync",), 0, "was damaged", "rebuilt"),
    Row(8, "damaged-db-status", damaged_db, ("status",), 1, "rebuilt from the store"),
    Row(8, "damaged-db-missing", damaged_beyond_salvage, ("missing",), 2, "rebuilt from the store"),
    Row(8, "damaged-beyond-salvage", damaged_beyond_salvage, ("sync",), 3,
        "objlibd marker --adopt", "store unchanged"),
    Row(9, "deep-folders-sync", deep_folders, ("sync",), 0, "uploaded", "synced"),
    Row(10, "nan", bad_number("sync.mass_missing_percent", "nan"), ("sync",), 2,
        "[sync] mass_missing_percent: must be a finite number"),
    Row(10, "inf", bad_number("jobs.reconcile_minutes", "inf"), ("run",), 2,
        "[jobs] reconcile_minutes: must be a finite number"),
    Row(10, "huge", bad_number("sync.prune_after_days", "999999"), ("sync",), 2,
        "[sync] prune_after_days: must be at most 3650"),
    Row(11, "uncreatable-log-dir", uncreatable_log_dir, ("run",), 2, "mkdir -p"),
    Row(11, "read-only-state-dir", read_only_state_dir, ("sync",), 2,
        "cannot write in the state dir", root=True),
    Row(12, "state-disk-full-sync", full_state_disk, ("sync",), 1, "free some space", root=True),
    Row(13, "zombie-owns-the-pidfile", zombie_owner, ("sync",), 0, "sync finished"),
    Row(14, "newline-in-a-name", newline_in_a_name, ("store", "list"), 0, "two\\nlines.txt"),
    Row(14, "kill-9-leftovers", kill_9_leftovers, ("sync", "--cleanup-orphans"), 0,
        "sync finished"),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.case}-{r.name}" for r in ROWS])
def test_bad_input_through_the_cli(world: World, row: Row) -> None:
    if row.root and not AS_ROOT:
        pytest.skip("needs root to mount a tmpfs")
    row.setup(world)
    before = (world.docs(), world.rows())

    done = world.cli(*row.argv)

    output = done.stdout + done.stderr
    assert done.returncode == row.code, output
    assert row.says in output, output
    assert "Traceback" not in output, output
    after = (world.docs(), world.rows())
    if row.store_and_db == "unchanged":
        assert after == before
    elif row.store_and_db == "store unchanged":
        assert after[0] == before[0], "the store: not one upload, not one delete"
    elif row.store_and_db == "rebuilt":
        assert after[0] == before[0], "the store: not one upload, not one delete"
        assert after[1] is not None and {r[0] for r in after[1]} == set(world_paths(world))
        assert all(status == "uploaded" for _, status, _, _ in after[1])
        assert {(p, h, d) for p, _, h, d in after[1]} == set(after[0] or [])
        assert list(world.state.glob("objlibd.db.damaged-*")), "the damaged DB is kept"
    else:
        assert {p for p, _, _ in after[0] or []} == set(world_paths(world))
    if row.name == "newline-in-a-name":
        assert len(done.stdout.splitlines()) == 7, done.stdout  # one line per document
    if row.name == "kill-9-leftovers":
        assert not [p for p in world.state.rglob("*") if "lost-" in p.name or p.suffix == ".tmp"]
    if row.setup is fresh:
        assert not world.state.exists(), "nothing created: no state dir, no DB, no store"


def world_paths(world: World) -> list[str]:
    from daemon_fixtures import disk_files

    return list(disk_files(world.root))


def test_state_and_its_files_are_private(world: World) -> None:
    world.sync()
    folder = next((world.state / "local-store").glob("*-*"))

    private = [world.state, world.db, next((folder / "blobs").iterdir()),
               next((folder / "docs").iterdir()), folder / "blobs"]  # fmt: skip

    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private}
    assert modes == {p.name: "0o700" if p.is_dir() else "0o600" for p in private}


def test_a_rebuild_holds_what_it_finds_missing(world: World) -> None:
    damaged_db(world)
    for path in world_paths(world):
        (world.root / path).unlink()  # every file gone while the DB was damaged
    before = world.docs()

    done = world.cli("sync")

    assert "HELD" in done.stdout, done.stdout + done.stderr
    assert world.docs() == before, "nothing deleted"
    rows = world.rows() or []
    assert {status for _, status, _, _ in rows} == {"uploaded"}, "held, not marked missing"
    assert {p for p, _, _, _ in rows} == {p for p, _, _ in before or []}


# -- the daemon: damage while it runs; it lives on and status names the problem ---------------


@dataclass(frozen=True)
class DaemonRow:
    case: int
    name: str
    before: Callable[[World], None]  # before the daemon starts
    during: Callable[[World], None]  # while it runs
    problem: str  # in `objlibd status --json`'s problem (or the rebuilt note)


def deep_library(world: World) -> None:
    deep_folders(world)


def add_a_file(world: World) -> None:
    (world.root / "added while running.txt").write_text("new", encoding="utf-8")


def nothing(world: World) -> None:
    """The damage was done before the start."""


def fill_the_state_disk(world: World) -> None:
    fill(world.state)
    add_a_file(world)


def tiny_state_disk(world: World) -> None:
    mount_tmpfs(world, world.state, "size=8m")


DAEMON_ROWS = [
    DaemonRow(8, "damaged-db", damaged_db, nothing, "documents adopted"),
    DaemonRow(9, "deep-folders", deep_library, add_a_file, "file watch cannot start"),
    DaemonRow(12, "state-disk-full", tiny_state_disk, fill_the_state_disk, "state disk full"),
]


@pytest.mark.e2e
@pytest.mark.mount
@pytest.mark.parametrize("row", DAEMON_ROWS, ids=[f"{r.case}-{r.name}" for r in DAEMON_ROWS])
def test_bad_input_while_the_daemon_runs(
    tmp_path: Path, drive: Drive, daemons: list[DaemonProcess], row: DaemonRow
) -> None:
    make_library(drive.root, 6)
    made = World(tmp_path, drive.root, drive.mount_point)
    try:
        row.before(made)
        daemon = DaemonProcess(made.config, tmp_path / "daemon.out").start()
        daemons.append(daemon)
        daemon.wait_running()
        row.during(made)

        def named() -> bool:
            snap = status_json(made.config)
            rebuilt = snap.get("state_rebuilt") or {}
            said = " ".join(p["message"] for p in snap["problems"])
            text = f"{said} {rebuilt.get('adopted')} documents adopted"
            return snap["daemon"]["running"] and row.problem in text

        assert wait_for(named, 30, interval=0.2), (status_json(made.config), tail(daemon))
        if row.name == "deep-folders":  # reconciled on a timer instead of watched
            assert wait_for(lambda: "added while running.txt" in str(made.docs()), 30, interval=0.2)
        if row.name == "state-disk-full":  # space back: it carries on by itself
            for filler in made.state.glob("filler*"):
                filler.unlink()
            assert wait_for(lambda: "added while running.txt" in str(made.docs()), 30, interval=0.2)
            assert wait_for(lambda: status_json(made.config)["healthy"], 30, interval=0.2)
        seen = read_heartbeat(made.state).get("updated_epoch", 0.0)
        assert wait_for(  # heartbeats go on for a second more: alive, saying so, quietly
            lambda: read_heartbeat(made.state).get("updated_epoch", 0.0) > seen + 1.0, 10
        ), tail(daemon)
        assert not daemon.exited(), tail(daemon)
        assert status_json(made.config)["daemon"]["running"]
        events = [e["event"] for e in log_events(made.logs)]
        assert events.count("state.disk_full") <= 1 and "heartbeat.write_failed" not in events
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (made.logs / "objlibd.jsonl",
                 made.state / "daemon.heartbeat.json", made.state, made.logs)}  # fmt: skip
        assert modes == {"objlibd.jsonl": 0o600, "daemon.heartbeat.json": 0o600,
                         made.state.name: 0o700, made.logs.name: 0o700}  # fmt: skip
        code, _ = daemon.stop()
        assert code == 0, tail(daemon)
        assert "Traceback" not in tail(daemon)
    finally:
        for cleanup in reversed(made.cleanups):
            cleanup()


def tail(daemon: DaemonProcess) -> str:
    return daemon.output.read_text(errors="replace")[-3000:]


# -- case 5 with the gemini backend: store list neither creates nor deletes -------------------


@pytest.mark.e2e
def test_store_list_on_gemini_creates_nothing_and_deletes_no_failed_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakes.gemini_server import Behaviour, FakeGemini, Faults
    from test_gemini_sync import FAKE_KEY, make_site
    from test_gemini_sync import objlibd as gemini_cli

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    behaviour = Behaviour(api_key=FAKE_KEY, failed_import_keeps_document=True)
    with FakeGemini(behaviour, Faults(retry_delay="0.02s")) as fake:
        site = make_site(tmp_path, fake, 3)

        fresh = gemini_cli(site, "store", "list")

        assert fresh.returncode == 0, fresh.stderr
        assert "nothing synced yet" in fresh.stderr
        assert (fake.count("stores.create"), site.state_dir.exists()) == (0, False)

        fake.fail_imports_of(site.paths[0])
        synced = gemini_cli(site, "sync")
        assert synced.returncode == 1, synced.stdout + synced.stderr  # the one failed import
        kept = len(fake.documents())
        deletes = fake.count("documents.delete")

        listed = gemini_cli(site, "store", "list")

    assert listed.returncode == 0, listed.stderr
    assert "(import failed)" in listed.stdout
    assert "Traceback" not in listed.stderr
    assert (fake.count("documents.delete"), len(fake.documents())) == (deletes, kept)


def test_a_rebuild_keeps_the_document_that_holds_what_the_disk_holds(env: Env) -> None:
    """Two documents for one path (an old and a current one): adopt the current, sweep the old."""
    import hashlib

    from objlibd.engine.sync import SyncEngine
    from objlibd.remote.base import UploadRequest
    from objlibd.state.store import StateStore

    paths = make_library(env.root, 4)
    env.engine.run(SyncOptions())
    stale = env.root.parent / "stale.txt"
    stale.write_text("what the file held last year", encoding="utf-8")
    digest = hashlib.sha256(stale.read_bytes()).hexdigest()
    old = env.store.upload(UploadRequest(stale, paths[0], digest, stale.stat().st_size,
                                         "text/plain", (("path", paths[0]), ("sha256", digest))))  # fmt: skip
    current = {p: next(i for i in ids if i != old.doc_id) for p, ids in env.docs_by_path().items()}
    env.state.close()
    garble_table(env.config.db_path, "files")

    env.state = StateStore.open(env.config.db_path, repair=True)
    engine = SyncEngine(env.config, env.state, env.store, clock=env.clock)
    summary = engine.run(SyncOptions(cleanup_orphans=True))

    assert (summary.uploaded, summary.replaced, summary.adopted) == (0, 0, 4)
    assert {r.path: r.remote_id for r in env.state.files.all_records().values()} == current
    assert env.docs_by_path() == {p: [doc] for p, doc in current.items()}, "the old one swept"


@pytest.mark.parametrize("order", ["old first", "current first"])
def test_a_rebuild_chooses_by_content_whatever_the_listing_order(env: Env, order: str) -> None:
    import hashlib

    from objlibd.engine import rebuild
    from objlibd.remote.base import RemoteDoc

    (env.root / "a.txt").write_text("now", encoding="utf-8")
    now = hashlib.sha256(b"now").hexdigest()
    docs = [RemoteDoc("old", "a.txt", {"path": "a.txt", "sha256": "0" * 64}),
            RemoteDoc("current", "a.txt", {"path": "a.txt", "sha256": now})]  # fmt: skip
    listing = docs if order == "old first" else docs[::-1]

    assert rebuild.choose(env.config, "a.txt", listing).doc_id == "current"


def test_a_rebuild_beyond_salvage_waits_for_the_person_to_adopt_the_drive(world: World) -> None:
    damaged_beyond_salvage(world)
    before = world.docs()

    refused = world.cli("sync")  # the new DB knows no library: the drive's marker is foreign
    adopted = world.cli("marker", "--adopt")
    synced = world.cli("sync")

    assert (refused.returncode, adopted.returncode, synced.returncode) == (3, 0, 0), (
        refused.stderr + adopted.stdout + adopted.stderr + synced.stderr
    )
    assert world.docs() == before, "not one upload, not one delete"
    rows = world.rows() or []
    assert {(p, h, d) for p, _, h, d in rows} == set(before or [])
