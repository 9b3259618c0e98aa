"""The rule above all, as a hypothesis state machine on real tmpfs drives.

The real daemon worker (the single writer) drives the real engine and the embedded store on
a real tmpfs "USB drive" bind-mounted at a path with a space in its name. Hypothesis picks
random sequences of what a person and a flaky drive do: add / edit / delete / restore files
(on the drive, mounted or not, as another computer would), delete many, rename a folder,
unmount, yank (lazy detach, also in the middle of an upload), remount, swap in a foreign or
an empty volume, mount one of the three beside the mount point ("U32 Shadow 1", where
objlibd looks for its marker when the mount point has not got it), confirm, pause / resume, full reconcile, incremental batch, prune. The
daemon's volume view is refreshed only by its own step, so it can be stale, as it is
between two polls.

After every step:
 (i)   nothing is marked missing unless it really left our library, and nothing at all
       while our drive is not mounted (at the mount point, or beside it);
 (ii)  no absence above the limits is marked without a recorded confirmation;
 (iii) after a completed full reconcile, a hold exists exactly when that view shows an
       unconfirmed mass absence (and holds exactly those files);
 (iv)  after a completed reconcile + orphan cleanup, the store holds one document per
       present file (with its content) plus those of missing and held files, nothing else;
 (v)   nothing outside the library root is read or written: a canary off the drive (on a
       strictatime tmpfs, linked from inside the library) keeps its atime and bytes, the
       drive's top level, the foreign drive and its marker stay as they were;
 (vi)  after a completed reconcile + orphan cleanup, a renamed file has its one document
       under its new path: no document holds its content under a path it moved away from
       (a rename is a move, never a missing file with a 7-day duplicate).

`OBJLIBD_SAFETY_EXAMPLES` / `OBJLIBD_SAFETY_STEPS` raise the budget (bench/safety_soak.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine_fixtures import make_config
from fake_clock import FakeClock
from objlibd.config import LibrarySettings
from objlibd.engine import volume
from objlibd.engine.filters import Filters
from objlibd.engine.hold import Hold, mass_reason
from objlibd.engine.missing import limits_of
from objlibd.engine.scanner import walk
from objlibd.engine.sync import SyncEngine
from objlibd.models import Batch, FileStatus
from objlibd.remote.base import Checkpoint, RemoteDoc, UploadRequest
from objlibd.remote.local import LocalStore
from objlibd.runtime.work import Work
from objlibd.runtime.worker import Worker
from objlibd.state import keys
from objlibd.state.store import StateStore

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount tmpfs drives"),
]

LIB = "Objectivism Library"
EXAMPLES = int(os.environ.get("OBJLIBD_SAFETY_EXAMPLES", "150"))
STEPS = int(os.environ.get("OBJLIBD_SAFETY_STEPS", "30"))
DRAIN = 30.0


def _run(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def _tmpfs(point: Path, *options: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=16m", *options))
    _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class YankingStore(LocalStore):
    """The embedded store, able to pull the drive out in the middle of a batch's uploads."""

    def __init__(self, root: Path, yank: Callable[[], None]) -> None:
        super().__init__(root)
        self._yank = yank
        self.armed: int | None = None
        self.yanked = False

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        if self.armed is not None:
            if self.armed == 0:
                self.armed = None
                self.yanked = True
                self._yank()
            else:
                self.armed -= 1
        return super().upload(request, checkpoint)


class WatchedEngine(SyncEngine):
    """The real engine; the test notes when it took a full view of the library."""

    full_views = 0

    def _full(self, *args: Any, **kwargs: Any) -> None:
        self.full_views += 1
        super()._full(*args, **kwargs)


@dataclass
class Before:
    """What the DB said before a step."""

    statuses: dict[str, FileStatus]
    present: int
    decisions: int
    hold: Hold | None
    full_views: int


