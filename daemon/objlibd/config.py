"""TOML configuration: one file loaded into frozen dataclasses and validated up front.

Lookup order: `--config PATH`, then `$OBJLIBD_CONFIG`, then the platform user config dir
(`~/Library/Application Support/objlibd/objlibd.toml` on macOS, `~/.config/objlibd/...`
elsewhere). Unknown keys, wrong types and impossible values stop objlibd with
`<file>: [table] key: reason` (exit 2). Secrets never live here: the Gemini API key comes
from `GEMINI_API_KEY` or the OS keychain.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, get_args, get_origin, get_type_hints

from objlibd.errors import ConfigError

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


BACKENDS = ("local", "gemini")
TIERS = ("free", "tier1", "tier2", "tier3")
LEVELS = ("debug", "info", "warning", "error")
SEVERITIES = ("info", "warning", "error")  # objlibd.health's
# Models that serve File Search (shared/reference/gemini-file-search-query.md §1.3, newest
# docs list). The 2.5 models are being shut down: refused, with the replacement named.
SEARCH_MODELS = (
    "gemini-3.8-flash", "gemini-3.7-flash", "gemini-3.6-flash", "gemini-3.5-flash",
    "gemini-3.5-flash-lite", "gemini-3.1-pro-preview", "gemini-3.1-flash-lite",
    "gemini-3-flash-preview",
)  # fmt: skip
RETIRED_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite")


def resolve_path(explicit: str | os.PathLike[str] | None) -> Path:
    """Return the config file to use: explicit, else $OBJLIBD_CONFIG, else the platform one."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return default_config_path()


