"""Errors objlibd can explain: each says what happened (`str(e)`) and what to do (`.hint`).

Tracebacks are for bugs. Anything a person can cause or fix (a bad config, a missing drive,
a missing API key, a store that refuses a file) is one of these, and the CLI prints it as
`objlibd: <message>` plus a hint, with the exit code the error carries.
"""

from __future__ import annotations


class ObjlibdError(Exception):
    """An expected failure we can explain."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(ObjlibdError):
    """The configuration file is missing or invalid; names the file, table and key."""

    exit_code = 2


class StoreMismatchError(ObjlibdError):
    """The configured store is not the one this state database has synced into."""

    exit_code = 2


class VolumeUnavailableError(ObjlibdError):
    """The library volume is not mounted, not readable, or not the right volume."""

    exit_code = 3


class SourceUnreadableError(ObjlibdError):
    """A library file could not be read for upload (it vanished, or reading it failed).

    Not the store's fault and not yet the file's: the engine re-probes the volume before it
    records anything (a yanked drive parks the batch; a vanished file on a present drive goes
    through the missing path).
    """

    def __init__(self, message: str, *, gone: bool, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.gone = gone


class ForeignMarkerError(ObjlibdError):
    """The drive carries another library's marker; objlibd never overwrites it unasked."""

    def __init__(self, message: str, *, library_id: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.library_id = library_id


class StateError(ObjlibdError):
    """The state database is locked, corrupt, or newer than this objlibd."""

    exit_code = 2


class FolderError(ObjlibdError):
    """The state or log dir cannot be created or written; names the path and the fix."""

    exit_code = 2


class StateDiskFullError(StateError):
    """The disk holding the state dir is full: nothing could be recorded (nothing was lost)."""

    exit_code = 1

    @classmethod
    def of(cls, state_dir: object) -> StateDiskFullError:
        """Return the one error objlibd gives for a full state disk (same words everywhere)."""
        return cls(
            f"state disk full: no space left on the disk holding {state_dir}",
            hint="free some space on that disk (or move [state] dir elsewhere); objlibd "
            "carries on by itself once it can write again, and nothing was lost",
        )


class AlreadyRunningError(ObjlibdError):
    """Another objlibd daemon owns this state directory."""

    exit_code = 1


class CredentialsMissingError(ObjlibdError):
    """The Gemini API key is not configured."""

    exit_code = 2


class QueryError(ObjlibdError):
    """A search question or its `--where` filter cannot be used as written (exit 2)."""

    exit_code = 2


class UsageError(ObjlibdError):
    """A command-line value objlibd cannot use (exit 2, like argparse's own errors)."""

    exit_code = 2


class ServiceError(ObjlibdError):
    """launchctl/systemctl could not do what was asked."""


class RemoteError(ObjlibdError):
    """The store failed an operation."""


class RemoteUnavailableError(RemoteError):
    """Transient: the store did not answer or asked us to slow down, after retries."""


class RemoteUncertainError(RemoteUnavailableError):
    """An import was sent but its outcome is unknown: it may or may not have landed.

    Never import the file again until that is settled: resume `operation` when the store
    named one, else look the file up by identity. `file_id` is the temporary upload to drop
    once it is settled.
    """

    def __init__(
        self, message: str, *, operation: str | None = None, file_id: str | None = None
    ) -> None:
        super().__init__(message, hint="the next lookup of the store settles it")
        self.operation = operation
        self.file_id = file_id


class RemoteStoppedError(RemoteUnavailableError):
    """objlibd is shutting down: a call or a wait was cut short, nothing new was sent."""


class RemoteRejectedError(RemoteError):
    """Permanent for this file: the store refused it (bad request, unsupported, forbidden)."""


class RemoteUnsupportedError(RemoteRejectedError):
    """The store cannot take this kind of file at all (too large, unsupported type): skip it."""


class RemoteStoreMissingError(RemoteError):
    """The configured store does not exist (yet): reading commands never create one."""


class RemoteQuotaError(RemoteError):
    """The store is full (storage quota reached): stop uploading until a person acts."""
