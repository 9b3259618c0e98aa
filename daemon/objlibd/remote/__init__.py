"""Stores: the interface (`base`) and how to open the configured one.

`open_store` imports a backend only when it is used, so commands that never talk to the
store (status, logs) never pay for google-genai's import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from objlibd.config import Config
from objlibd.remote.base import RemoteDoc, RemoteStore, UploadRequest

__all__ = ["RemoteDoc", "RemoteStore", "UploadRequest", "open_store"]


def open_store(
    config: Config,
    *,
    stop: threading.Event | None = None,
    learned_pace: Mapping[str, object] | None = None,
    save_pace: Callable[[dict[str, object]], None] | None = None,
) -> RemoteStore:
    """Return the configured backend (not yet bound to a store: call ensure_store).

    `stop` (the daemon's shutdown event) cuts the backend's retry and polling waits short.
    `learned_pace` is the request pace an earlier run learned for this store, `save_pace`
    where the backend persists it as it learns (the gemini backend; the local one has no
    quota). The caller owns the storage: this layer never touches the state DB.

    Raises:
        CredentialsMissingError: gemini backend without an API key.
    """
    if config.store.backend == "gemini":
        from objlibd.remote.gemini import open_gemini

        return open_gemini(config.gemini, stop=stop, learned_pace=learned_pace, save_pace=save_pace)
    from objlibd.remote.local import LocalStore

    return LocalStore(config.state.dir / "local-store")
