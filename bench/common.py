"""Shared bench helpers: timing, a generated library, a store that skips the byte copies,
a tmpfs mount, and the check that the store holds exactly what the disk does."""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from objlibd.models import FileStatus
from objlibd.remote.base import Checkpoint, RemoteDoc, UploadRequest
from objlibd.remote.local import LocalStore
from objlibd.state.store import StateStore


def quiet_logs() -> None:
    """Keep benchmark output to the report: warnings only, on stderr."""
    import dataclasses

    from objlibd import logs
    from objlibd.config import LogSettings

    logs.setup(dataclasses.replace(LogSettings(), level="warning"), console=True, to_file=False)


def wall(action: Callable[[], object]) -> float:
    """Return the wall time of one call."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def best_of(runs: int, action: Callable[[], object]) -> float:
    """Return the fastest wall time of `runs` calls (noise only ever adds time)."""
    return min(wall(action) for _ in range(runs))


def best_of_pairs(
    runs: int, baseline: Callable[[], object], measured: Callable[[], object]
) -> tuple[float, float]:
    """Return the fastest wall times of `baseline` and `measured`, run alternately.

    Alternating puts both under the same background load (writeback, other tenants), so
    their ratio is fair on a noisy machine.
    """
    pairs = [(wall(baseline), wall(measured)) for _ in range(runs)]
    return min(base for base, _ in pairs), min(measured for _, measured in pairs)


def make_library(root: Path, count: int, per_dir: int = 250) -> None:
    """Write `count` small files, `per_dir` per folder, two levels deep."""
    for index in range(count):
        folder = root / f"Collection {index // (per_dir * 20):02d}" / f"Part {index // per_dir:04d}"
        if index % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"Lecture {index:06d}.txt").write_bytes(b"lecture %d\n" % index)


@contextlib.contextmanager
def tmpfs(point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs at `point` (needs root); unmount it (lazily) on the way out."""
    point.mkdir(parents=True, exist_ok=True)
    argv = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)]
    subprocess.run(argv, check=True, capture_output=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def bare_walk(root: str) -> int:
    """The floor: os.scandir + stat of every file, nothing else."""
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)
                    count += 1
    return count


def peak_rss_mb_children() -> float:
    """Peak RSS of waited-for child processes, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class MetadataOnlyStore(LocalStore):
    """The local store without the byte copies: seeds a big synced state quickly."""

    def upload(self, request: UploadRequest, checkpoint: Checkpoint | None = None) -> RemoteDoc:
        return RemoteDoc(
            doc_id=f"{self._store_id}/documents/{request.sha256[:12]}-{abs(hash(request.rel_path))}",
            display_name=request.display_name,
            metadata=dict(request.metadata),
            size=request.size,
        )


def compare_store(state_dir: Path, root: Path, store_name: str) -> dict[str, Any]:
    """Exactly one document per present file (its bytes), missing files' documents, no more."""
    disk = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.txt")
    }
    state = StateStore.open(state_dir / "objlibd.db", readonly=True)
    records = state.files.all_records()
    state.close()
    store = LocalStore(state_dir / "local-store")
    store.ensure_store(store_name)
    docs: dict[str, list[tuple[str, str]]] = {}
    for doc in store.list_docs():
        docs.setdefault(doc.path or "", []).append((doc.doc_id, doc.sha256 or ""))
    wrong = [p for p, sha in disk.items() if [h for _, h in docs.get(p, [])] != [sha]]
    missing = {p: r for p, r in records.items() if p not in disk}
    kept = sum(1 for r in missing.values() if r.status is FileStatus.MISSING and r.remote_id)
    not_marked = [
        p for p, r in missing.items() if r.remote_id and r.status is not FileStatus.MISSING
    ]
    extra = [
        doc_id
        for path, found in docs.items()
        for doc_id, _ in found
        if path not in disk and (path not in missing or missing[path].remote_id != doc_id)
    ]
    return {
        "equal": not wrong and not extra and not not_marked,
        "present_files": len(disk),
        "documents": sum(len(found) for found in docs.values()),
        "missing_with_documents": kept,
        "present_without_exactly_one_matching_document": wrong[:10],
        "absent_with_document_not_marked_missing": not_marked[:10],
        "documents_nothing_accounts_for": extra[:10],
    }
