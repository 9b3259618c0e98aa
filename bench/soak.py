"""Soak (issue #16): does the daemon's memory stay flat under hours of churn?

`objlibd run` (local backend) as a subprocess watches a 2,000-file library on a tmpfs drive
mounted at ".../U32 Shadow" while a seeded generator edits, deletes and adds files at a
steady rate (60 % edits, 20 % deletes, 20 % new files; quiet_seconds = 1). Every 30 s it
samples the daemon's RSS, open fds, threads and inotify watches (untraced runs: and where the
heap is, from a heap report: SQLite, the state caches, malloc, pymalloc). After the warm-up and at the
end it asks the daemon for a heap report (`objlibd.runtime.heap`: tracemalloc snapshot, SQLite and
glibc heap counts, tracked structure sizes), waits for the daemon to drain, stops it and
compares the store with the disk: exactly one document per present file (with its bytes'
hash), plus the documents of files marked missing, and nothing else. By default the jobs
(reconcile, orphan cleanup, prune) run every 4 minutes and prune files missing for 4 minutes:
the steady state of a daemon that runs for months (prune bounds the missing files), in minutes.

Prints the samples, RSS growth from the warm-up to the end (target < 5 %: the median of the
first 5 minutes after the warm-up against the median of the last 5, as single samples land
anywhere on the sawtooth of work and trims; the single-sample growth is printed too), whether fds
and threads stayed flat, store = disk, and the top growing allocation sites between the two
snapshots. Exit 1 when a target is missed. Needs root (tmpfs). Tracing inflates RSS with its
own tables: measure RSS with --no-tracemalloc, find sites with tracing on.

Run: .venv/bin/python bench/run.py soak --minutes 30 [--warmup 5] [--rate 10] [--files 2000]
     [--seed 1] [--sample 30] [--jobs-minutes 4] [--frames 4] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from common import compare_store, make_library, tmpfs
from objlibd.runtime import heap

WINDOW_MIN = 5.0  # minutes of samples whose median is compared (first after warm-up vs last)

CONFIG = """
[library]
mount_point = "{point}"
root = "{point}/Library"
[store]
backend = "local"
name = "soak"
[state]
dir = "{state}"
[logs]
dir = "{logs}"
[sync]
quiet_seconds = 1
heartbeat_seconds = 2
{prune}
[jobs]
{jobs}
"""


@dataclass
class Sample:
    minute: float
    rss_mib: float
    fds: int
    threads: int
    watches: int
    ops: int


@dataclass
class Churn:
    """The seeded generator: edits, deletes and new files over a live library."""

    root: Path
    rng: random.Random
    present: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"edit": 0, "delete": 0, "new": 0})
    serial: int = 0

    def __post_init__(self) -> None:
        self.present = sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.txt"))
        self.folders = sorted({str(Path(p).parent) for p in self.present})

    def step(self) -> None:
        self.serial += 1
        roll = self.rng.random()
        if roll < 0.6 and self.present:
            path = self.rng.choice(self.present)
            (self.root / path).write_bytes(self._content())
            self.counts["edit"] += 1
        elif roll < 0.8 and self.present:
            index = self.rng.randrange(len(self.present))
            self.present[index], self.present[-1] = self.present[-1], self.present[index]
            (self.root / self.present.pop()).unlink()
            self.counts["delete"] += 1
        else:
            path = f"{self.rng.choice(self.folders)}/New {self.serial:07d}.txt"
            (self.root / path).write_bytes(self._content())
            self.present.append(path)
            self.counts["new"] += 1

    def _content(self) -> bytes:
        return f"churn {self.serial} {self.rng.random()}\n".encode() * self.rng.randint(1, 40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="measured churn after warm-up")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up minutes")
    parser.add_argument("--rate", type=float, default=10.0, help="operations per second")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--jobs-minutes", type=float, default=4.0,
                        help="period of the reconcile, orphan cleanup and prune jobs, and the age "
                        "at which missing files are pruned (0: the daemon's defaults)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=4, help="tracemalloc frames per block")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS without tracing")
    parser.add_argument("--out", default="soak", help="name of bench/results/<name>.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root to mount a tmpfs; skipped")
        return 0
    base = Path(tempfile.mkdtemp(prefix="objlibd-soak-"))
    with tmpfs(base / "U32 Shadow", "512m") as point, tmpfs(base / "state", "1g") as state:
        code = Soak(args, base, point, state).run()
        if code != 0:  # the state tmpfs goes away: keep its logs and DB for the post-mortem
            shutil.copytree(state, base / "kept-state", ignore=shutil.ignore_patterns("*.snapshot"))
    if code == 0:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"soak: the daemon's output, logs and state are in {base}")
    return code


class Soak:
    def __init__(self, args: argparse.Namespace, base: Path, point: Path, state: Path) -> None:
        self.args = args
        self.base, self.point, self.state = base, point, state
        self.samples: list[Sample] = []
        self.churn: Churn | None = None
        self.proc: psutil.Process | None = None
        self.warm_index = 0
        self.idle_since: float | None = None
        self.last_op = time.time()

    def run(self) -> int:
        args = self.args
        jobs = prune = ""
        if args.jobs_minutes:  # months of jobs in minutes: prune keeps the missing rows bounded
            jobs = "\n".join(f"{name}_minutes = {args.jobs_minutes}"
                             for name in ("reconcile", "orphan_cleanup", "prune"))  # fmt: skip
            prune = f"prune_after_days = {args.jobs_minutes / 1440}"
        conf = self.base / "objlibd.toml"
        conf.write_text(CONFIG.format(point=self.point, state=self.state / "state",
                                      logs=self.state / "logs", jobs=jobs, prune=prune))  # fmt: skip
        make_library(self.point / "Library", args.files, per_dir=100)
        env = dict(os.environ)
        env.pop(heap.ENV, None)
        if not args.no_tracemalloc:
            env[heap.ENV] = str(args.frames)
        with (self.base / "daemon.out").open("wb") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "objlibd", "run", "--config", str(conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            self.proc = psutil.Process(daemon.pid)
            started = time.monotonic()
            if not self._wait(self._caught_up, 600):
                print("soak: the daemon never finished its catch-up; see", self.base / "daemon.out")
                return 1
            print(f"soak: {args.files} files uploaded in {time.monotonic() - started:.0f}s; "
                  f"churn {args.rate:g} ops/s, warm-up {args.warmup:g} min, "
                  f"measured {args.minutes:g} min", flush=True)  # fmt: skip
            self.churn = Churn(self.point / "Library", random.Random(args.seed))
            self._churn()
            self._sample(self.args.warmup + self.args.minutes)
            drained = self._wait(self._drained, 300)
            self._report_heap("end")
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
        return self._report(code, drained)

    # -- the run ----------------------------------------------------------------------------

    def _churn(self) -> None:
        assert self.churn is not None
        rate, warm_s = self.args.rate, self.args.warmup * 60
        total_s = warm_s + self.args.minutes * 60
        start = time.monotonic()
        next_sample, warm_asked, ops = 0.0, False, 0
        while True:
            now = time.monotonic() - start
            if now >= total_s:
                break
            if not warm_asked and now >= warm_s:
                self._sample(now / 60)  # before the report: writing it allocates
                self.warm_index = len(self.samples) - 1
                heap.request(self.state / "state", "warm")
                warm_asked, next_sample = True, now + self.args.sample
            elif now >= next_sample:
                self._sample(now / 60)
                next_sample += self.args.sample
            self.churn.step()
            ops += 1
            delay = start + ops / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the generator's pace, not a test wait
        self.last_op = time.time()

    def _sample(self, minute: float) -> None:
        assert self.proc is not None
        sample = Sample(
            minute=round(minute, 2),
            rss_mib=self.proc.memory_info().rss / 2**20,
            fds=self.proc.num_fds(),
            threads=self.proc.num_threads(),
            watches=inotify_watches(self.proc.pid),
            ops=self.churn.serial if self.churn else 0,
        )
        self.samples.append(sample)
        print(f"  {sample.minute:6.1f} min  RSS {sample.rss_mib:6.1f} MiB  fds {sample.fds:3d}  "
              f"threads {sample.threads:2d}  watches {sample.watches:3d}  "
              f"ops {sample.ops}{self._heap_line()}", flush=True)  # fmt: skip

    def _heap_line(self) -> str:
        """Where the memory is at this sample (untraced runs: a report costs no snapshot)."""
        if not self.args.no_tracemalloc or self.churn is None:
            return ""
        path = self.state / "state" / "heap-sample.json"
        path.unlink(missing_ok=True)
        self._report_heap("sample", timeout=5)
        try:
            facts = json.loads(path.read_text())
        except (OSError, ValueError):
            return "  (no heap report)"
        malloc, held = facts.get("malloc") or {}, facts["sizes"].get("sqlite") or {}
        pymalloc = facts.get("pymalloc") or {}
        caches = "+".join(f"{_mib((held.get(name) or {}).get('cache')):.1f}" for name in held)
        return (f"  sqlite {_mib((facts.get('sqlite') or {}).get('bytes')):4.1f} "
                f"(state caches {caches})  malloc used {_mib(malloc.get('in_use_bytes')):4.1f} "
                f"free {_mib(malloc.get('free_bytes')):4.1f}  pymalloc used "
                f"{_mib(pymalloc.get('in_use_bytes')):4.1f} of {pymalloc.get('arenas', 0)} arenas")  # fmt: skip

    def _heartbeat(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / "state" / "daemon.heartbeat.json").read_text())
        except (OSError, ValueError):
            return {}

    def _caught_up(self) -> bool:
        beat = self._heartbeat()
        return (beat.get("last_batch") or {}).get("trigger") == "mount" and not beat.get("current")

    def _drained(self) -> bool:
        """Idle in two heartbeats in a row, the first written after the last event was due."""
        beat = self._heartbeat()
        fresh = beat.get("updated_epoch", 0) > self.last_op + 3  # quiet 1 s + a heartbeat
        idle = not beat.get("current") and not (beat.get("queue") or {}).get("pending_paths")
        if not (fresh and idle):
            self.idle_since = None
            return False
        if self.idle_since is None:
            self.idle_since = beat["updated_epoch"]
        return bool(beat["updated_epoch"] > self.idle_since)

    def _report_heap(self, label: str, timeout: float = 60) -> None:
        heap.request(self.state / "state", label)
        self._wait((self.state / "state" / f"heap-{label}.json").exists, timeout)

    @staticmethod
    def _wait(predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.25)  # the poll interval of a deadline wait
        return False

    # -- the verdict ------------------------------------------------------------------------

    def _report(self, exit_code: int, drained: bool) -> int:
        state_dir = self.state / "state"
        measured = self.samples[self.warm_index :]
        warm, end = measured[0], measured[-1]
        point_growth = (end.rss_mib - warm.rss_mib) / warm.rss_mib * 100
        # RSS is a sawtooth (work allocates, the trim after it gives back; the jobs every few
        # minutes peak): single samples land anywhere on it. The verdict compares the median
        # of the first WINDOW minutes after the warm-up with the median of the last WINDOW.
        window = max(1, round(WINDOW_MIN * 60 / self.args.sample))
        first = statistics.median(s.rss_mib for s in measured[:window])
        last = statistics.median(s.rss_mib for s in measured[-window:])
        growth = (last - first) / first * 100
        third = max(1, len(measured) // 3)
        fds_flat = max(s.fds for s in measured[-third:]) <= max(s.fds for s in measured[:third])
        threads_flat = max(s.threads for s in measured[-third:]) <= max(
            s.threads for s in measured[:third]
        )
        store = compare_store(state_dir, self.point / "Library", "soak")
        assert self.churn is not None
        print(f"\nsoak: {self.churn.serial} operations {self.churn.counts}; daemon exit {exit_code}; "
              f"drained {drained}")  # fmt: skip
        print(f"RSS median {first:.1f} MiB over the {WINDOW_MIN:g} min after the warm-up -> "
              f"{last:.1f} MiB over the last {WINDOW_MIN:g}: {growth:+.1f} % (target < 5 %)")  # fmt: skip
        print(f"  single samples: {warm.rss_mib:.1f} MiB at the warm-up point -> {end.rss_mib:.1f} "
              f"MiB at the end ({point_growth:+.1f} %); peak "
              f"{max(s.rss_mib for s in measured):.1f} MiB")  # fmt: skip
        if not self.args.no_tracemalloc:
            print("  (traced: RSS includes tracemalloc's own tables; the RSS target is for a run "
                  "with --no-tracemalloc, the Python heap line below is the traced verdict)")  # fmt: skip
        print(f"fds {min(s.fds for s in measured)}..{max(s.fds for s in measured)} "
              f"(flat: {fds_flat}); threads {min(s.threads for s in measured)}.."
              f"{max(s.threads for s in measured)} (flat: {threads_flat}); inotify watches "
              f"{warm.watches} -> {end.watches}")  # fmt: skip
        print(f"store vs disk: {store}")
        heap_diff(state_dir)
        ok = growth < 5 and fds_flat and threads_flat and store["equal"] and exit_code == 0
        results = {"args": vars(self.args), "ops": self.churn.counts, "rss_growth_percent": growth,
                   "rss_point_growth_percent": point_growth,
                   "fds_flat": fds_flat, "threads_flat": threads_flat, "store": store,
                   "samples": [vars(s) for s in self.samples], "ok": ok, "drained": drained}  # fmt: skip
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / f"{self.args.out}.json").write_text(json.dumps(results, indent=2))
        print(f"soak: {'PASS' if ok else 'FAIL'} (results in bench/results/{self.args.out}.json)")
        return 0 if ok else 1


def _mib(value: int | None) -> float:
    return (value or 0) / 2**20


def inotify_watches(pid: int) -> int:
    """Count the inotify watches the process holds (from /proc/<pid>/fdinfo)."""
    count = 0
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            count += info.read_text().count("inotify wd:")
        except OSError:
            continue
    return count


def heap_diff(state_dir: Path) -> None:
    """Print the daemon's heap facts and the top growing allocation sites, warm -> end."""
    try:
        warm = json.loads((state_dir / "heap-warm.json").read_text())
        end = json.loads((state_dir / "heap-end.json").read_text())
    except OSError as err:
        print(f"heap reports missing: {err}")
        return
    mib = 2**20

    def pair(a: int | None, b: int | None) -> str:
        return "n/a" if a is None or b is None else f"{a / mib:.2f} -> {b / mib:.2f} MiB"

    print(f"python traced {pair(warm['tracemalloc']['bytes'], end['tracemalloc']['bytes'])}; "
          f"sqlite {pair((warm['sqlite'] or {}).get('bytes'), (end['sqlite'] or {}).get('bytes'))}; "
          f"malloc in use {pair((warm['malloc'] or {}).get('in_use_bytes'), (end['malloc'] or {}).get('in_use_bytes'))}, "
          f"free kept {pair((warm['malloc'] or {}).get('free_bytes'), (end['malloc'] or {}).get('free_bytes'))}, "
          f"arenas {pair((warm['malloc'] or {}).get('arena_bytes'), (end['malloc'] or {}).get('arena_bytes'))}")  # fmt: skip
    print(f"tracked sizes at warm-up {warm['sizes']}\n                 at end {end['sizes']}")
    if warm["objects"] and end["objects"]:
        grown = {k: end["objects"][k] - warm["objects"].get(k, 0) for k in end["objects"]}
        top = sorted(grown.items(), key=lambda kv: -abs(kv[1]))[:8]
        print("live objects by type, end - warm:", ", ".join(f"{k} {v:+d}" for k, v in top))
    snaps = [state_dir / f"heap-{label}.snapshot" for label in ("warm", "end")]
    if not all(path.exists() for path in snaps):
        print("no tracemalloc snapshots (run without --no-tracemalloc)")
        return
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
              tracemalloc.Filter(False, "<unknown>")]  # fmt: skip
    before, after = (tracemalloc.Snapshot.load(str(p)).filter_traces(ignore) for p in snaps)
    stats = sorted(after.compare_to(before, "lineno"), key=lambda s: s.size_diff, reverse=True)
    print("top growing allocation sites (warm -> end):")
    for stat in stats[:15]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks "
              f"(now {stat.size / 1024:7.1f} KiB)  {short(frame.filename)}:{frame.lineno}")  # fmt: skip
    for stat in after.compare_to(before, "traceback")[:3]:
        print(f"  {stat.size_diff / 1024:+.1f} KiB from:")
        for line in stat.traceback.format(most_recent_first=True)[:8]:
            print(f"      {line.strip()}")


def short(filename: str) -> str:
    for marker in ("site-packages/", "daemon/", "lib/python3."):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


if __name__ == "__main__":
    sys.exit(main())
