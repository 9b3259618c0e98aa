"""TOML configuration: one file loaded into frozen dataclasses and validated up front.

Lookup order: `--config PATH`, then `$OBJLIBD_CONFIG`, then the platform user config dir
(`~/Library/Application Support/objlibd/objlibd.toml` on macOS, `~/.config/objlibd/...`
elsewhere). Unknown keys, wrong types and impossible values stop objlibd with
`<file>: [table] key: reason` (exit 2). Secrets never live here: the Gemini API key comes
from `GEMINI_API_KEY` or the OS keychain.

`settings` holds the dataclasses and their defaults, `loading` reads the file into them,
`rules` checks the values (ranges, paths, names). The names below are the package's API.
"""

from objlibd.config.loading import from_mapping, load, resolve_path
from objlibd.config.rules import (
    BACKENDS,
    LEVELS,
    RANGES,
    RETIRED_MODELS,
    SEARCH_MODELS,
    SEVERITIES,
    TIERS,
    Range,
    numbers,
)
from objlibd.config.settings import (
    APP_NAME,
    CONFIG_ENV,
    DEFAULT_EXCLUDE,
    DEFAULT_INCLUDE,
    Config,
    EnrichmentRule,
    EnrichmentSettings,
    GeminiSettings,
    HealthSettings,
    JobSettings,
    LibrarySettings,
    LogSettings,
    NotifySettings,
    SearchSettings,
    StateSettings,
    StoreSettings,
    SyncSettings,
    default_config_path,
    default_log_dir,
    default_state_dir,
)

__all__ = [
    "APP_NAME",
    "BACKENDS",
    "CONFIG_ENV",
    "DEFAULT_EXCLUDE",
    "DEFAULT_INCLUDE",
    "LEVELS",
    "RANGES",
    "RETIRED_MODELS",
    "SEARCH_MODELS",
    "SEVERITIES",
    "TIERS",
    "Config",
    "EnrichmentRule",
    "EnrichmentSettings",
    "GeminiSettings",
    "HealthSettings",
    "JobSettings",
    "LibrarySettings",
    "LogSettings",
    "NotifySettings",
    "Range",
    "SearchSettings",
    "StateSettings",
    "StoreSettings",
    "SyncSettings",
    "default_config_path",
    "default_log_dir",
    "default_state_dir",
    "from_mapping",
    "load",
    "numbers",
    "resolve_path",
]
