"""The pure diff: how what the walk saw differs from what the state DB records.

No I/O: the walk (`scanner`) and the DB's index (`state`) come in, a `Diff` goes out, and the
engine (`sync`) acts on it. Tested with tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from objlibd.models import DiskEntry, Signature, StateIndex


@dataclass(slots=True)
class Diff:
    """How the disk differs from the DB.

    `new`: no usable record. `check`: content may have changed (stat differs, a retry, a
    missing file back, or --force): hash and compare. `missing`: recorded paths not on disk.
    `unchanged`: same size and mtime as recorded (not re-hashed). `exact`: the disk holds
    exactly the settled files, each with its recorded size and mtime (a quiet library).
    """

    new: list[DiskEntry] = field(default_factory=list)
    check: list[DiskEntry] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unchanged: int = 0
    exact: bool = False


def diff(
    disk: Mapping[str, Signature],
    known: StateIndex,
    *,
    force: bool = False,
) -> Diff:
    """Compare what the walk saw with the DB's index (both keyed by relative path).

    Everything in `known` is in scope: a full reconcile passes the whole index, a batch only
    the rows of the paths it looked at. Settled files whose recorded (path, size, mtime) is
    identical are unchanged: one dict lookup and one tuple comparison each.
    """
    result = Diff()
    if force:
        changed: Iterable[tuple[str, Signature]] = disk.items()
    else:
        settled = known.settled.get
        changed = [(path, sig) for path, sig in disk.items() if settled(path) != sig]
    for path, signature in changed:
        entry = DiskEntry(*signature)  # type: ignore[arg-type]  # walk tuples are never None
        if path in known.settled:
            result.check.append(entry)
        elif known.unsettled.get(path, "deleted") == "deleted":
            result.new.append(entry)
        else:
            result.check.append(entry)  # a retry, or a missing file that is back
    result.unchanged = len(disk) - len(result.new) - len(result.check)
    gone = known.settled.keys() - disk.keys()
    result.exact = not result.new and not result.check and not gone
    gone.update(p for p, status in known.unsettled.items() if status != "deleted" and p not in disk)
    result.missing = sorted(gone)
    result.new.sort()
    result.check.sort()
    return result


def diff_quiet(files: int, unsettled: Mapping[str, str]) -> Diff:
    """The diff of a disk known to hold exactly the settled files (see `Diff.exact`).

    What `diff` would return for such a disk, without the per-file index: `files` unchanged,
    and every unsettled path that is not deleted is missing (none of them can be on disk).
    """
    missing = sorted(path for path, status in unsettled.items() if status != "deleted")
    return Diff(missing=missing, unchanged=files, exact=True)
