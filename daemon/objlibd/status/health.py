"""The health model: one pure function from facts to a state and the problems a person must solve.

`objlibd status` (text and `--json`), `objlibd doctor` and the desktop notifications all read
`assess`; nothing else decides whether objlibd is healthy. Each problem has a stable `code`,
a `severity`, the time it began (`since`, ISO UTC, or None when nobody saw it begin), what
happened (`message`) and the exact fix (`fix`, the command or setting that solves it).

Severities: "info" is a note that needs no one (waiting for the drive, paused on purpose);
"warning" and "error" need a person ("error" when objlibd cannot do its job at all). The
state is "unhealthy" when any problem is a warning or an error, "waiting" when there are only
notes, else "healthy"; `status` exits 1 only when unhealthy. A drive that is simply not
connected is a note: the daemon waits and changes nothing.

No I/O, no clock: the facts carry `now`. `status` imports this on its hot path, so it uses
plain dicts (typed for mypy as TypedDicts) and nothing heavier than the standard builtins.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NotRequired, TypedDict

    class Problem(TypedDict):
        """One thing that is wrong (or a note), JSON-ready."""

        code: str
        severity: str
        since: str | None
        message: str
        fix: str

    class Health(TypedDict):
        """The verdict: a state and the problems, worst first."""

        state: str
        problems: list[Problem]

    class Facts(TypedDict, total=False):
        """What the daemon, its heartbeat, the state DB and the config say (all optional)."""

        now: float  # epoch seconds
        running: bool
        volume: dict[str, Any]  # state, reason, hint, cause, since
        watcher_alive: bool
        watch_failed: str | None  # the watch cannot start; a periodic reconcile stands in
        paused: bool
        paused_since: str | None
        pending_paths: int
        files: dict[str, int]  # files per status
        breaker: str | None
        hold: dict[str, Any] | None  # since, reason, count
        confirm_pending: dict[str, Any] | None  # a stored confirmation: waiting_for
        quarantined: int
        store_failing_since: float | None  # epoch of the first failure since the last answer
        store_error: str | None
        unreachable_after_s: float
        store_full: dict[str, Any] | None  # message, since
        state_disk_full: str | None
        state_db: str | None  # the state DB cannot be read
        daemon_problem: str | None
        daemon_problem_fix: NotRequired[str]
        config_changed: bool
        last_success: str | None
        seen: dict[str, str]  # code -> when the daemon first saw it
        state_dir: str
        drive: str  # the drive's name, for the fixes


INFO, WARNING, ERROR = "info", "warning", "error"
SEVERITIES = (INFO, WARNING, ERROR)
HEALTHY, WAITING, UNHEALTHY = "healthy", "waiting", "unhealthy"
DEFAULT_UNREACHABLE_S = 600.0

# Every code this model can produce (a test keeps the list complete and the fixes non-empty).
CODES = (
    "daemon_not_running", "state_db_unreadable", "state_disk_full", "library_unreadable",
    "drive_read_error", "wrong_drive", "mass_missing_held", "confirm_waiting", "store_full",
    "store_unreachable", "daemon_problem", "watch_failed", "watcher_dead", "breaker_open",
    "quarantined", "config_changed", "paused", "drive_not_connected",
)  # fmt: skip


def rank(severity: str) -> int:
    """Return 0 for info, 1 for warning, 2 for error (unknown counts as error)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 2


def assess(facts: Facts) -> Health:
    """Return the state and the problems (worst first, then by code) for `facts`."""
    found: list[Problem] = []
    for rule in _RULES:
        found.extend(rule(facts))
    seen = facts.get("seen") or {}
    for problem in found:
        if problem["since"] is None:
            problem["since"] = seen.get(problem["code"])
    found.sort(key=lambda p: (-rank(p["severity"]), CODES.index(p["code"])))
    worst = max((rank(p["severity"]) for p in found), default=-1)
    state = UNHEALTHY if worst >= 1 else WAITING if worst == 0 else HEALTHY
    return {"state": state, "problems": found}


