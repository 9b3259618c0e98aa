"""What every part of `StateStore` is: reads and writes of its own tables over one `Database`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the database writes its rebuilt record through a part (values)
    from objlibd.state.database import Database


CHUNK = 64  # values per `IN (...)`: as fast as 512 a lookup, and its statements 8x smaller


def in_list(values: list[str]) -> tuple[str, list[str | None]]:
    """Return the placeholders and parameters of `IN (...)` for `values`, padded to a power of two.

    The padding is NULL, which matches nothing. Each distinct SQL text is a prepared statement
    that the connection caches (Python keeps 128, LRU); one per batch size would slowly fill
    that cache with statements of up to ~100 KB. Padded, with `CHUNK` 64, a query has 7.
    """
    size = 1 << max(len(values) - 1, 0).bit_length()
    return ",".join("?" * size), [*values, *[None] * (size - len(values))]


def in_lists(values: list[str]) -> Iterator[tuple[str, list[str | None]]]:
    """`in_list` for each run of `CHUNK` values: every lookup by a list of keys goes through
    here, so the statements a daemon caches are few whatever its batch sizes."""
    for start in range(0, len(values), CHUNK):
        yield in_list(values[start : start + CHUNK])


class Part:
    """A part of `StateStore` (files, walk, operations, jobs, failures, values)."""

    def __init__(self, db: Database) -> None:
        self._db = db
