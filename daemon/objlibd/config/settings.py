"""The settings: one frozen dataclass per config table, with every default.

Pure values (no I/O): `loading` builds them from TOML, `rules` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

APP_NAME = "objlibd"
CONFIG_ENV = "OBJLIBD_CONFIG"

# Every default is a type the Gemini store accepts (remote/filetypes.py; a test keeps it so).
DEFAULT_INCLUDE = (
    ".pdf", ".txt", ".md", ".docx", ".doc", ".rtf", ".html", ".htm",
    ".odt", ".csv", ".json", ".xml", ".tex", ".pptx", ".xlsx",
)  # fmt: skip
DEFAULT_EXCLUDE = (
    ".*", "~$*", "*.tmp", "*.part", "*.crdownload", "*.swp", "Thumbs.db", "desktop.ini",
    ".Spotlight-V100", ".Trashes", ".fseventsd", ".TemporaryItems", "$RECYCLE.BIN",
)  # fmt: skip


# platformdirs loads only when a default is needed: a config that names its dirs (and
# `objlibd status` with one) never pays for it.


def default_state_dir() -> Path:
    """Return the platform data dir for objlibd (never on the library drive)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_log_dir() -> Path:
    """Return the platform log dir (`~/Library/Logs/objlibd` on macOS)."""
    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def default_config_path() -> Path:
    """Return where the config file lives when neither --config nor $OBJLIBD_CONFIG is given."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "objlibd.toml"


@dataclass(frozen=True, slots=True)
class LibrarySettings:
    """[library]: where the documents are and which ones count."""

    mount_point: Path = Path("/Volumes/U32 Shadow")
    root: Path = Path("/Volumes/U32 Shadow/Objectivism Library")
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    max_file_mb: float = 100.0
    marker_name: str = ".objlibd-library"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """[store]: which backend and which store (by display name)."""

    backend: str = "local"
    name: str = "objectivism-library"


@dataclass(frozen=True, slots=True)
class StateSettings:
    """[state]: where the SQLite DB, local store, pid file live."""

    dir: Path = field(default_factory=default_state_dir)


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """[sync]: safety limits and the daemon's debounce window."""

    prune_after_days: float = 7.0
    mass_missing_percent: float = 20.0
    mass_missing_files: int = 200
    mass_missing_min_files: int = 5
    quiet_seconds: float = 3.0
    max_wait_seconds: float = 60.0
    batch_max_paths: int = 500
    volume_poll_seconds: float = 2.0
    heartbeat_seconds: float = 2.0
    # Failure memory: a file whose content the store refused this many times is quarantined;
    # transient failures back a file off across runs, doubling from ..._seconds up to ..._max.
    quarantine_after_failures: int = 3
    retry_backoff_seconds: float = 60.0
    retry_backoff_max_seconds: float = 21600.0


@dataclass(frozen=True, slots=True)
class JobSettings:
    """[jobs]: the daemon's schedule (APScheduler, explicit timezone)."""

    orphan_cleanup_minutes: float = 60.0
    prune_minutes: float = 1440.0
    reconcile_minutes: float = 10.0  # the backstop: a quiet reconcile costs one stat walk
    timezone: str = "UTC"
    misfire_grace_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class EnrichmentRule:
    """Path-derived metadata: `key` gets the regex group `value` (or the whole match)."""

    key: str
    pattern: str


@dataclass(frozen=True, slots=True)
class EnrichmentSettings:
    """[enrichment]: metadata derived from the path, attached after the identity keys."""

    rules: tuple[EnrichmentRule, ...] = (
        EnrichmentRule(key="collection", pattern=r"^(?P<value>[^/]+)/"),
        EnrichmentRule(key="extension", pattern=r"\.(?P<value>[A-Za-z0-9]+)$"),
    )


@dataclass(frozen=True, slots=True)
class GeminiSettings:
    """[gemini]: the Gemini File Search backend."""

    api_version: str = "v1beta"
    base_url: str = ""
    max_concurrent_uploads: int = 4
    # Where the adaptive pace starts when it has learned nothing yet for this store: the
    # tier's requests/minute, or rate_limit_rpm when > 0; rate_limit_max_rpm > 0 caps it.
    rate_limit_tier: str = "tier1"
    rate_limit_rpm: float = 0.0
    rate_limit_max_rpm: float = 0.0
    timeout_seconds: float = 120.0
    poll_interval_seconds: float = 3.0
    operation_deadline_seconds: float = 600.0
    max_attempts: int = 6
    # Retry backoff (exponential with jitter) and the circuit breaker's cooldown; tests
    # shrink these so storms finish in seconds.
    retry_initial_delay_seconds: float = 1.0
    retry_max_delay_seconds: float = 60.0
    breaker_cooldown_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """[health]: when a failing store counts as unreachable (a problem for a person)."""

    store_unreachable_minutes: float = 10.0


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """[notify]: desktop notifications when a problem appears and when it clears."""

    enabled: bool = True
    min_severity: str = "warning"  # "info", "warning" or "error"


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """[search]: `objlibd search` and `objlibd doctor --deep`."""

    model: str = "gemini-3.5-flash"  # gemini backend: the model that answers (with File Search)
    top_k: int = 8  # passages retrieved per question


@dataclass(frozen=True, slots=True)
class LogSettings:
    """[logs]: where the daemon writes JSON lines and how much."""

    dir: Path = field(default_factory=default_log_dir)
    level: str = "info"
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, validated."""

    library: LibrarySettings = field(default_factory=LibrarySettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    state: StateSettings = field(default_factory=StateSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    enrichment: EnrichmentSettings = field(default_factory=EnrichmentSettings)
    gemini: GeminiSettings = field(default_factory=GeminiSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    source: Path | None = None

    @property
    def db_path(self) -> Path:
        """Return the state database file."""
        return self.state.dir / "objlibd.db"
