"""SQLite's memory, counted by SQLite: the whole heap, and what one connection holds.

Read through ctypes from the SQLite library the `sqlite3` module uses (linked or embedded),
for the daemon's heap report (`runtime/heap`); None wherever a platform does not expose it.
SQLite allocates with malloc directly, so tracemalloc never sees any of this.
"""

from __future__ import annotations

import ctypes
import functools
import sqlite3
import sys

_CONNECTION_COUNTS = {"cache": 1, "schema": 2, "statements": 3}  # SQLITE_DBSTATUS_*


def sqlite_heap() -> dict[str, int] | None:
    """SQLite's outstanding heap (page caches, statements) across all connections."""
    lib = _library()
    if lib is None:
        return None
    return {
        "bytes": int(lib.sqlite3_memory_used()),
        "peak": int(lib.sqlite3_memory_highwater(0)),
        "version": sqlite3.sqlite_version_info[0],
    }


def connection_memory(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Return the bytes `conn` holds in its page cache, schema and prepared statements.

    `sqlite3_db_status` needs the connection's `sqlite3*`, which Python does not expose. In
    CPython it is the first field after the object header (`pysqlite_Connection.db`, the same
    since Python 2.5, checked up to 3.14), so it is read only on those CPythons, and used
    only after SQLite names the same database file through it: None, never a wrong count.
    """
    lib = _library()
    handle = None if lib is None else _handle(lib, conn)
    if lib is None or handle is None:
        return None
    counts: dict[str, int] = {}
    for name, op in _CONNECTION_COUNTS.items():
        current, highest = ctypes.c_int(), ctypes.c_int()
        if lib.sqlite3_db_status(handle, op, ctypes.byref(current), ctypes.byref(highest), 0):
            return None
        counts[name] = current.value
    return counts


def _handle(lib: ctypes.CDLL, conn: sqlite3.Connection) -> int | None:
    known = sys.implementation.name == "cpython" and (3, 8) <= sys.version_info < (3, 15)
    if not known or type(conn) is not sqlite3.Connection:
        return None
    try:
        rows = conn.execute("PRAGMA database_list").fetchall()
    except sqlite3.ProgrammingError:
        return None  # closed
    expected = next((str(row[2]) for row in rows if row[1] == "main"), None)
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    if not expected or handle is None:
        return None  # an in-memory database has no file name to check the handle with
    named = lib.sqlite3_db_filename(handle, b"main")
    return handle if named is not None and named.decode(errors="replace") == expected else None


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The SQLite library `sqlite3` uses, its four functions typed once (None: not exposed)."""
    import _sqlite3  # loaded with sqlite3 already

    try:  # through the module: the SQLite it links (or embeds) is the one counted
        lib = ctypes.CDLL(_sqlite3.__file__)
    except (OSError, AttributeError):
        return None
    needed = ("sqlite3_memory_used", "sqlite3_memory_highwater", "sqlite3_db_status",
              "sqlite3_db_filename")  # fmt: skip
    if not all(hasattr(lib, name) for name in needed):
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    lib.sqlite3_db_status.argtypes = [
        ctypes.c_void_p, ctypes.c_int,
        ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.c_int,
    ]  # fmt: skip
    lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.sqlite3_db_filename.restype = ctypes.c_char_p
    return lib