class SafetyMachine(RuleBasedStateMachine):
    """See the module doc."""

    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="objlibd safety "))
        self.mounts: list[Path] = []
        self.point = self.base / "U32 Shadow"
        self.point.mkdir()
        # The disks live off to the side: a mount beside the mount point carrying our marker
        # would be found and used (a drive that mounted as "U32 Shadow 1").
        self.backing = {name: self.base / "disks" / name for name in ("ours", "foreign", "empty")}
        for path in [*self.backing.values(), self.base / "state", self.base / "outside"]:
            _tmpfs(path, "strictatime") if path.name == "outside" else _tmpfs(path)
            self.mounts.append(path)
        self.ours = self.backing["ours"] / LIB
        self.ours.mkdir()
        self.canary = self.base / "outside" / "secret.txt"
        self.canary.write_bytes(b"never read me\n")
        self.top = self.backing["ours"] / "top level.txt"
        self.top.write_bytes(b"outside the root, on the drive\n")
        self._make_foreign()
        (self.backing["empty"] / LIB).mkdir()
        self.trash: dict[str, bytes] = {}
        self.renamed: dict[str, tuple[str, tuple[str, ...]]] = {}  # new: (sha256, old paths)
        self.counter = 0
        self.mounted: str | None = None
        self.beside: str | None = None  # what is mounted at "U32 Shadow 1"
        self.beside_point = self.base / "U32 Shadow 1"
        self.beside_point.mkdir()
        self.completed_full = False
        self.checked_store = False
        self.paused = False

    # -- setup -----------------------------------------------------------------------------

    def _make_foreign(self) -> None:
        root = self.backing["foreign"] / LIB
        root.mkdir()
        (root / "Their lecture.txt").write_text("another library\n", encoding="utf-8")
        marker = volume.Marker(volume.new_library_id(), store="theirs")
        volume.write_marker(_library(root, self.backing["foreign"]), marker)
        self.foreign_marker = (root / ".objlibd-library").read_bytes()

    @initialize(count=st.integers(8, 30), seed=st.integers(0, 2**16))
    def start(self, count: int, seed: int) -> None:
        self.rng = random.Random(seed)
        for index in range(count):
            self._write(f"Course {index % 4}/Lecture {index:03d}.txt")
        links = self.ours / "Links"
        links.mkdir()
        (links / "secret.txt").symlink_to(self.canary)
        self._mount("ours")
        state_dir = self.base / "state" / "objlibd"
        self.config = make_config(
            self.point / LIB, state_dir, mount_point=self.point,
            mass_missing_files=12, mass_missing_percent=30.0, mass_missing_min_files=3,
        )  # fmt: skip
        self.clock = FakeClock(1_800_000_000.0)
        self.state = StateStore.open(self.config.db_path)
        self.store = YankingStore(self.config.state.dir / "local-store", self._yank)
        self.store.ensure_store(self.config.store.name)
        self.secret = _sha(self.canary.read_bytes())
        self.canary_stat = self.canary.stat()
        self.stop = threading.Event()
        self.engine = WatchedEngine(self.config, self.state, self.store, clock=self.clock)
        self.worker = Worker(self.config, self.state, self.engine, self.stop, dict)
        self._monitor()
        self.worker.start()
        self.before = self._snapshot()
        self._submit(Work.reconcile("first sync"))  # most of what matters comes after it

    def teardown(self) -> None:
        worker = getattr(self, "worker", None)
        if worker is not None:
            self.stop.set()
            worker.finish(10)
            self.state.close()
        for point in [self.point, self.beside_point, *reversed(self.mounts)]:
            while os.path.ismount(point):
                with contextlib.suppress(subprocess.CalledProcessError):
                    _run("umount", "-l", str(point))
        shutil.rmtree(self.base, ignore_errors=True)

    # -- the drive ---------------------------------------------------------------------------

    def _mount(self, which: str) -> None:
        _run("mount", "--bind", str(self.backing[which]), str(self.point))
        self.mounted = which

    def _yank(self) -> None:
        _run("umount", "-l", str(self.point))
        self.mounted = None

    @precondition(lambda self: self.mounted is not None)
    @rule()
    def unmount(self) -> None:
        _run("umount", str(self.point))
        self.mounted = None

    @precondition(lambda self: self.mounted is not None)
    @rule()
    def yank(self) -> None:
        self._yank()

    @precondition(lambda self: self.mounted is None)
    @rule(which=st.sampled_from(["ours", "ours", "foreign", "empty"]))
    def mount(self, which: str) -> None:
        self._mount(which)

    @precondition(lambda self: self.beside is None)
    @rule(which=st.sampled_from(["ours", "foreign", "empty"]))
    def mount_beside(self, which: str) -> None:
        _run("mount", "--bind", str(self.backing[which]), str(self.beside_point))
        self.beside = which

    @precondition(lambda self: self.beside is not None)
    @rule()
    def unmount_beside(self) -> None:
        _run("umount", "-l", str(self.beside_point))
        self.beside = None

    @property
    def reachable(self) -> bool:
        """Is our drive mounted where objlibd looks (at the mount point, or beside it)?"""
        return "ours" in (self.mounted, self.beside)

    @rule()
    def monitor(self) -> None:
        """The daemon's volume poll: until it runs, the worker's view may be stale."""
        self._monitor()

    def _monitor(self) -> None:
        self.worker.set_volume(
            volume.probe(self.config.library, self.state.values.get_config(keys.LIBRARY_ID))
        )

    @rule(after=st.integers(0, 3))
    def yank_during_next_uploads(self, after: int) -> None:
        self.store.armed = after

    # -- a person with files (on the drive itself, mounted here or elsewhere) -------------------

    def _files(self) -> list[str]:
        return sorted(walk(self.ours, Filters.from_settings(self.config.library)).entries)

    def _write(self, rel: str) -> None:
        target = self.ours / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        self.counter += 1
        target.write_bytes(f"{rel} v{self.counter}\n".encode() * (1 + self.counter % 5))

    @rule(index=st.integers(0, 99))
    def add(self, index: int) -> None:
        self._write(f"Course {index % 5}/Added {index:02d}.txt")

    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        files = self._files()
        if files:
            self._write(data.draw(st.sampled_from(files)))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        files = self._files()
        if files:
            self._delete(data.draw(st.sampled_from(files)))

    def _delete(self, rel: str) -> None:
        target = self.ours / rel
        self.trash[rel] = target.read_bytes()
        target.unlink()

    @rule(share=st.floats(0.3, 1.0))
    def delete_many(self, share: float) -> None:
        files = self._files()
        for rel in self.rng.sample(files, int(len(files) * share)):
            self._delete(rel)

    @rule(share=st.floats(0.2, 1.0), full=st.booleans())
    def delete_many_then_sync(self, share: float, full: bool) -> None:
        """The common disaster: a folder dragged to the bin, then the daemon notices."""
        files = self._files()
        gone = self.rng.sample(files, int(len(files) * share))
        for rel in gone:
            self._delete(rel)
        if full:
            self.full_reconcile()
        else:
            self._submit(Work.of(Batch(paths=frozenset(gone))))

    @rule(data=st.data(), everything=st.booleans())
    def restore(self, data: st.DataObject, everything: bool) -> None:
        if not self.trash:
            return
        chosen = (
            sorted(self.trash) if everything else [data.draw(st.sampled_from(sorted(self.trash)))]
        )
        for rel in chosen:
            target = self.ours / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.trash.pop(rel))

    @rule(course=st.integers(0, 4))
    def rename_folder(self, course: int) -> None:
        folder = self.ours / f"Course {course}"
        if folder.is_dir():
            self.counter += 1
            target = f"Course {course} moved {self.counter}"
            for path in folder.rglob("*.txt"):
                old = path.relative_to(self.ours).as_posix()
                sha = _sha(path.read_bytes())
                was_sha, olds = self.renamed.pop(old, (sha, ()))
                chain = (*olds, old) if was_sha == sha else (old,)
                self.renamed[f"{target}/{old.split('/', 1)[1]}"] = (sha, chain)
            folder.rename(self.ours / target)

    # -- the daemon ------------------------------------------------------------------------------

    def _submit(self, *work: Work) -> None:
        self.store.yanked = False
        for item in work:
            self.worker.submit(item)
        assert self.worker.drain(DRAIN), "the worker did not finish its work"

    @rule()
    def full_reconcile(self) -> None:
        self._submit(Work.reconcile("test"))
        self.completed_full = self._completed()

    @rule()
    def reconcile_and_cleanup(self) -> None:
        self._submit(Work.reconcile("test"), Work.scheduled("orphan_cleanup"))
        self.completed_full = self.checked_store = self._completed()

    @rule(data=st.data(), subtree=st.booleans())
    def batch(self, data: st.DataObject, subtree: bool) -> None:
        known = sorted({*self._files(), *self.trash, *self.state.files.all_records()})
        paths = data.draw(st.sets(st.sampled_from(known), max_size=8)) if known else set()
        rescan = (
            {data.draw(st.sampled_from([f"Course {i}" for i in range(5)]))} if subtree else set()
        )
        self._submit(Work.of(Batch(paths=frozenset(paths), rescan=frozenset(rescan))))

    @rule()
    def confirm(self) -> None:
        hold = Hold.from_json(self.state.values.get_json(keys.HOLD))
        self._submit(Work.confirm_missing(hold.revision if hold else None))

    @rule()
    def pause(self) -> None:
        self.worker.set_paused(True)
        self.paused = True

    @precondition(lambda self: self.paused)
    @rule()
    def resume(self) -> None:
        self.worker.set_paused(False)
        self.paused = False
        self._submit(Work.resume())

    @rule()
    def prune_a_week_later(self) -> None:
        self.clock.advance_days(8)
        self._submit(Work.scheduled("prune"))

    def _completed(self) -> bool:
        """Did the last full reconcile see the whole of our library (nothing parked)?"""
        return (
            self.reachable
            and self.worker.status.volume.available
            and not self.paused
            and not self.store.yanked
            and self.worker.parked_paths == 0
        )

    # -- invariants --------------------------------------------------------------------------------

    def _snapshot(self) -> Before:
        records = self.state.files.all_records()
        return Before(
            {path: r.status for path, r in records.items()},
            self.state.files.count_present(),
            len(self.state.jobs.decisions()),
            Hold.from_json(self.state.values.get_json(keys.HOLD)),
            self.engine.full_views,
        )

    @invariant()
    def the_rule_above_all(self) -> None:
        if not hasattr(self, "worker"):
            return
        before, now = self.before, self._snapshot()
        on_disk = set(self._files())
        self._check_marking(before, now, on_disk)  # (i), (ii)
        self._check_hold(before, now, on_disk)  # (iii)
        if self.checked_store:  # (iv), (vi)
            event("store checked")
            self.checked_store = False
            self._check_store(on_disk, now.hold)
            self._check_moves(on_disk)
        self._check_outside()  # (v)
        if self.store.yanked:
            event("yanked mid-upload")
        self.before = now

    def _check_marking(self, before: Before, now: Before, on_disk: set[str]) -> None:
        believed = {p for p, s in before.statuses.items() if s in _BELIEVED_PRESENT}
        missing = FileStatus.MISSING
        gone = {p for p in believed if now.statuses.get(p, missing) is missing}
        # (i) only what really left our library, and nothing unless our drive was there
        assert not gone & on_disk, f"marked missing but present: {sorted(gone & on_disk)[:5]}"
        if not self.reachable:
            where = f"{self.mounted} mounted, {self.beside} beside"
            assert not gone, f"marked missing with {where}: {sorted(gone)[:5]}"
        # (ii) above the limits only with a recorded confirmation
        if now.decisions != before.decisions:
            event("confirmed")
        else:
            reason = mass_reason(len(gone), before.present, limits_of(self.config))
            assert reason is None, f"marked without confirmation: {reason}"
        if gone:
            event("marked missing")

    def _check_hold(self, before: Before, now: Before, on_disk: set[str]) -> None:
        hold = now.hold
        if hold is not None:
            event("a hold stands")
        by_batch = now.full_views == before.full_views and now.decisions == before.decisions
        if before.hold is not None and by_batch:  # a batch never clears or shrinks a hold
            assert hold is not None, "a hold was cleared without a full view or a person"
            assert set(before.hold.paths) <= set(hold.paths), "a batch shrank the hold"
        if not self.completed_full:
            return
        # (iii) after a completed full view: a hold exactly when it shows a mass absence
        event("full view checked")
        self.completed_full = False
        absent = {p for p, s in now.statuses.items() if s in _BELIEVED_PRESENT and p not in on_disk}
        if hold is None:
            assert not absent, f"absent, neither marked nor held: {sorted(absent)[:5]}"
        else:
            assert set(hold.paths) == absent
            assert mass_reason(len(absent), hold.present_before, limits_of(self.config))

    def _check_store(self, on_disk: set[str], hold: Hold | None) -> None:
        records = self.state.files.all_records()
        docs: dict[str, list[str]] = {}
        for doc in self.store.list_docs():
            docs.setdefault(doc.path or "?", []).append(doc.sha256 or "")
        kept = {p for p, r in records.items() if r.status is FileStatus.MISSING and r.remote_id}
        # A held file keeps its document; one that never reached the store has none to keep.
        held = {p for p in (hold.paths if hold else ()) if p in records and records[p].remote_id}
        expected = on_disk | kept | held
        assert set(docs) == expected, (
            f"store {sorted(set(docs) ^ expected)[:5]} differs from disk + missing + held"
        )
        for path, shas in docs.items():
            assert len(shas) == 1, f"{path}: {len(shas)} documents"
            if path in on_disk:
                assert shas[0] == _sha((self.ours / path).read_bytes()), f"{path}: stale content"

    def _check_moves(self, on_disk: set[str]) -> None:
        docs = {(d.path, d.sha256) for d in self.store.list_docs()}
        for new, (sha, olds) in self.renamed.items():
            if new not in on_disk or _sha((self.ours / new).read_bytes()) != sha:
                continue  # edited or gone since: not a move any more
            event("a renamed file checked")
            for old in olds:
                if old not in on_disk:
                    assert (old, sha) not in docs, f"{new}: a duplicate left under {old}"

    def _check_outside(self) -> None:
        seen = self.canary.stat()
        assert seen.st_atime_ns == self.canary_stat.st_atime_ns, "the canary off the drive was read"
        assert seen.st_mtime_ns == self.canary_stat.st_mtime_ns
        assert self.top.read_bytes() == b"outside the root, on the drive\n"
        foreign = self.backing["foreign"] / LIB
        assert (foreign / ".objlibd-library").read_bytes() == self.foreign_marker
        assert sorted(p.name for p in foreign.iterdir()) == [
            ".objlibd-library",
            "Their lecture.txt",
        ]
        assert list((self.backing["empty"] / LIB).iterdir()) == [], "wrote on the empty drive"
        assert self.secret not in {d.sha256 for d in self.store.list_docs()}