def load(path: Path) -> Config:
    """Read and validate `path`.

    Raises:
        ConfigError: the file is missing, not TOML, or a key is unknown or invalid.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found",
            hint="create it from config/objlibd.toml, pass --config, or run `objlibd demo`",
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_mapping(raw, source=path)


def from_mapping(raw: dict[str, Any], *, source: Path) -> Config:
    """Build a Config from parsed TOML; raise ConfigError naming file, table and key."""
    sections: dict[str, Any] = {}
    hints = get_type_hints(Config)
    for table, value in raw.items():
        if table not in hints or table == "source":
            raise ConfigError(f"{source}: [{table}]: unknown table", hint=_known(hints))
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{table}]: expected a table")
        sections[table] = _build(hints[table], value, source=source, where=f"[{table}]")
    config = Config(**sections, source=source)
    _check(config, source)
    return config


def _known(hints: dict[str, Any]) -> str:
    names = ", ".join(name for name in hints if name != "source")
    return f"known tables: {names}"


def _build(cls: type[Any], values: dict[str, Any], *, source: Path, where: str) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(hints)
            raise ConfigError(f"{source}: {where} {key}: unknown key", hint=f"known: {known}")
        kwargs[key] = _convert(hints[key], value, source=source, where=f"{where} {key}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: {where} {missing[0]}: required key is missing")
    return cls(**kwargs)


def _convert(kind: Any, value: Any, *, source: Path, where: str) -> Any:  # noqa: PLR0911, PLR0912
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: expected {expected}, got {value!r}")

    if kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("a whole number")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise fail("a path string")
        return Path(os.path.expandvars(value)).expanduser()
    if get_origin(kind) is tuple:
        (item,) = get_args(kind)[:1]
        if not isinstance(value, list):
            raise fail("a list")
        return tuple(
            _convert(item, v, source=source, where=f"{where}[{i}]") for i, v in enumerate(value)
        )
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, dict):
            raise fail("a table")
        return _build(kind, value, source=source, where=where)
    raise fail(str(kind))  # pragma: no cover - a field type this loader does not know


def _check(config: Config, source: Path) -> None:
    def fail(where: str, reason: str, hint: str = "") -> ConfigError:
        return ConfigError(f"{source}: {where}: {reason}", hint=hint)

    lib = config.library
    if not lib.mount_point.is_absolute():
        raise fail("[library] mount_point", "must be an absolute path")
    if not lib.root.is_absolute():
        raise fail("[library] root", "must be an absolute path")
    _check_paths(config, fail)
    if lib.max_file_mb <= 0:
        raise fail("[library] max_file_mb", "must be greater than 0")
    if not lib.marker_name or "/" in lib.marker_name:
        raise fail("[library] marker_name", "must be a plain file name")
    for index, ext in enumerate(lib.include):
        if not ext.startswith(".") or len(ext) < 2:
            raise fail(f"[library] include[{index}]", f"{ext!r} must look like '.pdf'")
    if config.store.backend not in BACKENDS:
        raise fail("[store] backend", f"{config.store.backend!r} is not one of {BACKENDS}")
    if not config.store.name.strip():
        raise fail("[store] name", "must not be empty")
    _check_numbers(config, fail)
    if config.gemini.rate_limit_tier not in TIERS:
        raise fail("[gemini] rate_limit_tier", f"must be one of {TIERS}")
    if config.logs.level not in LEVELS:
        raise fail("[logs] level", f"must be one of {LEVELS}")
    if config.notify.min_severity not in SEVERITIES:
        raise fail("[notify] min_severity", f"must be one of {SEVERITIES}")
    _check_timezone(config.jobs.timezone, fail)
    _check_search(config, fail)
    _check_rules(config.enrichment.rules, fail)


def _check_paths(config: Config, fail: Any) -> None:
    lib = config.library
    # Compared as resolved paths: ".." and symlinks must not smuggle the root off the drive
    # or the state onto it.
    real_mount, real_root = _real(lib.mount_point), _real(lib.root)
    if not _is_within(real_root, real_mount):
        resolved = "" if real_root == lib.root else f" (it resolves to {str(real_root)!r})"
        raise fail(
            "[library] root",
            f"{str(lib.root)!r} is outside mount_point {str(lib.mount_point)!r}{resolved}",
            hint="root must be the library folder on the drive mounted at mount_point",
        )
    for where, folder in (("[state] dir", config.state.dir), ("[logs] dir", config.logs.dir)):
        if real_mount != Path("/") and _is_within(_real(folder), real_mount):
            raise fail(
                where,
                f"{str(folder)!r} is on the library drive ({str(real_mount)!r}): it goes away "
                "when the drive is ejected",
                hint="use a folder on the Mac's own disk (the default is fine)",
            )


class Range(NamedTuple):
    """The finite interval a config number must fall in (`low` itself allowed or not)."""

    low: float
    high: float
    low_allowed: bool = False

    def problem(self, value: float) -> str | None:
        """Return why `value` is out of range, or None when it is fine."""
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if value < self.low or (value == self.low and not self.low_allowed):
            return f"must be {'at least' if self.low_allowed else 'greater than'} {self.low:g}"
        if value > self.high:
            return f"must be at most {self.high:g}"
        return None


_DAY = 86400.0
_YEAR_MINUTES = 525_600.0
# Every number in the config and its range: nan, inf and absurd sizes stop objlibd at start
# (a test keeps this table complete). The upper bounds are far above any sane setting; they
# exist so that time arithmetic, schedulers and sleeps never see a value they cannot hold.
RANGES: dict[str, Range] = {
    "[library] max_file_mb": Range(0, 100_000),
    "[sync] prune_after_days": Range(0, 3650),
    "[sync] mass_missing_percent": Range(0, 100),
    "[sync] mass_missing_files": Range(0, 100_000_000, low_allowed=True),
    "[sync] mass_missing_min_files": Range(0, 100_000_000, low_allowed=True),
    "[sync] quiet_seconds": Range(0, 3600),
    "[sync] max_wait_seconds": Range(0, _DAY),
    "[sync] batch_max_paths": Range(1, 1_000_000, low_allowed=True),
    "[sync] volume_poll_seconds": Range(0, 3600),
    "[sync] heartbeat_seconds": Range(0, 3600),
    "[sync] quarantine_after_failures": Range(1, 1000, low_allowed=True),
    "[sync] retry_backoff_seconds": Range(0, _DAY),
    "[sync] retry_backoff_max_seconds": Range(0, 30 * _DAY),
    "[jobs] orphan_cleanup_minutes": Range(0, _YEAR_MINUTES),
    "[jobs] prune_minutes": Range(0, _YEAR_MINUTES),
    "[jobs] reconcile_minutes": Range(0, _YEAR_MINUTES),
    "[jobs] misfire_grace_seconds": Range(1, 365 * _DAY, low_allowed=True),
    "[gemini] max_concurrent_uploads": Range(1, 64, low_allowed=True),
    "[gemini] rate_limit_rpm": Range(0, 1_000_000, low_allowed=True),
    "[gemini] rate_limit_max_rpm": Range(0, 1_000_000, low_allowed=True),
    "[gemini] timeout_seconds": Range(0, _DAY),
    "[gemini] poll_interval_seconds": Range(0, 3600),
    "[gemini] operation_deadline_seconds": Range(0, 7 * _DAY),
    "[gemini] max_attempts": Range(1, 100, low_allowed=True),
    "[gemini] retry_initial_delay_seconds": Range(0, _DAY),
    "[gemini] retry_max_delay_seconds": Range(0, _DAY),
    "[gemini] breaker_cooldown_seconds": Range(0, _DAY),
    "[health] store_unreachable_minutes": Range(0, 7 * 24 * 60.0),
    "[search] top_k": Range(1, 100, low_allowed=True),
    "[logs] max_bytes": Range(1, 2**40, low_allowed=True),
    "[logs] backups": Range(0, 1000, low_allowed=True),
}


def numbers(config: Config) -> dict[str, float]:
    """Return every number in the config by "[table] key"."""
    found: dict[str, float] = {}
    for table in dataclasses.fields(config):
        section = getattr(config, table.name)
        if not dataclasses.is_dataclass(section):
            continue
        for key in dataclasses.fields(section):
            value = getattr(section, key.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[f"[{table.name}] {key.name}"] = value
    return found


def _check_numbers(config: Config, fail: Any) -> None:
    for where, value in numbers(config).items():
        reason = RANGES[where].problem(value)
        if reason is not None:
            raise fail(where, reason)
    if config.sync.max_wait_seconds < config.sync.quiet_seconds:
        raise fail("[sync] max_wait_seconds", "must be at least quiet_seconds")
    if config.sync.retry_backoff_max_seconds < config.sync.retry_backoff_seconds:
        raise fail("[sync] retry_backoff_max_seconds", "must be at least retry_backoff_seconds")


def _check_timezone(name: str, fail: Any) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise fail("[jobs] timezone", f"{name!r} is not a known time zone") from None


def _check_search(config: Config, fail: Any) -> None:
    model = config.search.model
    if not model.strip() or "/" in model.removeprefix("models/"):
        raise fail("[search] model", f"{model!r} is not a model name like {SEARCH_MODELS[3]!r}")
    if model.removeprefix("models/") in RETIRED_MODELS:
        raise fail(
            "[search] model",
            f"{model!r} is being shut down by Google and may no longer answer",
            hint=f'use one of: {", ".join(SEARCH_MODELS)} (default "{SearchSettings().model}")',
        )


def _check_rules(rules: tuple[EnrichmentRule, ...], fail: Any) -> None:
    import re

    for index, rule in enumerate(rules):
        if rule.key in ("path", "sha256"):
            raise fail(f"[enrichment] rules[{index}] key", "path and sha256 are reserved")
        try:
            re.compile(rule.pattern)
        except re.error as err:
            raise fail(
                f"[enrichment] rules[{index}] pattern", f"not a valid regex: {err}"
            ) from None
    if len(rules) > 18:
        raise fail("[enrichment] rules", "at most 18 rules (a document holds 20 metadata entries)")


def _real(path: Path) -> Path:
    """Return `path` with "..", "." and every symlink that exists resolved."""
    return Path(os.path.realpath(path))


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
    except ValueError:
        return False
    return True
