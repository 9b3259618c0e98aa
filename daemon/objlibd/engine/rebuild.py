"""After a damaged state DB was started over: adopt what the store and the drive know.

`Database.open(repair=True)` moves a damaged DB aside and starts a fresh one marked
keys.REBUILT, keeping the library and store identity if the damaged file still yields them
(otherwise the drive's marker is foreign to the new DB: `objlibd marker --adopt` says it is
ours, never objlibd on its own). The first full sync then calls `adopt` before its diff:
every document that carries its identity (path + sha256 metadata) becomes an `uploaded`
row with no size or mtime. The normal engine does the rest: a file on disk is hashed and kept when its content matches (nothing uploaded
twice), a changed one is replaced, and rows whose files are not on disk go through the
missing step with its hold rules (a wrong or half-readable drive is held, not pruned).
"""

from __future__ import annotations

import structlog

from objlibd.config import Config
from objlibd.engine import disk
from objlibd.engine.summary import SyncSummary
from objlibd.remote.base import RemoteDoc, RemoteStore
from objlibd.state import keys
from objlibd.state.store import StateStore

log = structlog.get_logger("objlibd.sync")


def pending(state: StateStore) -> bool:
    """Return True while a rebuilt DB still waits for its adoption."""
    record = state.values.get_json(keys.REBUILT)
    return isinstance(record, dict) and "adopted" not in record


def adopt(config: Config, state: StateStore, store: RemoteStore, summary: SyncSummary) -> None:
    """Adopt the store's documents and the drive's library id into a rebuilt DB."""
    by_path: dict[str, list[RemoteDoc]] = {}
    for doc in store.list_docs():
        if doc.path and doc.sha256:
            by_path.setdefault(doc.path, []).append(doc)
    chosen = [choose(config, path, docs) for path, docs in sorted(by_path.items())]
    state.files.adopt_documents(chosen)
    library_id = state.values.get_config(keys.LIBRARY_ID)
    record = {
        **state.values.get_json(keys.REBUILT),
        "adopted": len(chosen),
        "library_id": library_id,
    }
    state.values.set_json(keys.REBUILT, record)
    state.jobs.record_decision("state_rebuilt", record)
    summary.adopted += len(chosen)
    log.warning(
        "state.rebuilt", adopted=len(chosen), library_id=library_id, moved_to=record["moved_to"],
        reason=record["reason"],
    )  # fmt: skip


def choose(config: Config, path: str, docs: list[RemoteDoc]) -> RemoteDoc:
    """One document per path: with several, the one holding what the disk holds now.

    The others stay unreferenced and go with the next orphan sweep.
    """
    if len(docs) == 1:
        return docs[0]
    try:
        digest = disk.sha256_file(config.library.root / path)
    except OSError:
        return docs[0]
    return next((doc for doc in docs if doc.sha256 == digest), docs[0])