_BELIEVED_PRESENT = {
    FileStatus.PENDING, FileStatus.UPLOADING, FileStatus.UPLOADED, FileStatus.FAILED,
    FileStatus.ERROR,
}  # fmt: skip


def _library(root: Path, mount: Path) -> LibrarySettings:
    return LibrarySettings(root=root, mount_point=mount)


SafetyMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    # A fixed seed: CI runs the same sequences every time (bench/safety_soak.py --random not).
    derandomize=not os.environ.get("OBJLIBD_SAFETY_RANDOM"),
    database=None,
    print_blob=True,  # a failure prints @reproduce_failure(...) to replay it exactly
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSafetyMachine = SafetyMachine.TestCase


def test_regression_a_yank_while_our_drive_is_also_mounted_beside_fails_no_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the soak: the mount point yanked mid-upload while the same drive is mounted
    beside it. The engine moves on to the drive there; a read that failed at the old place
    must leave the file for the next run, not record it as failed."""
    monkeypatch.setattr(f"{__name__}.event", lambda *_args, **_kwargs: None)
    state = SafetyMachine()
    try:
        state.start(count=8, seed=0)
        state.yank_during_next_uploads(after=0)
        state.reconcile_and_cleanup()
        state.mount_beside(which="ours")
        state.rename_folder(course=0)
        state.reconcile_and_cleanup()
        state.the_rule_above_all()
        counts = state.state.files.counts_by_status()
        assert (counts["error"], counts["failed"]) == (0, 0)
        state.delete_many_then_sync(full=False, share=1.0)
        state.reconcile_and_cleanup()
        state.the_rule_above_all()
    finally:
        state.teardown()
