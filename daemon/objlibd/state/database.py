"""The state database's connection: opening, migrating, repairing, transactions.

One SQLite file under state.dir. Only the engine's thread writes (one writer); `status`,
`doctor` and the CLI open it read-only, which WAL allows while the daemon runs. The tables
are read and written by the parts `StateStore` (store.py) composes over one `Database`:
files, the walk cache, remote operations, jobs, failures and the config values.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from objlibd.errors import StateDiskFullError, StateError
from objlibd.state import dbtime, keys, migrations, sqlitememory
from objlibd.state.values import ConfigValues

# Callers above the state layer catch SQLite faults by this name: sqlite3 is imported only here.
DatabaseError = sqlite3.DatabaseError


class Database:
    """A migrated connection to the state database: transactions and consistent reads."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self.rebuilt: dict[str, Any] | None = None  # set when `open(repair=True)` started over

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, repair: bool = False) -> Self:
        """Open (and for writers create and migrate) the database at `path`.

        `repair` (the one writer that owns the state dir) first runs `PRAGMA quick_check`:
        a damaged database is moved aside, kept and named with the time, and a fresh one
        is started, recording why in library_config under keys.REBUILT (`rebuilt`); the
        engine then adopts the store's documents into it (`rebuild.adopt`).

        Raises:
            StateError: locked, unreadable, written by a newer objlibd, or (without `repair`)
                damaged.
        """
        damage = _damage(path) if repair and not readonly else None
        if damage is not None:
            identity = _salvage(path)
            try:
                moved = _set_aside(path)
            except OSError as err:
                raise StateError(
                    f"state database {path} is damaged ({damage}) and cannot be moved aside: "
                    f"{err.strerror or err}",
                    hint=f"move it (and its -wal, -shm files) out of {path.parent} yourself, "
                    "then run `objlibd sync`: the store's documents are adopted",
                ) from None
            db = cls.open(path)
            values = ConfigValues(db)
            for key, value in identity.items():
                values.set_config(key, value)
            db.rebuilt = {"at": dbtime.iso_seconds(time.time()), "reason": damage[:300],
                          "moved_to": str(moved), "salvaged": sorted(identity)}  # fmt: skip
            values.set_json(keys.REBUILT, db.rebuilt)
            return db
        if readonly and not path.exists():
            raise StateError(
                f"state database {path} does not exist yet",
                hint="run `objlibd sync` (or start the daemon) once to create it",
            )
        try:
            conn = _connect(path, readonly=readonly)
            found = migrations.version(conn)
            if found > migrations.LATEST:
                raise StateError(
                    f"state database {path} has schema version {found}, newer than this "
                    f"objlibd understands ({migrations.LATEST})",
                    hint="upgrade objlibd, or point [state] dir at a fresh directory",
                )
            if not readonly:
                migrations.migrate(conn, path)
            elif found == 0:
                conn.close()
                raise StateError(  # created, not migrated yet: the daemon is starting
                    f"state database {path} is being created",
                    hint="objlibd is starting; try again in a moment",
                )
        except sqlite3.DatabaseError as err:
            raise _state_error(path, err) from None
        return cls(conn, path)

    @classmethod
    def memory(cls) -> Self:
        """Return a migrated in-memory store (for pure-ish tests)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        migrations.migrate(conn)
        return cls(conn, None)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def release_memory(self) -> None:
        """Give back the page cache this connection holds (`PRAGMA shrink_memory`).

        SQLite keeps up to `cache_size` (~2 MiB) of pages per connection for as long as the
        connection lives; a resident daemon drops them after work instead, so its memory
        follows what a batch needs, not what it touched over hours. Re-reading is cheap.
        """
        with self._lock:
            self._conn.execute("PRAGMA shrink_memory")

    def held_memory(self) -> dict[str, int] | None:
        """Return what this connection holds: page cache, schema and statements, in bytes."""
        with self._lock:
            return sqlitememory.connection_memory(self._conn)

    def integrity_check(self) -> str:
        """Return 'ok' or SQLite's description of what is broken."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def data_version(self) -> int:
        """Return SQLite's data_version: it changes whenever another connection commits."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    @property
    def schema_version(self) -> int:
        """Return the schema version."""
        with self._lock:
            return migrations.version(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one IMMEDIATE transaction.

        Raises:
            StateError: the disk is full (StateDiskFullError; rolled back), the database is
                damaged or locked.
        """
        with self._lock, self._explained():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Turn what people cause or fix (full disk, damage, a lock) into a StateError."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if getattr(err, "sqlite_errorcode", None) not in _EXPLAINED and not is_disk_full(err):
                raise  # a bug, not input: keep the traceback
            raise _state_error(self.path or Path(":memory:"), err) from None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Run a block of reads against one consistent snapshot of the database."""
        with self._lock, self._explained():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._explained():
            return list(self._conn.execute(sql, tuple(params)).fetchall())


# SQLite result codes a person causes or fixes: busy, locked, readonly, I/O error, corrupt,
# full, cannot open, not a database.
_EXPLAINED = frozenset({5, 6, 8, 10, 11, 13, 14, 26})
_DAMAGED = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


def _damage(path: Path) -> str | None:
    """Return what `PRAGMA quick_check` finds wrong with the database at `path`, or None.

    Only damage counts: a locked or unreadable file raises StateError as usual.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = _connect(path, readonly=True)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        if getattr(err, "sqlite_errorcode", None) in _DAMAGED:
            return str(err)
        raise _state_error(path, err) from None
    found = "; ".join(str(row[0]) for row in rows)
    return None if found == "ok" else found


