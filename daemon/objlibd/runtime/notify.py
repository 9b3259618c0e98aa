"""Desktop notifications: one when a problem appears, one when it clears.

The daemon hands every heartbeat's problems (`objlibd.health`) to `Notifier.observe`. The
decision is pure (`observe` on a `Book`, tested with a fake clock): a problem of at least
`[notify] min_severity` that stays `grace` seconds is announced; once it has been gone for
`grace` seconds its clearing is announced, if its appearance was. A problem is announced at
most once an hour (`INTERVAL`), so a flapping one cannot spam. The book also remembers when
each problem began, which the heartbeat passes on to `objlibd status` as `since`.

Sending goes through an injected runner with an argv list, never a shell: macOS runs
`osascript -e 'display notification "…" with title "objlibd"'`; elsewhere `notify-send` when
it is installed (without it, objlibd says so once in the log and carries on). The text says
what happened and the command that fixes it, and passes the log's secret redactor first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from objlibd.config import NotifySettings
from objlibd.status import health

log = structlog.get_logger("objlibd.notify")

INTERVAL = 3600.0  # never more than one announcement per problem per hour
TITLE = "objlibd"
MAX_TEXT = 240
BOOK_NAME = "notify.json"

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


@dataclass(slots=True)
class Entry:
    """A problem the book follows, from the first heartbeat that showed it."""

    since: float
    severity: str
    message: str
    fix: str
    announced: bool = False
    absent_since: float | None = None


@dataclass(slots=True)
class Book:
    """What the notifier remembers (kept in the state dir across restarts)."""

    entries: dict[str, Entry] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)  # code -> last announcement

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        return {"entries": {c: asdict(e) for c, e in self.entries.items()}, "sent": self.sent}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Book:
        """Read the stored form; anything unreadable starts an empty book."""
        book = cls()
        try:
            for code, raw in (data or {}).get("entries", {}).items():
                book.entries[str(code)] = Entry(**raw)
            book.sent = {str(c): float(t) for c, t in (data or {}).get("sent", {}).items()}
        except (TypeError, ValueError, AttributeError):
            return cls()
        return book


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification to send."""

    code: str
    kind: str  # "problem" or "resolved"
    severity: str
    text: str


def observe(
    book: Book,
    problems: Sequence[health.Problem],
    now: float,
    *,
    min_severity: str = health.WARNING,
    grace: float = 0.0,
    enabled: bool = True,
) -> list[Notice]:
    """Update `book` with this heartbeat's problems; return the notifications due now."""
    notices: list[Notice] = []
    current = {p["code"]: p for p in problems}
    for code, problem in current.items():
        entry = book.entries.get(code)
        if entry is None:
            entry = book.entries[code] = Entry(
                now, problem["severity"], problem["message"], problem["fix"]
            )
        entry.absent_since = None
        entry.severity, entry.message, entry.fix = (
            problem["severity"], problem["message"], problem["fix"],
        )  # fmt: skip
        wanted = enabled and health.rank(entry.severity) >= health.rank(min_severity)
        if wanted and not entry.announced and now - entry.since >= grace:
            if now - book.sent.get(code, -INTERVAL) >= INTERVAL:
                book.sent[code] = now
                notices.append(Notice(code, "problem", entry.severity, problem_text(entry)))
            entry.announced = True  # within the hour: this appearance stays silent
    for code, entry in list(book.entries.items()):
        if code in current:
            continue
        if entry.absent_since is None:
            entry.absent_since = now
        if now - entry.absent_since >= grace:
            del book.entries[code]
            if entry.announced and book.sent.get(code, -INTERVAL) >= entry.since:
                notices.append(Notice(code, "resolved", entry.severity, resolved_text(entry)))
    return notices


def problem_text(entry: Entry) -> str:
    """Return what happened and the fix, short enough for a notification."""
    fix = f" Fix: {entry.fix}"
    room = max(MAX_TEXT - len(fix), 60)
    message = entry.message if len(entry.message) <= room else entry.message[: room - 1] + "…"
    return f"{message}.{fix}" if not message.endswith(".") else f"{message}{fix}"


