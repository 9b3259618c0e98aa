"""Stores: the interface (`base`) and how to open the configured one.

`open_store` imports a backend only when it is used, so commands that never talk to the
store (status, logs) never pay for google-genai's import.
"""

from __future__ import annotations

import threading

from objlibd.config import Config
from objlibd.remote.base import RemoteDoc, RemoteStore, UploadRequest

__all__ = ["RemoteDoc", "RemoteStore", "UploadRequest", "open_store"]


def open_store(config: Config, *, stop: threading.Event | None = None) -> RemoteStore:
    """Return the configured backend (not yet bound to a store: call ensure_store).

    `stop` (the daemon's shutdown event) cuts the backend's retry and polling waits short.

    Raises:
        CredentialsMissingError: gemini backend without an API key.
    """
    if config.store.backend == "gemini":
        from objlibd.remote.gemini import open_gemini

        return open_gemini(config.gemini, stop=stop)
    from objlibd.remote.local import LocalStore

    return LocalStore(config.state.dir / "local-store")
