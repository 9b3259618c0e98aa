"""The names of the values objlibd keeps in the state DB's `config` table, in one place.

Each is a key of `StateStore.get_config`/`get_json`; the comment says who writes it.
"""

from __future__ import annotations

# The store the state belongs to (engine.sync, on the first run against a store).
STORE_BACKEND = "store_backend"
STORE_NAME = "store_name"
STORE_ID = "store_id"
# The library this state belongs to: the id in the drive's marker file (engine.volume).
LIBRARY_ID = "library_id"
# The mass-missing hold waiting for a person (engine.hold).
HOLD = "hold"
# When and why the DB was rebuilt from the store (state.database).
REBUILT = "state.rebuilt"
# The daemon's last batch, its schedule and the work it keeps across restarts (runtime.worker).
LAST_BATCH = "daemon.last_batch"
SCHEDULE = "daemon.schedule"
PENDING = "daemon.pending"
# A `missing --confirm` stored while objlibd could not act on it (runtime.worker).
CONFIRM_PENDING = "daemon.confirm_pending"
# The request pace learned for the store (remote.pace).
PACE = "remote.pace"

# The scheduled jobs, by name, and the `jobs`-table kind their runs are recorded under (a
# reconcile is a full sync): runtime.jobs schedules them, status shows their last runs.
JOBS = {"orphan_cleanup": "orphan_cleanup", "prune": "prune", "reconcile": "sync"}
