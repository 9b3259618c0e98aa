"""The Gemini API key: where objlibd looks for it, and never what it is.

`$GEMINI_API_KEY` wins; otherwise the OS keychain (service `objlibd`, account
`gemini-api-key`), reached through `keyring`, which `objlibd key set` writes. The key never
goes into the config, a service definition or a log line; callers only ever say where a key
was found. `objlibd.remote.gemini` opens the store with `require_api_key`; `doctor` and `objlibd key` use
`find_api_key` to say where a key was found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from objlibd.errors import CredentialsMissingError

API_KEY_ENV = "GEMINI_API_KEY"
KEYRING_SERVICE = "objlibd"
KEYRING_USER = "gemini-api-key"


class KeyStore(Protocol):
    """The slice of `keyring` objlibd uses (the OS keychain)."""

    def get_password(self, service_name: str, username: str) -> str | None: ...

    def set_password(self, service_name: str, username: str, password: str) -> None: ...

    def delete_password(self, service_name: str, username: str) -> None: ...


def find_api_key(environ: Mapping[str, str], keystore: Callable[[], KeyStore]) -> tuple[str, str]:
    """Return (key, where) the gemini backend would use, or ("", why not); never log the key."""
    value = environ.get(API_KEY_ENV, "").strip()
    if value:
        return value, f"${API_KEY_ENV}"
    try:
        stored = keystore().get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception as err:  # noqa: BLE001 - any keychain failure means "no key there"
        return "", f"no usable keychain ({type(err).__name__})"
    if stored and stored.strip():
        return stored.strip(), f"the keychain (service {KEYRING_SERVICE}, account {KEYRING_USER})"
    return "", "not in the keychain"


def os_keychain() -> Any:
    """Return the `keyring` module (imported late: it probes the OS keychain backends)."""
    import keyring

    return keyring


def require_api_key(
    environ: Mapping[str, str] = os.environ, keystore: Callable[[], KeyStore] = os_keychain
) -> str:
    """Return the API key, or raise CredentialsMissingError naming both ways to provide one."""
    key, _where = find_api_key(environ, keystore)
    if key:
        return key
    raise CredentialsMissingError(
        f"no Gemini API key: {API_KEY_ENV} is not set and the OS keychain has no entry "
        f"for service {KEYRING_SERVICE!r}, account {KEYRING_USER!r}",
        hint=(
            f"export {API_KEY_ENV}=... or store it in the keychain with `objlibd key set` "
            f"(or `python -m keyring set {KEYRING_SERVICE} {KEYRING_USER}`)"
        ),
    )


def system_keystore() -> KeyStore:
    """The OS keychain (macOS Keychain, Secret Service on Linux), loaded on first use."""
    import keyring

    store: KeyStore = keyring.get_keyring()
    return store
