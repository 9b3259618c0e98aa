"""Which names count as library files: [library] include and exclude, and the marker.

Every name in the library passes here (the walk inlines `excluded` in its hot loop), so the
exclude globs are split into the shapes a walk can test in C.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from objlibd.config import LibrarySettings


@dataclass(frozen=True, slots=True)
class Filters:
    """Which names count as library files.

    Exclude globs are split into the shapes a walk can test in C (exact names, `prefix*`,
    `*suffix`) and a regex for the rest, because every name in the library passes here.
    """

    include: frozenset[str]
    names: frozenset[str]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    other: re.Pattern[str] | None
    marker_name: str

    @classmethod
    def from_settings(cls, library: LibrarySettings) -> Filters:
        """Build filters from [library] include/exclude."""
        names, prefixes, suffixes, other = {library.marker_name}, [], [], []
        for glob in library.exclude:
            body = glob.strip("*")
            if any(c in body for c in "*?[]"):
                other.append(fnmatch.translate(glob))
            elif glob.endswith("*") and not glob.startswith("*"):
                prefixes.append(body)
            elif glob.startswith("*") and not glob.endswith("*"):
                suffixes.append(body)
            elif "*" not in glob:
                names.add(glob)
            else:
                other.append(fnmatch.translate(glob))
        return cls(
            include=frozenset(ext.lower() for ext in library.include),
            names=frozenset(names),
            prefixes=tuple(prefixes),
            suffixes=tuple(suffixes),
            other=re.compile("|".join(other)) if other else None,
            marker_name=library.marker_name,
        )

    def excluded(self, name: str) -> bool:
        """Return True for names never to look at (hidden, temp files, the marker)."""
        return (
            name in self.names
            or name.startswith(self.prefixes)
            or name.endswith(self.suffixes)
            or (self.other is not None and self.other.match(name) is not None)
        )

    def eligible(self, name: str) -> bool:
        """Return True for a file name that belongs in the store."""
        if self.excluded(name):
            return False
        dot = name.rfind(".")
        return dot > 0 and name[dot:].lower() in self.include

    def path_excluded(self, rel_path: str) -> bool:
        """Return True if any component of a relative path is excluded."""
        return any(self.excluded(part) for part in rel_path.split("/"))
