"""Run every benchmark in bench/ in turn and print their reports.

Run: .venv/bin/python bench/run.py [name ...] [--option ...]
Names are without .py; default: all but the long ones (`soak`), which run only by name.
Options after the names go to each script run: `bench/run.py soak --minutes 10`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SKIP = {"run.py", "common.py"}
LONG = {"soak"}  # tens of minutes: only when named


def main() -> int:
    args = sys.argv[1:]
    first_option = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    wanted, options = set(args[:first_option]), args[first_option:]
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name not in SKIP and not p.name.startswith("_")
    )
    failed = 0
    for script in scripts:
        if (wanted and script.stem not in wanted) or (not wanted and script.stem in LONG):
            continue
        start = time.monotonic()
        result = subprocess.run([sys.executable, str(script), *options], check=False)
        print(
            f"[{script.stem}: exit {result.returncode}, {time.monotonic() - start:.0f}s]\n",
            flush=True,
        )
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
