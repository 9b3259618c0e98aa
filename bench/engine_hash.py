"""SHA-256 of a 1 GiB file: objlibd vs `sha256sum` and `openssl dgst -sha256` on the same file.

Target (issue #2): >= 0.9x the throughput of the strongest baseline measured in this run.
Run: .venv/bin/python bench/engine_hash.py [--mib N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import best_of
from objlibd.engine.disk import sha256_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="objlibd-bench-") as tmp:
        target = Path(tmp) / "big.bin"
        with target.open("wb") as handle:
            block = os.urandom(1 << 20)
            for _ in range(args.mib):
                handle.write(block)
        expected = sha256_file(target)  # also warms the page cache
        baselines = {}
        for name, argv in (("sha256sum", ["sha256sum", str(target)]),
                           ("openssl", ["openssl", "dgst", "-sha256", str(target)])):  # fmt: skip
            if shutil.which(argv[0]):
                out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
                assert expected in out, (name, out)
                baselines[name] = best_of(
                    3, lambda a=argv: subprocess.run(a, check=True, capture_output=True)
                )
        ours = best_of(3, lambda: sha256_file(target))
    strongest = min(baselines, key=baselines.__getitem__)
    print(f"engine_hash: SHA-256 of {args.mib} MiB (best of 3, warm cache)")
    for name, seconds in sorted(baselines.items()):
        print(f"  {name:<12} {args.mib / seconds:8.0f} MiB/s")
    print(f"  {'objlibd':<12} {args.mib / ours:8.0f} MiB/s")
    print(
        f"  ratio vs {strongest:<9} {baselines[strongest] / ours:6.2f} x throughput (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
