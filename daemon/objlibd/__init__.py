"""objlibd: keeps a Gemini File Search store true to a document library on a removable drive."""

from __future__ import annotations

__version__ = "0.1.0"
