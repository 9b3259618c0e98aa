"""Logging: the one place structlog and stdlib logging are configured, and the log reader.

The daemon writes JSON lines to `<logs.dir>/objlibd.jsonl`, rotated at `max_bytes` with
`backups` old files (`objlibd.jsonl.1` is the newest of those). stdlib records (watchdog,
APScheduler) go through the same `ProcessorFormatter`, so every line is JSON with `timestamp`,
`level`, `event` and `logger`. A key-based redactor runs last before rendering: values under
keys such as api_key/token/authorization/secret/password, and any registered secret value
(GEMINI_API_KEY), never reach the file. Tracebacks are plain text without locals.

Only the daemon writes the file (stdlib rotation is single-process); `objlibd logs` reads it
with `LogFilter`, `tail` and `follow` below.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import structlog

from objlibd.config import LogSettings

LOG_FILE = "objlibd.jsonl"
SECRET_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
REDACTED = "[redacted]"
LEVELS = ("debug", "info", "warning", "error", "critical")
_SECRET_KEY = re.compile(r"(api_?key|token|authorization|secret|password|passwd)", re.IGNORECASE)
_secret_values: set[str] = set()  # bounded: the API keys registered at start (one or two)


# -- redaction --------------------------------------------------------------------------------


def register_secret(value: str | None) -> None:
    """Make `value` (an API key read at run time) redacted wherever it appears in a log line."""
    if value and len(value) >= 8:
        _secret_values.add(value)


def _scrub_text(text: str) -> str:
    for secret in _secret_values:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any, key: str = "") -> Any:
    """Return `value` with secret keys and registered secret values replaced."""
    if key and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return value


def redact_processor(_logger: Any, _method: str, event_dict: Any) -> Any:
    """structlog processor: redact the whole event dict (placed right before rendering)."""
    return {k: redact(v, k) for k, v in event_dict.items()}


# -- setup ------------------------------------------------------------------------------------


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # plain text, never locals
    ]


def _formatter(renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors()[1:],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,  # last before rendering, for structlog and stdlib records alike
            renderer,
        ],
    )


def setup(settings: LogSettings, *, console: bool, to_file: bool = True) -> Path | None:
    """Configure structlog and stdlib logging; return the log file written, if any.

    `console` adds human output on stderr (for `objlibd run` on a TTY).
    """
    for name in SECRET_ENV:
        register_secret(os.environ.get(name))
    level = getattr(logging, settings.level.upper(), logging.INFO)
    root = logging.getLogger()
    reset()
    root.setLevel(level)
    path: Path | None = None
    if to_file:
        settings.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A log line that cannot be written (a full disk) is dropped, not printed as a
        # "--- Logging error ---" traceback on stderr for every line.
        logging.raiseExceptions = False
        path = settings.dir / LOG_FILE
        handler = _PrivateRotatingHandler(
            path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8"
        )
        handler.setFormatter(_formatter(structlog.processors.JSONRenderer(sort_keys=False)))
        root.addHandler(handler)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        stream.setFormatter(_formatter(renderer))
        root.addHandler(stream)
    # Their INFO is per-job chatter ("Running job ..."); ours already says it once, as data.
    noisy = logging.INFO if level <= logging.DEBUG else logging.WARNING
    logging.getLogger("watchdog").setLevel(noisy)
    logging.getLogger("apscheduler").setLevel(noisy)
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    return path


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """Rotating log files created 0600: the log names every document of the library."""

    def _open(self) -> Any:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        return open(  # noqa: PTH123 - the handler owns and closes the stream
            os.open(self.baseFilename, flags, 0o600), self.mode, encoding=self.encoding,
            errors=self.errors,
        )  # fmt: skip


def reset() -> None:
    """Remove the handlers setup() added (tests, and before re-configuring on SIGHUP)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
            handler.close()
    structlog.reset_defaults()


