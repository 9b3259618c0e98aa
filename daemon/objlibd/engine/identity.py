"""Which store and which library a state DB belongs to, checked and recorded by the engine.

The store: before a run touches it, the configured store must be the one this DB synced into
(`StoreIdentity.check`); the first run against a store records it. The library: once a
finished run leaves the library holding files, its marker is written on the drive and its
id recorded (`mark_library`), so a volume without it is never taken for the library
(`volume.probe`). `volume` reads and writes the marker file; this decides when.
"""

from __future__ import annotations

import structlog

from objlibd.config import Config
from objlibd.engine import volume
from objlibd.engine.summary import SyncSummary
from objlibd.errors import ForeignMarkerError, StoreMismatchError
from objlibd.models import Problem
from objlibd.remote.base import RemoteStore
from objlibd.state import keys
from objlibd.state.store import StateStore

log = structlog.get_logger("objlibd.sync")


class StoreIdentity:
    """The configured store checked against the one the state DB recorded; connected once."""

    def __init__(self, state: StateStore, store: RemoteStore) -> None:
        self.state = state
        self.store = store
        self.ready = False  # connected (created if absent) and recorded

    def check(self, config: Config, *, connect: bool = True, create: bool = True) -> bool:
        """Abort when the configured store is not the one this DB synced into.

        Connects the store (creating it if absent) unless `connect` is False. With `create`
        False (dry runs, `store list`) only an existing store is used and nothing is recorded;
        returns whether the store is connected.
        """
        values = self.state.values
        backend, name = config.store.backend, config.store.name
        recorded_backend = values.get_config(keys.STORE_BACKEND)
        recorded_name = values.get_config(keys.STORE_NAME)
        if recorded_name is not None and (recorded_name, recorded_backend) != (name, backend):
            raise StoreMismatchError(
                f'this state DB synced into {recorded_backend} store "{recorded_name}", but the '
                f'config names {backend} store "{name}"',
                hint="fix [store] in the config, or give the other store its own [state] dir",
            )
        if not connect or self.ready:
            return self.ready
        store_id = self.store.ensure_store(name) if create else self.store.find_store(name)
        recorded_id = values.get_config(keys.STORE_ID)
        if store_id is None:
            if recorded_id is not None:
                raise StoreMismatchError(
                    f'store "{name}" ({recorded_id}), which this DB synced into, is gone',
                    hint="run `objlibd sync` to create it again and upload the library, or "
                    "point [state] dir at a fresh directory",
                )
            return False
        if not create:
            if recorded_id is not None and recorded_id != store_id:
                raise StoreMismatchError(
                    f'store "{name}" is now {store_id}, but this DB synced into {recorded_id}',
                    hint="point [state] dir at a fresh directory to start over",
                )
            return True
        if recorded_id is not None and recorded_id != store_id:
            raise StoreMismatchError(
                f'store "{name}" is now {store_id}, but this DB synced into {recorded_id} '
                "(was the store deleted and created again?)",
                hint="point [state] dir at a fresh directory to start over against the new store",
            )
        if recorded_id is None:
            values.set_config(keys.STORE_BACKEND, backend)
            values.set_config(keys.STORE_NAME, name)
            values.set_config(keys.STORE_ID, store_id)
        self.ready = True
        return True


def mark_library(config: Config, state: StateStore, summary: SyncSummary) -> None:
    """Write the library marker and record its id, once the library holds files.

    A marker that cannot be written is a problem of the run (the library stays unmarked and
    the next finished run tries again), never a failure.
    """
    if state.values.get_config(keys.LIBRARY_ID) is not None:
        return
    if state.files.count_tracked() == 0:
        return  # an empty library proves nothing; mark it once it holds files
    marker = volume.Marker(volume.new_library_id(), store=config.store.name)
    try:
        volume.write_marker(config.library, marker)
    except (OSError, ForeignMarkerError) as err:
        why = err.message if isinstance(err, ForeignMarkerError) else volume.write_problem(err)
        reason = f"cannot write the library marker: {why}"
        summary.problems.append(Problem(config.library.marker_name, reason))
        log.warning("library.unmarked", reason=reason)
        return
    state.values.set_config(keys.LIBRARY_ID, marker.library_id)
    log.info("library.marked", library_id=marker.library_id)