def _problem(code: str, severity: str, message: str, fix: str, since: str | None = None) -> Problem:
    return {"code": code, "severity": severity, "since": since, "message": message, "fix": fix}


# -- the rules: each looks at a few facts and returns its problems ------------------------------


def _daemon(facts: Facts) -> list[Problem]:
    if facts.get("running", False):
        return []
    return [
        _problem(
            "daemon_not_running", ERROR, "objlibd is not running: nothing is watched or synced",
            "`objlibd start` (or `objlibd run` in a terminal); `objlibd logs` says why it stopped",
        )
    ]  # fmt: skip


def _state(facts: Facts) -> list[Problem]:
    found = []
    if facts.get("state_db"):
        found.append(_problem(
            "state_db_unreadable", ERROR, f"the state database cannot be used: {facts['state_db']}",
            "`objlibd sync` or `objlibd restart`: a damaged DB is moved aside (kept) and "
            "rebuilt from the store, nothing uploaded twice; `objlibd doctor` checks it",
        ))  # fmt: skip
    if facts.get("state_disk_full"):
        where = facts.get("state_dir") or "the state dir"
        found.append(_problem(
            "state_disk_full", ERROR, str(facts["state_disk_full"]),
            f"free some space on the disk that holds {where}; objlibd catches up by itself",
        ))  # fmt: skip
    return found


def _volume(facts: Facts) -> list[Problem]:
    volume = facts.get("volume") or {}
    state, cause = volume.get("state"), volume.get("cause") or ""
    reason, hint, since = volume.get("reason") or "", volume.get("hint") or "", volume.get("since")
    drive = facts.get("drive") or "the library drive"
    if state == "degraded":
        return [_problem("wrong_drive", ERROR, f"the drive is not usable: {reason}",
                         hint or "`objlibd marker` explains the drive it sees", since)]  # fmt: skip
    if state == "available" or not facts.get("running", False):
        return []
    if cause == "unreadable":
        fix = hint or "give objlibd read access to the library folder"
        return [_problem("library_unreadable", ERROR,
                         f"objlibd cannot read the library, so nothing syncs: {reason}", fix,
                         since)]  # fmt: skip
    if cause == "io_error":
        return [_problem("drive_read_error", WARNING, f"the drive cannot be read: {reason}",
                         hint or f'reconnect "{drive}"; if it keeps failing, check the drive',
                         since)]  # fmt: skip
    return [_problem("drive_not_connected", INFO, f"waiting for the drive: {reason}",
                     f'connect "{drive}"; meanwhile objlibd changes nothing in the store',
                     since)]  # fmt: skip


def _hold(facts: Facts) -> list[Problem]:
    hold = facts.get("hold")
    if not hold:
        return []
    count = hold.get("count")
    what = f"{count} files" if count else "many files"
    since = hold.get("since") or None
    pending = facts.get("confirm_pending")
    if pending:
        waiting = pending.get("waiting_for") or "objlibd to be able to act"
        return [_problem(
            "confirm_waiting", WARNING,
            f"your confirmation of the held disappearance of {what} waits for: {waiting}",
            "`objlibd resume` if paused, or connect the drive; it is applied then", since,
        )]  # fmt: skip
    return [_problem(
        "mass_missing_held", ERROR,
        f"{what} vanished at once ({hold.get('reason') or 'held'}): held, nothing is marked "
        "missing and their documents stay in the store",
        "`objlibd missing` lists them; if they are really gone run `objlibd missing --confirm`, "
        "otherwise put them back or reconnect the drive",
        since,
    )]  # fmt: skip


def work_waiting(facts: Facts) -> int:
    """Return how much work waits: paths queued or parked, plus files in doubt or failed."""
    files = facts.get("files") or {}
    return int(facts.get("pending_paths", 0)) + files.get("uploading", 0) + files.get("failed", 0)