# -- reading ------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """Parse `10m`, `2h`, `1d` (before `now`) or an ISO time (UTC when no zone).

    Raises:
        ValueError: neither form.
    """
    match = _RELATIVE.match(text)
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])
    moment = dt.datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _timestamp(record: Mapping[str, Any]) -> dt.datetime | None:
    raw = record.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def level_rank(level: object) -> int:
    """Return the order of a level name (unknown names rank as info)."""
    name = str(level).lower()
    name = "warning" if name == "warn" else name
    return LEVELS.index(name) if name in LEVELS else 1


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which lines `objlibd logs` shows."""

    level: str | None = None
    since: dt.datetime | None = None
    grep: str | None = None

    def matches(self, line: str, record: Mapping[str, Any]) -> bool:
        """Return True if a parsed line passes every filter."""
        if self.level and level_rank(record.get("level")) < level_rank(self.level):
            return False
        if self.since is not None:
            moment = _timestamp(record)
            if moment is None or moment < self.since:
                return False
        return not self.grep or self.grep.lower() in line.lower()


def log_files(log_dir: Path) -> list[Path]:
    """Return the log file and its rotated backups, oldest first."""
    backups = []
    for path in log_dir.glob(LOG_FILE + ".*"):
        suffix = path.name[len(LOG_FILE) + 1 :]
        if suffix.isdigit():
            backups.append((int(suffix), path))
    ordered = [path for _, path in sorted(backups, reverse=True)]
    current = log_dir / LOG_FILE
    return [*ordered, current] if current.exists() else ordered


def parse_line(line: str) -> dict[str, Any] | None:
    """Return a log line as a dict, or None when it is not one of ours."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read(log_dir: Path, flt: LogFilter) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (line, record) for matching lines across rotated files, oldest first."""
    for path in log_files(log_dir):
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                yield from _matching(handle, flt)
        except FileNotFoundError:
            continue  # rotated away while we listed


def _matching(handle: TextIO, flt: LogFilter) -> Iterator[tuple[str, dict[str, Any]]]:
    for raw in handle:
        line = raw.rstrip("\n")
        record = parse_line(line)
        if record is not None and flt.matches(line, record):
            yield line, record


def tail(log_dir: Path, flt: LogFilter, count: int | None) -> list[tuple[str, dict[str, Any]]]:
    """Return the last `count` matching lines (all when None)."""
    if count is None:
        return list(read(log_dir, flt))
    from collections import deque

    return list(deque(read(log_dir, flt), maxlen=max(count, 0)))


def follow(
    log_dir: Path,
    flt: LogFilter,
    *,
    keep_going: Callable[[], bool],
    poll: float = 0.25,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield lines appended from now on, across rotations, while `keep_going()`."""
    path = log_dir / LOG_FILE
    handle = _open_at_end(path)
    pending = ""
    try:
        while keep_going():
            chunk = handle.read() if handle else ""
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    record = parse_line(line)
                    if record is not None and flt.matches(line, record):
                        yield line, record
                continue
            if _rotated(path, handle):
                if handle:
                    handle.close()
                handle = _open(path)
                continue
            time.sleep(poll)
    finally:
        if handle:
            handle.close()


def _open(path: Path) -> TextIO | None:
    try:
        return path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _open_at_end(path: Path) -> TextIO | None:
    handle = _open(path)
    if handle:
        handle.seek(0, os.SEEK_END)
    return handle


def _rotated(path: Path, handle: TextIO | None) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    if handle is None:
        return True
    mine = os.fstat(handle.fileno())
    return now.st_ino != mine.st_ino or now.st_size < handle.tell()


# -- rendering ------------------------------------------------------------------------------

_COLORS = {"debug": "\033[2m", "info": "\033[32m", "warning": "\033[33m", "error": "\033[31m"}
_SKIP = ("timestamp", "level", "event", "logger", "exception")


def render(record: Mapping[str, Any], *, color: bool) -> str:
    """Return one record as a human line: time, level, event, key=value..., then any traceback."""
    moment = _timestamp(record)
    when = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"
    level = str(record.get("level", "info")).lower()
    pairs = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in _SKIP)
    tag = f"{level:<7}"
    if color:
        tag = f"{_COLORS.get(level, '')}{tag}\033[0m"
    line = f"{when} {tag} {record.get('event', '')}" + (f"  {pairs}" if pairs else "")
    exc = record.get("exception")
    return f"{line}\n{exc}" if exc else line


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
