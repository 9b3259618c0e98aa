"""What the worker has been told (volume, pause) and has shown (its work, problems, writes).

Two threads meet here: the monitor tells the worker what it saw (`set_volume`, `set_paused`)
and reads what it does for the heartbeat (`snapshot`, a frozen `WorkerSnapshot`); the worker
thread reads what it was told before each batch or job (`blocked`) and notes what happened.
One lock guards every field, so a reader never sees a problem without its fix, nor a volume
from one probe and a pause from another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from objlibd.errors import ObjlibdError, StateDiskFullError, StateError
from objlibd.models import Availability, VolumeState

NOT_PROBED = VolumeState(Availability.UNAVAILABLE, "not probed yet")


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """What the worker is doing and has shown, at one moment (for the heartbeat)."""

    current: dict[str, Any] | None  # the batch or job running: batch_id, trigger, paths / job
    last_batch: dict[str, Any] | None  # as stored under keys.LAST_BATCH
    problem: str | None  # what the last call failed at (cleared by the next success)
    problem_fix: str
    state_disk_full: str | None  # a write found the state disk full
    generation: int  # bumped after every DB write of ours: the status cache key
    pending_paths: int  # queued or parked (not counting the batch running)
    parked_paths: int


class WorkerStatus:
    """The worker's shared fields, each read and written under one lock (thread-safe)."""

    def __init__(self, last_batch: dict[str, Any] | None) -> None:
        self._lock = threading.Lock()
        self._volume = NOT_PROBED
        self._paused = False
        self._current: dict[str, Any] | None = None
        self._last_batch = last_batch
        self._problem: tuple[str | None, str] = (None, "")  # message, fix
        self._state_disk_full: str | None = None
        self._generation = 0

    # -- told by the monitor ---------------------------------------------------------------

    def set_volume(self, volume: VolumeState) -> None:
        """Note what the last probe found (or the loss the engine saw)."""
        with self._lock:
            self._volume = volume

    def set_paused(self, paused: bool) -> None:
        """Note whether the daemon is paused."""
        with self._lock:
            self._paused = paused

    @property
    def volume(self) -> VolumeState:
        """Return the volume as the worker believes it."""
        with self._lock:
            return self._volume

    def blocked(self, stopping: bool) -> str | None:
        """Return why work cannot run now (shutting down, paused, volume), or None."""
        if stopping:
            return "shutting down"
        with self._lock:
            paused, volume = self._paused, self._volume
        if paused:
            return "paused"
        if not volume.available:
            return f"volume {volume.availability.value}: {volume.reason}"
        return None

    # -- shown by the worker ---------------------------------------------------------------

    @property
    def current(self) -> dict[str, Any] | None:
        """Return the batch or job running now (None when idle)."""
        with self._lock:
            return self._current

    def set_current(self, current: dict[str, Any] | None) -> None:
        """Note the batch or job that starts (None: it ended)."""
        with self._lock:
            self._current = current

    def set_last_batch(self, last: dict[str, Any]) -> None:
        """Note the batch that just ended."""
        with self._lock:
            self._last_batch = last

    def wrote(self) -> None:
        """Note a DB write of the worker's (bumps the status cache key)."""
        with self._lock:
            self._generation += 1

    @property
    def generation(self) -> int:
        """Return how many DB writes the worker noted."""
        with self._lock:
            return self._generation

    def set_problem(self, message: str | None, fix: str = "") -> None:
        """Note what the last call failed at, and its fix (None: it succeeded)."""
        with self._lock:
            self._problem = (message, fix)

    def succeeded(self) -> None:
        """Note a call that succeeded: no problem, and the state disk has room."""
        with self._lock:
            self._problem = (None, "")
            self._state_disk_full = None

    def state_trouble(self, err: ObjlibdError) -> None:
        """Note what the state DB cannot do: a full disk, or a damaged or locked DB."""
        if isinstance(err, StateDiskFullError):
            with self._lock:
                self._state_disk_full = err.message
        elif isinstance(err, StateError):
            self.set_problem(err.message, err.hint)

    def snapshot(self, *, pending_paths: int, parked_paths: int) -> WorkerSnapshot:
        """Return every field at one moment, with the queue's counts."""
        with self._lock:
            return WorkerSnapshot(
                current=self._current, last_batch=self._last_batch, problem=self._problem[0],
                problem_fix=self._problem[1], state_disk_full=self._state_disk_full,
                generation=self._generation, pending_paths=pending_paths,
                parked_paths=parked_paths,
            )  # fmt: skip