def _store(facts: Facts, now: float) -> list[Problem]:
    found = []
    full = facts.get("store_full")
    if full:
        found.append(_problem(
            "store_full", ERROR, f"the store is full, uploads stopped: {full.get('message', '')}",
            "delete documents from the store or raise its storage tier, then `objlibd restart` "
            "uploads the rest", full.get("since"),
        ))  # fmt: skip
    failing = facts.get("store_failing_since")
    limit = facts.get("unreachable_after_s", DEFAULT_UNREACHABLE_S)
    waiting = work_waiting(facts)
    if failing is not None and now - failing >= limit and waiting and facts.get("running", False):
        last = facts.get("last_success")
        error = facts.get("store_error") or "no answer"
        found.append(_problem(
            "store_unreachable", ERROR,
            f"store unreachable for {_minutes(now - failing)} with {waiting} waiting "
            f"(last successful sync {last or 'never'}): {error}",
            "check the network and [gemini] base_url; `objlibd doctor` tries the store now; "
            "the parked work runs by itself once it answers", _iso(failing),
        ))  # fmt: skip
    if facts.get("breaker") == "open":
        found.append(_problem(
            "breaker_open", WARNING,
            "the store is rate-limiting objlibd (circuit breaker open): uploads wait",
            "nothing if it closes within minutes; if it keeps opening, lower [gemini] "
            "rate_limit_tier or set rate_limit_rpm",
        ))  # fmt: skip
    return found


def _daemon_problem(facts: Facts) -> list[Problem]:
    text = facts.get("daemon_problem")
    if not text:
        return []
    fix = facts.get("daemon_problem_fix") or "see `objlibd logs --level error`"
    return [_problem("daemon_problem", ERROR, str(text), fix)]


def _watch(facts: Facts) -> list[Problem]:
    volume = facts.get("volume") or {}
    if not facts.get("running", False) or volume.get("state") != "available":
        return []
    if facts.get("watch_failed"):
        return [_problem(
            "watch_failed", WARNING, str(facts["watch_failed"]),
            "changes still sync through the periodic reconcile; on Linux raise "
            "fs.inotify.max_user_watches, then `objlibd restart`",
        )]  # fmt: skip
    if not facts.get("watcher_alive", False):
        return [_problem(
            "watcher_dead", WARNING, "the drive is available but nothing watches the library",
            "`objlibd restart`; if it persists, see `objlibd logs --level warning`",
        )]  # fmt: skip
    return []


def _files(facts: Facts) -> list[Problem]:
    count = facts.get("quarantined", 0)
    if not count:
        return []
    return [_problem(
        "quarantined", WARNING,
        f"{count} file{'s' if count != 1 else ''} refused by the store too often, quarantined",
        "`objlibd failures` lists them with the store's reason; fix or convert a file (an edit "
        "frees it), or `objlibd retry PATH` to try once more",
    )]  # fmt: skip


def _settings(facts: Facts) -> list[Problem]:
    found = []
    if facts.get("running", False) and facts.get("config_changed"):
        found.append(_problem(
            "config_changed", WARNING,
            "the config file changed since objlibd started: the daemon still runs the old one",
            "`objlibd doctor` checks the new one; `objlibd restart` applies it",
        ))  # fmt: skip
    if facts.get("paused"):
        found.append(_problem(
            "paused", INFO, "paused: uploads and deletes wait, watching goes on",
            "`objlibd resume`", facts.get("paused_since"),
        ))  # fmt: skip
    return found


_RULES = (
    _daemon, _state, _volume, _hold,
    lambda facts: _store(facts, facts.get("now", 0.0)),
    _daemon_problem, _watch, _files, _settings,
)  # fmt: skip


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _iso(epoch: float) -> str:
    from objlibd.state import dbtime

    return dbtime.iso_seconds(epoch)
