"""What every part of `StateStore` is: reads and writes of its own tables over one `Database`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the database writes its rebuilt record through a part (values)
    from objlibd.state.database import Database


class Part:
    """A part of `StateStore` (files, walk, operations, jobs, failures, values)."""

    def __init__(self, db: Database) -> None:
        self._db = db
