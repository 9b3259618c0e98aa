"""Reading the config file: where it is, TOML into the settings dataclasses, typed keys.

Unknown tables and keys and wrong types stop objlibd with `<file>: [table] key: reason`;
the values are then checked by `rules.check`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from objlibd.config.rules import check
from objlibd.config.settings import CONFIG_ENV, Config, default_config_path
from objlibd.errors import ConfigError


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
    check(config, source)
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
