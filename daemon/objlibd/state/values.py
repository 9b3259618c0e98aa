"""The library_config table: the named values objlibd keeps in the state DB (`keys`).

Which store and library the DB belongs to, the mass-missing hold, the learned request pace,
the daemon's schedule and pending work: small values, text or JSON, each write one
transaction.
"""

from __future__ import annotations

import json
from typing import Any

from objlibd.state import dbtime
from objlibd.state.part import Part


class ConfigValues(Part):
    """Reads and writes of library_config, by key (the names are in `keys`)."""

    def get_config(self, key: str) -> str | None:
        """Return a library_config value."""
        rows = self._db.query("SELECT value FROM library_config WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_config(self, key: str, value: str) -> None:
        """Set a library_config value."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO library_config(key, value) VALUES (?, ?) ON CONFLICT(key) "
                "DO UPDATE SET value = excluded.value, "
                f"updated_at = {dbtime.NOW}",
                (key, value),
            )

    def delete_config(self, key: str) -> None:
        """Remove a library_config key."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM library_config WHERE key = ?", (key,))

    def get_json(self, key: str) -> Any:
        """Return a JSON library_config value (None when unset)."""
        raw = self.get_config(key)
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any) -> None:
        """Store a JSON library_config value."""
        self.set_config(key, json.dumps(value, sort_keys=True))
