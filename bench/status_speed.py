"""`objlibd status` wall time against `python -c pass`, with and without a running daemon.

A 5000-file library on a tmpfs "drive", synced once. Each case runs `status --json` and the
baseline alternately (best of N each, same background load) and prints the ratio:

1. no daemon, nothing changed since the last status (the cache answers: no config load, no
   SQLite) — the budget is under 4x;
2. no daemon, the cache invalidated before every run (the full path: config loaded and
   validated, DB read, volume probed);
3. a running daemon, its own config (the pointer: heartbeat only);
4. a running daemon, the config file edited since it started (the full path, heartbeat facts).

objlibd's modules are byte-compiled first (`compileall`, as `pip install` does): a dev
environment with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module from source
on every run and measure the compiler, not `status`.

Needs root (it mounts a tmpfs). Run: .venv/bin/python bench/status_speed.py [files] [runs]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of_pairs, make_library
from daemon_bench import CONFIG, heartbeat, mount_drive, seed, wait
from objlibd import config as config_module
from objlibd.status import cache as statuscache

CLI = [sys.executable, "-m", "objlibd"]
BUDGET_NO_DAEMON = 4.0


def run(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, check=False)


def measure(conf: Path, runs: int, before: object = None) -> tuple[float, float]:
    """Return (baseline, status) best walls; `before` runs ahead of each status call."""
    status = [*CLI, "status", "--json", "--config", str(conf)]

    def measured() -> None:
        if callable(before):
            before()
        run(status)

    def baseline() -> None:
        if callable(before):
            before()
        run([sys.executable, "-c", "pass"])

    return best_of_pairs(runs, baseline, measured)


def main() -> int:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    if os.geteuid() != 0:
        print("status_speed: needs root to mount a tmpfs; skipped")
        return 0
    import compileall

    import objlibd

    compileall.compile_dir(Path(objlibd.__file__).parent, quiet=1)  # as an install has them
    base = Path(tempfile.mkdtemp(prefix="objlibd-status-bench-"))
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")
    point = mount_drive(base)
    try:
        return bench(base, point, files, runs)
    finally:
        for path in (point, base / "backing"):
            subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def bench(base: Path, point: Path, files: int, runs: int) -> int:
    conf = base / "objlibd.toml"
    conf.write_text(CONFIG.format(point=point, base=base, quiet=1.0))
    config = config_module.load(conf)
    make_library(point / "Library", files)
    seed(config)
    cache = Path(statuscache.cache_file(str(conf)))
    results: dict[str, tuple[float, float]] = {}
    run([*CLI, "status", "--config", str(conf)])  # notes the cache
    probe = subprocess.run([sys.executable, "-X", "importtime", *CLI[1:], "status", "--config",
                            str(conf)], capture_output=True, text=True, check=False)  # fmt: skip
    if "objlibd.config" in probe.stderr:
        print("status_speed: the cache did not answer; the 'cached' case is the full path")
    results["no daemon, cached"] = measure(conf, runs)
    results["no daemon, full path"] = measure(conf, runs, lambda: cache.unlink(missing_ok=True))
    daemon = subprocess.Popen(
        [*CLI, "run", "--config", str(conf)], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait(lambda: heartbeat(config.state.dir).get("last_batch"), 120, 0.2)
        results["daemon, its own config"] = measure(conf, runs)
        time.sleep(0.01)
        conf.write_text(conf.read_text() + "\n# edited while the daemon runs\n")
        results["daemon, config edited"] = measure(conf, runs)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    report(results, files)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    ratios = {name: status / base_s for name, (base_s, status) in results.items()}
    (out / "status.json").write_text(json.dumps({"files": files, "ratios": ratios}, indent=2))
    return 0 if ratios["no daemon, cached"] < BUDGET_NO_DAEMON else 1


def report(results: dict[str, tuple[float, float]], files: int) -> None:
    print(f"`objlibd status --json` vs `python -c pass`, {files}-file library:")
    for name, (base_s, status) in results.items():
        print(f"  {name:<24} {status * 1000:5.0f} ms vs {base_s * 1000:4.0f} ms: "
              f"{status / base_s:4.1f}x")  # fmt: skip
    print(f"  budget without a daemon: < {BUDGET_NO_DAEMON:g}x")


if __name__ == "__main__":
    sys.exit(main())
