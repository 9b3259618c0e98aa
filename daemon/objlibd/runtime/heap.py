"""The daemon's memory, on request: tracemalloc snapshots and the allocators' own counts.

Off by default and free when off. `OBJLIBD_TRACEMALLOC=1` (or a number: frames kept per
allocation) in the daemon's environment starts tracemalloc before anything is built. Any
time, `objlibd` or a bench drops a request file `heap.request` in the state dir holding a
label (e.g. `warm`); within a second the daemon writes `heap-<label>.snapshot` (a
tracemalloc dump, only while tracing) and then `heap-<label>.json`: RSS, the traced Python
heap, SQLite's own heap, glibc's arenas (`mallinfo2`, Linux only), pymalloc's arenas, the
live objects per type (only while tracing: counting them allocates) and the daemon's tracked
in-memory structures (`Monitor.sizes()`, with each state connection's SQLite share). Diff
two snapshots with `tracemalloc.Snapshot.load(a).compare_to(Snapshot.load(b), "lineno")`,
as `bench/soak.py` does.

SQLite and glibc are not seen by tracemalloc (they call malloc directly), hence their
counts here; both are read through ctypes and simply left out where a platform has none.
`trim` gives glibc's free pages back to the OS (the daemon's monitor calls it after work).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import gc
import json
import os
import re
import sys
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from objlibd.state import sqlitememory

ENV = "OBJLIBD_TRACEMALLOC"
REQUEST_NAME = "heap.request"
_LABEL = re.compile(r"[^A-Za-z0-9_-]+")
TOP_TYPES = 25


def start_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """Start tracemalloc when `OBJLIBD_TRACEMALLOC` asks for it; return whether it runs."""
    value = environ.get(ENV, "").strip()
    if not value or value == "0":
        return False
    frames = int(value) if value.isdigit() else 1
    if not tracemalloc.is_tracing():
        tracemalloc.start(max(1, frames))
    return True


M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers in glibc's malloc.h
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, kept fixed


def tune_malloc(arenas: int = ARENAS) -> bool:
    """Set glibc's malloc up for a resident process; return whether it could (glibc only).

    - At most `arenas` arenas (`MALLOC_ARENA_MAX=2`): glibc gives each thread that allocates
      concurrently its own arena (up to 8 per core), and a batch's short-lived threads
      (uploads, the watcher, the scheduler) left free holes in each.
    - A fixed mmap threshold (`MALLOC_MMAP_THRESHOLD_=131072`): glibc raises the threshold to
      the size of each large block freed, so after the first big batch its large buffers
      (listings, row lists, file bytes) come from the heap too, where a long-lived neighbour
      pins their pages after they are freed. Fixed, every block of 128 KiB or more is mapped
      on its own and unmapped when freed.
    Set before the threads start. An explicit variable in the environment wins.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    done = True
    if "MALLOC_ARENA_MAX" not in os.environ:
        done = bool(libc.mallopt(M_ARENA_MAX, arenas)) and done
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and done
    return done


def trim() -> bool:
    """Hand the allocator's free pages back to the OS; return whether it could (glibc only).

    glibc keeps what a batch freed inside its heaps (one per thread that allocated), so RSS
    ratchets up with fragmentation although nothing is alive; `malloc_trim(0)` returns every
    whole free page. A few milliseconds; the daemon calls it when work has run since the last.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def request(state_dir: Path, label: str) -> None:
    """Ask the daemon using `state_dir` for a heap report named `label`."""
    (state_dir / REQUEST_NAME).write_text(label, encoding="utf-8")


def answer_request(state_dir: Path, sizes: Callable[[], dict[str, Any]]) -> Path | None:
    """Write the report a request file asks for; return the JSON written (None: no request)."""
    path = state_dir / REQUEST_NAME
    try:
        label = _LABEL.sub("", path.read_text(encoding="utf-8").strip())[:40] or "now"
    except FileNotFoundError:
        return None
    path.unlink(missing_ok=True)
    if tracemalloc.is_tracing():
        tmp = state_dir / f".heap-{label}.snapshot.tmp"
        tracemalloc.take_snapshot().dump(str(tmp))
        tmp.replace(state_dir / f"heap-{label}.snapshot")
    target = state_dir / f"heap-{label}.json"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(report(sizes()), indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(target)
    return target


def report(sizes: dict[str, Any]) -> dict[str, Any]:
    """Return the process's memory facts and the daemon's structure `sizes`."""
    traced, peak = tracemalloc.get_traced_memory()
    return {
        "pid": os.getpid(),
        "rss_bytes": _rss_bytes(),
        "threads": threading.active_count(),
        "tracemalloc": {"tracing": tracemalloc.is_tracing(), "bytes": traced, "peak": peak},
        "sqlite": sqlitememory.sqlite_heap(),
        "malloc": _mallinfo(),
        "pymalloc": _pymalloc(),
        "objects": _object_counts() if tracemalloc.is_tracing() else None,
        "sizes": sizes,
    }


_PYMALLOC_FACTS = {
    "# arenas allocated current": "arenas",
    "# arenas highwater mark": "arenas_highwater",
    "# bytes in allocated blocks": "in_use_bytes",
    "# bytes in available blocks": "free_in_pools_bytes",
}


def _pymalloc() -> dict[str, int] | None:
    """Python's small-object allocator: its 1 MiB arenas (mapped on their own, so neither
    malloc nor tracemalloc counts them), the bytes in use and the bytes free inside used
    pools (None where CPython has no pymalloc). An arena goes back only when wholly empty, so
    arenas far above in-use bytes are fragmentation. CPython prints these facts only to the
    C stderr: fd 2 points at a temporary file for the ~1 ms of the call."""
    if sys.implementation.name != "cpython" or not hasattr(sys, "_debugmallocstats"):
        return None
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
            capture.seek(0)
            text = capture.read().decode("ascii", errors="replace")
    finally:
        os.close(saved)
    facts: dict[str, int] = {}
    for line in text.splitlines():
        label, _, value = line.partition("=")
        if (key := _PYMALLOC_FACTS.get(label.strip())) is not None:
            facts[key] = int(value.strip().replace(",", ""))
    return facts or None


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:  # noqa: PTH123
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None  # not Linux: the heartbeat's rss_mb (psutil) still says


def _object_counts() -> dict[str, int]:
    counts = collections.Counter(type(obj).__name__ for obj in gc.get_objects())
    return dict(counts.most_common(TOP_TYPES))


def _library(name: str) -> ctypes.CDLL | None:
    found = ctypes.util.find_library(name)
    try:
        return ctypes.CDLL(found) if found else None
    except OSError:
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _libc() -> ctypes.CDLL | None:
    return _library("c") if sys.platform.startswith("linux") else None


def _mallinfo() -> dict[str, int] | None:
    """glibc's heap: bytes in arenas, in use, free-but-kept, mmapped (None off glibc)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {
        "arena_bytes": int(info.arena),
        "in_use_bytes": int(info.uordblks),
        "free_bytes": int(info.fordblks),
        "mmapped_bytes": int(info.hblkhd),
        "top_releasable_bytes": int(info.keepcost),
    }
