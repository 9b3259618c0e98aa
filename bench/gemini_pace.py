"""Gemini backend: a first sync of 500 files against a true request quota (issue #14).

For each true quota (60, 300 and 1,200 requests per minute over a sliding minute, the fake's
`Quota`), a first sync through the real engine and SDK starts from the tier1 guess (20 rpm,
nothing learned yet) and must find the quota by itself. Reported per quota:

* wall time vs the quota bound (quota calls / the true rate; goal >= 0.7x the bound),
* quota 429s per 100 quota calls, and the pace it learned,
* the same sync by an oracle that is told the quota (pace pinned at it) in the same run:
  the baseline that pays the same machine overheads, so the adaptive/oracle ratio shows
  what finding the quota costs.

A quota is per minute, so the runs use one compressed clock for the client and the fake
(`tests/fake_clock.ScaledClock`): every duration the pace, the quota's window and RetryInfo
measure is in that clock's seconds. The factor is chosen per quota so each run takes about
half a minute of real time while the client and the fake keep up with the quota; `--scale`
overrides it (1 = real time).

Run: .venv/bin/python bench/gemini_pace.py [--files 500] [--quotas 60,300,1200] [--scale K]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from common import quiet_logs
from fake_clock import ScaledClock
from fakes.gemini_server import FakeGemini, Quota
from gemini_throughput import make_library
from objlibd import config as config_module
from objlibd.cli.demo import mount_point_of
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.remote.gemini import GeminiStore
from objlibd.state import keys
from objlibd.state.store import StateStore

# Compression per quota: about 30 s of real time per run at 500 files.
SCALE = {60: 32.0, 300: 7.0, 1200: 2.0}
GOAL = 0.7
# The fake finishes an import at its first poll: polling at once keeps the quota, not the
# uploads in flight, the bound (at the default 0.5 s first poll, 4 uploads in flight finish
# at most 8 files/s, 960 quota calls a minute: less than the 1,200 rpm quota).
POLL = 0.02


@dataclass(frozen=True, slots=True)
class Result:
    wall: float  # in the compressed clock's seconds
    quota_calls: int
    refused: int
    learned: dict[str, object] | None
    breaker_trips: int


def run(files: int, quota_rpm: int, scale: float, *, oracle: bool) -> Result:
    """Sync `files` new files against a true quota; the oracle's pace is pinned at it."""
    clock = ScaledClock(scale)
    with (
        tempfile.TemporaryDirectory(prefix="objlibd-bench-") as tmp,
        FakeGemini(quota=Quota(rpm=quota_rpm, clock=clock.clock)) as fake,
    ):
        root = Path(tmp) / "library"
        make_library(root, files)
        pinned = {"rate_limit_rpm": quota_rpm, "rate_limit_max_rpm": quota_rpm} if oracle else {}
        config = config_module.from_mapping(
            {
                "library": {"mount_point": str(mount_point_of(root)), "root": str(root)},
                "store": {"backend": "gemini", "name": "bench"},
                "state": {"dir": f"{tmp}/state"},
                "logs": {"dir": f"{tmp}/logs"},
                "gemini": {"base_url": fake.base_url, "rate_limit_tier": "tier1",
                           "timeout_seconds": 30.0, "poll_interval_seconds": POLL, **pinned},
            },
            source=Path(tmp) / "objlibd.toml",
        )  # fmt: skip
        state = StateStore.open(config.db_path)
        store = GeminiStore(
            config.gemini, "test-key", clock=clock.clock, sleep=clock.sleep,
            stop=threading.Event(), save_pace=lambda pace: state.values.set_json(keys.PACE, pace),
        )  # fmt: skip
        started = clock.clock()
        summary = SyncEngine(config, state, store).run(SyncOptions())
        wall = clock.clock() - started
        assert summary.uploaded == files and summary.exit_code == 0, summary.to_dict()
        trips = int(store.health()["breaker"]["trips"])  # type: ignore[index]
        learned = state.values.get_json(keys.PACE)
        store.close()
        state.close()
        return Result(wall, fake.quota_calls, fake.quota_429s, learned, trips)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--quotas", default="60,300,1200")
    parser.add_argument("--scale", type=float, default=None, help="clock compression (1: real)")
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    quiet_logs()
    quotas = [int(q) for q in args.quotas.split(",")]
    print(f"gemini_pace: first sync of {args.files} small files against a true quota, "
          "starting from tier1 (20 rpm), 4 uploads in flight")  # fmt: skip
    print(f"  {'quota':>6} {'scale':>5} {'calls':>6} {'bound':>7} {'wall':>7} {'ratio':>6} "
          f"{'429/100':>7} {'learned':>8} {'oracle':>7} {'vs':>5} {'trips':>5}")  # fmt: skip
    ok = True
    for quota in quotas:
        scale = args.scale or SCALE.get(quota, max(1.0, 10000.0 / quota))
        paced = run(args.files, quota, scale, oracle=False)
        told = run(args.files, quota, scale, oracle=True)
        bound = paced.quota_calls * 60.0 / quota
        ratio = bound / paced.wall
        per_100 = 100.0 * paced.refused / paced.quota_calls
        learned = (paced.learned or {}).get("rpm", "-")
        print(f"  {quota:>6} {scale:>5g} {paced.quota_calls:>6} {bound:>6.0f}s {paced.wall:>6.0f}s "
              f"{ratio:>5.2f}x {per_100:>7.1f} {learned!s:>8} {told.wall:>6.0f}s "
              f"{told.wall / paced.wall:>4.2f}x {paced.breaker_trips:>5}")  # fmt: skip
        ok = ok and ratio >= GOAL and paced.breaker_trips == 0
    print(f"  (bound = quota calls / true rate; ratio = bound / wall, goal >= {GOAL}; "
          "vs = oracle wall / adaptive wall; times in the compressed clock's seconds)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