def resolved_text(entry: Entry) -> str:
    """Return the all-clear for a problem that was announced."""
    text = f"Resolved: {entry.message}"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def command(
    platform: str, notice: Notice, which: Callable[[str], str | None] = shutil.which
) -> list[str] | None:
    """Return the argv that shows `notice` on this platform, or None when nothing can."""
    title = f"{TITLE}: {'resolved' if notice.kind == 'resolved' else notice.severity}"
    if platform == "darwin":
        script = (
            f"display notification {applescript(notice.text)} with title {applescript(TITLE)}"
            f" subtitle {applescript(title)}"
        )
        return ["osascript", "-e", script]
    if which("notify-send") is None:
        return None
    urgency = (
        "critical" if notice.severity == health.ERROR and notice.kind == "problem" else "normal"
    )
    return ["notify-send", f"--app-name={TITLE}", f"--urgency={urgency}", title, notice.text]


def applescript(text: str) -> str:
    """Return `text` as an AppleScript string literal."""
    flat = " ".join(text.split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a notifier briefly (it must not hold up the heartbeat); 127 when it is missing."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=5)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]}: timed out after 5 s")
    except OSError as err:  # not executable for this user, ...
        return subprocess.CompletedProcess(argv, 126, "", f"{argv[0]}: {err.strerror or err}")


class Notifier:
    """The daemon's notifier: the book on disk, the platform's command, the runner."""

    def __init__(
        self,
        settings: NotifySettings,
        state_dir: Path,
        *,
        grace: float,
        runner: Runner = run_command,
        platform: str = sys.platform,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.settings = settings
        self.grace = grace
        self.runner = runner
        self.platform = platform
        self.which = which
        self._path = state_dir / BOOK_NAME
        self._book = Book.from_json(_read(self._path))
        self._saved = json.dumps(self._book.to_json(), sort_keys=True)
        self._said: set[str] = set()  # log lines said once (no notifier, a failing one)

    @property
    def seen(self) -> dict[str, float]:
        """Return when each current problem began (epoch), for `status`'s since-times."""
        return {code: entry.since for code, entry in self._book.entries.items()}

    def observe(self, problems: Sequence[health.Problem], now: float) -> list[Notice]:
        """Take one heartbeat's problems; send and return what is due."""
        notices = observe(
            self._book, problems, now, min_severity=self.settings.min_severity,
            grace=self.grace, enabled=self.settings.enabled,
        )  # fmt: skip
        for notice in notices:
            self._send(notice)
        self._save()
        return notices

    def _send(self, notice: Notice) -> None:
        from objlibd import logs

        text = logs.redact(notice.text)
        argv = command(self.platform, Notice(notice.code, notice.kind, notice.severity, text),
                       self.which)  # fmt: skip
        if argv is None:
            self._once("notify.unavailable", reason="notify-send is not installed",
                       hint="install libnotify (notify-send) for desktop notifications, or set "
                       "[notify] enabled = false")  # fmt: skip
            return
        result = self.runner(argv)
        if result.returncode != 0:
            self._once("notify.failed", program=argv[0], code=result.returncode,
                       error=(result.stderr or "").strip()[:200])  # fmt: skip
            return
        log.info("notify.sent", code=notice.code, kind=notice.kind)

    def _once(self, event: str, **details: object) -> None:
        if event not in self._said:
            self._said.add(event)
            log.warning(event, **details)

    def _save(self) -> None:
        from objlibd.status import files

        text = json.dumps(self._book.to_json(), sort_keys=True)
        if text == self._saved:
            return
        try:
            files.write_json_atomic(self._path, self._book.to_json())
        except OSError as err:
            self._once("notify.book_unsaved", error=str(err))
            return
        self._saved = text


def _read(path: Path) -> dict[str, Any] | None:
    from objlibd.status import files

    return files.read_json(path)
