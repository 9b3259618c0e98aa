"""The state database: one SQLite file under state.dir, the single source of local truth.

`StateStore` is what the engine, the daemon and the CLI open: one `Database` (the connection,
`database.py`) and the parts that read and write its tables, each in its own module:
`files` (what was synced, and how), `walk` (the diff's index and the walk cache),
`operations` (checkpointed remote imports), `jobs` (jobs and decisions), `failures` (the
failure memory) and `values` (library_config). Every write is its own short transaction, so
a crash loses at most the file in flight, never the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from objlibd.state.database import Database
from objlibd.state.failurelog import FailureLog
from objlibd.state.files import Files
from objlibd.state.joblog import JobLog
from objlibd.state.operations import Operations
from objlibd.state.values import ConfigValues
from objlibd.state.walkcache import WalkCache


class StateStore:
    """One state database and the parts over it (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.files = Files(db)
        self.walk = WalkCache(db)
        self.operations = Operations(db)
        self.jobs = JobLog(db)
        self.failures = FailureLog(db)
        self.values = ConfigValues(db)

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, repair: bool = False) -> Self:
        """Open the state database at `path` (see `Database.open`; raises StateError)."""
        return cls(Database.open(path, readonly=readonly, repair=repair))

    @classmethod
    def memory(cls) -> Self:
        """Return a store over a migrated in-memory database (for pure-ish tests)."""
        return cls(Database.memory())

    def close(self) -> None:
        """Close the connection."""
        self.db.close()
