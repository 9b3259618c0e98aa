"""The drive as the daemon last saw it: what each probe found, and what changed since.

The monitor probes the volume every `volume_poll_seconds` (sooner when the mount point's
parent changes: `wake`) and acts on the transition `volume_transition` names; the worker's
engine may find the drive gone mid-batch between two probes (`report_lost`), and is believed
even if the drive is back by the next probe (the mount then gets its catch-up). An unavailable
volume only stops the watch and parks work: nothing is ever marked missing here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from objlibd.config import LibrarySettings
from objlibd.engine.volume import probe
from objlibd.models import Availability, VolumeState


def volume_transition(before: VolumeState | None, after: VolumeState) -> str | None:
    """Return "mounted", "moved" (elsewhere now), "unavailable", "changed" (reason) or None."""
    if after.available:
        if before is None or not before.available:
            return "mounted"
        return "moved" if before.found_at != after.found_at else None
    if before is None or before.available:
        return "unavailable"
    same = (before.availability, before.reason) == (after.availability, after.reason)
    return None if same else "changed"


class DriveTracker:
    """The last volume state, its transitions, and a loss the worker reported (thread-safe)."""

    def __init__(self, library: LibrarySettings, library_id: Callable[[], str | None]) -> None:
        self._library = library
        self._library_id = library_id
        self.volume = VolumeState(Availability.UNAVAILABLE, "not probed yet")
        self.since = time.time()  # when the volume last changed state
        self.probed = False
        self.wake = threading.Event()  # set: probe at the next tick
        self._lost: str | None = None

    def report_lost(self, reason: str) -> None:
        """The worker's engine found the drive gone mid-batch (worker thread)."""
        self._lost = reason
        self.wake.set()

    def take_lost(self) -> VolumeState | None:
        """Return the loss the worker reported while the volume counted as available."""
        reason, self._lost = self._lost, None
        if reason is None or not self.volume.available:
            return None
        self.volume = VolumeState(Availability.UNAVAILABLE, reason)
        self.since = time.time()
        return self.volume

    def probe(self) -> tuple[str | None, VolumeState]:
        """Probe the volume; return the transition ("mounted", "unavailable"...) and the
        state before. The first probe is "mounted" or "unavailable"."""
        found = probe(self._library, self._library_id())
        before = self.volume
        change = volume_transition(before, found) if self.probed else "first"
        self.volume, self.probed = found, True
        if change is not None:
            self.since = time.time()
        if change == "first":
            change = "mounted" if found.available else "unavailable"
        return change, before
