"""Failure memory, the pure part: when a file is tried again, and when it is quarantined.

A *permanent* failure (the store refused the file: "Failed to count tokens.", a bad request)
is counted per content hash; once one content has failed `quarantine_after` times the file is
quarantined: never tried again until its content changes (a new hash starts a new count) or a
person runs `objlibd retry`, which lets it try once more (the count stays, so one more failure
quarantines it again). A *transient* failure (busy, unreachable, an outcome left in doubt)
backs the file off across runs: exponential in the failures in a row, capped, so a bad hour
costs a few calls per file, not one per run.

No I/O and no clock of its own: times are passed in; tested with tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from objlibd.config import SyncSettings
from objlibd.models import FileRecord


class Verdict(enum.StrEnum):
    """What to do with a file the diff says should be uploaded."""

    UPLOAD = "upload"  # nothing holds it back
    QUARANTINED = "quarantined"  # this content failed too often: leave it
    WAITING = "waiting"  # backing off after a transient failure


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """The limits, from [sync]."""

    quarantine_after: int = 3
    backoff_seconds: float = 60.0
    backoff_max_seconds: float = 21600.0

    @classmethod
    def of(cls, sync: SyncSettings) -> FailurePolicy:
        """Return the policy the config sets."""
        return cls(
            quarantine_after=sync.quarantine_after_failures,
            backoff_seconds=sync.retry_backoff_seconds,
            backoff_max_seconds=sync.retry_backoff_max_seconds,
        )

    def backoff(self, in_a_row: int) -> float:
        """Return the pause after the `in_a_row`-th transient failure in a row (>= 1)."""
        exponent = min(max(in_a_row, 1) - 1, 60)  # 2**60 s is already far past any cap
        return min(self.backoff_max_seconds, self.backoff_seconds * 2.0**exponent)

    def permanent(self, record: FileRecord | None, content_hash: str) -> tuple[int, bool]:
        """Return (failures of this content, quarantined?) after one more permanent failure."""
        before = record.failures if record is not None and record.failed_hash == content_hash else 0
        count = before + 1
        return count, count >= self.quarantine_after


def verdict(record: FileRecord | None, content_hash: str, now_iso: str) -> Verdict:
    """Decide whether `content_hash` of a file may be uploaded now."""
    if record is None:
        return Verdict.UPLOAD
    if record.quarantined_at is not None and record.failed_hash == content_hash:
        return Verdict.QUARANTINED
    if record.retry_after is not None and record.retry_after > now_iso:
        return Verdict.WAITING
    return Verdict.UPLOAD
