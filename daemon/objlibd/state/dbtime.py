"""The state DB's time format, in one place: UTC ISO-8601 with milliseconds and Z.

It sorts as text in time order, which the queries rely on (`missing_since < cutoff`,
`retry_after > now`). SQLite writes it with `NOW`, Python with `iso`; `parse` reads either
back. `iso_seconds` is the coarser form of the heartbeat, the pause flag and the rebuilt
record. `objlibd status` imports this module: datetime is loaded only when a time is made.
"""

from __future__ import annotations

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"  # SQL: the current time in the DB's format


def iso(epoch: float) -> str:
    """Return `epoch` as the DB stores times (milliseconds, Z)."""
    import datetime as dt

    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(epoch: float) -> str:
    """Return `epoch` as a UTC ISO time with seconds precision and Z (no datetime import)."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse(text: str | None) -> float | None:
    """Return a DB time (or any ISO time; naive means UTC) as epoch seconds; None for none."""
    import datetime as dt

    if not text:
        return None
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
