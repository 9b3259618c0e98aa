"""What a loaded config must satisfy: ranges for every number, paths off the drive, names.

Impossible values stop objlibd at start with `<file>: [table] key: reason` (exit 2).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

from objlibd.config.settings import Config, EnrichmentRule, SearchSettings
from objlibd.errors import ConfigError

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


def check(config: Config, source: Path) -> None:
    """Raise ConfigError naming file, table and key for the first impossible value."""

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
