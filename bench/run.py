"""Run every benchmark in bench/ in turn and print their reports.

Run: .venv/bin/python bench/run.py [name ...]   (names without .py; default: all)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SKIP = {"run.py", "common.py"}


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name not in SKIP and not p.name.startswith("_")
    )
    failed = 0
    for script in scripts:
        if wanted and script.stem not in wanted:
            continue
        start = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], check=False)
        print(
            f"[{script.stem}: exit {result.returncode}, {time.monotonic() - start:.0f}s]\n",
            flush=True,
        )
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
