"""File names as text output shows them: one name, one line, whatever the name holds.

A file name may contain a newline or other control characters; printed raw, it would split
`objlibd store list` (or `missing`, or a summary) into lines that look like other entries.
Text output escapes them (and the backslash, so an escape is never ambiguous); JSON output
carries names unchanged.
"""

from __future__ import annotations

_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 0x7F)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\\"): "\\\\"})


def printable(name: str) -> str:
    """Return `name` fit for one line of text: control characters and backslashes escaped."""
    return name.translate(_ESCAPES)