# What a rebuilt DB keeps from the damaged one when it can still be read: which library
# (so the drive's marker still proves it) and which store this state dir synced into.
IDENTITY_KEYS = ("library_id", "store_backend", "store_name", "store_id")


def _salvage(path: Path) -> dict[str, str]:
    """Return the identity keys a damaged database still yields (nothing if it cannot)."""
    marks = ",".join("?" * len(IDENTITY_KEYS))
    try:
        conn = _connect(path, readonly=True)
        try:
            rows = conn.execute(
                f"SELECT key, value FROM library_config WHERE key IN ({marks})", IDENTITY_KEYS
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return {}
    return {str(key): value for key, value in rows if isinstance(value, str) and value}


def _set_aside(path: Path) -> Path:
    """Move a damaged database (and its -wal, -shm) aside, named with the time; return it."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{counter}")
    for suffix in ("-wal", "-shm"):  # the journal belongs to the old file, never the new one
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target


_SQLITE_FULL = 13


def is_disk_full(err: sqlite3.Error) -> bool:
    """Return True when SQLite failed for lack of disk space."""
    return getattr(err, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(err)


READER_CACHE_KIB = 512


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
            check_same_thread=False, timeout=5.0,
        )  # fmt: skip
        # A reader's scans (status counts) come seconds apart, after writes that invalidate
        # its cache anyway: 512 KiB instead of SQLite's 2 MiB, so a resident reader holds less.
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite sees it: its -wal and -shm files copy the DB's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _state_error(path: Path, err: sqlite3.DatabaseError) -> StateError:
    text = str(err)
    if is_disk_full(err):
        return StateDiskFullError.of(path.parent)
    if "locked" in text or "busy" in text:
        return StateError(
            f"state database {path} is locked by another process",
            hint="is another `objlibd sync` or the daemon running? (`objlibd status`)",
        )
    if getattr(err, "sqlite_errorcode", None) in _DAMAGED:
        return StateError(
            f"state database {path} is damaged: {text}",
            hint="run `objlibd sync` (or restart the daemon): it is moved aside, kept, and "
            "rebuilt from the store and the library; nothing is uploaded twice",
        )
    return StateError(
        f"state database {path} cannot be used: {text}",
        hint="move the file aside (keep it for diagnosis) and run `objlibd sync` again; "
        "documents already in the store are adopted, not uploaded twice",
    )
