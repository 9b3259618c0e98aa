"""A longer run of the rule-above-all state machine (tests/test_safety_machine.py).

CI runs it with a fixed seed and a small budget; this runs many more random sequences on
real tmpfs drives (root needed) and prints what they covered. A failure prints hypothesis'
shrunk sequence of steps, ready to paste into a regression test.

Run: .venv/bin/python bench/safety_soak.py [--examples N] [--steps N] [--random]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--random", action="store_true", help="a new seed instead of CI's")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("safety_soak: needs root to mount tmpfs drives; skipped")
        return 0
    env = dict(
        os.environ,
        OBJLIBD_SAFETY_EXAMPLES=str(args.examples),
        OBJLIBD_SAFETY_STEPS=str(args.steps),
        OBJLIBD_SAFETY_RANDOM="1" if args.random else "",
    )
    argv = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--basetemp", "/tmp/objlibd-safety-soak", "tests/test_safety_machine.py",
        "--hypothesis-show-statistics", "--timeout", "0",  # the suite's per-test cap is 300 s
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    events = re.findall(r"\* +([\d.]+)%, (.+)", done.stdout)
    print(f"safety soak: {args.examples} sequences of up to {args.steps} steps in {seconds:.0f}s")
    for share, name in events:
        if not name.startswith(("Retried", "gave up")):
            print(f"  {float(share):5.1f} % of sequences: {name}")
    verdict = "all invariants held" if done.returncode == 0 else "AN INVARIANT FAILED"
    print(f"  {verdict} (pytest exit {done.returncode})")
    if done.returncode != 0:
        report = Path("/tmp/objlibd-safety-soak.log")
        report.write_text(done.stdout + done.stderr, encoding="utf-8")
        steps = done.stdout.find("Falsifying example")
        print(done.stdout[steps : steps + 6000] if steps >= 0 else done.stdout[-6000:])
        print(f"  full output: {report}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
