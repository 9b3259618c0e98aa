"""Notifications: one when a problem appears, one when it clears, never a flood, never a secret."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from objlibd import logs
from objlibd.config import NotifySettings
from objlibd.runtime import notify
from objlibd.status import health

HOLD = "mass_missing_held"


def problem(code: str = HOLD, severity: str = "error", message: str = "12 files vanished") -> Any:
    return {"code": code, "severity": severity, "since": None, "message": message,
            "fix": "`objlibd missing --confirm` if they are really gone"}  # fmt: skip


def run(steps: list[tuple[float, list[Any]]], **kw: Any) -> list[tuple[float, str, str]]:
    """Feed (time, problems) heartbeats to one book; return (time, code, kind) of each notice."""
    book = notify.Book()
    sent = []
    for now, problems in steps:
        sent += [(now, n.code, n.kind) for n in notify.observe(book, problems, now, **kw)]
    return sent


def test_a_standing_problem_is_announced_once_and_its_clearing_once() -> None:
    beats = [(t, [problem()]) for t in range(0, 100, 2)] + [(t, []) for t in range(100, 120, 2)]

    assert run(beats, grace=5) == [(6, HOLD, "problem"), (106, HOLD, "resolved")]


def test_what_comes_and_goes_within_the_grace_is_never_announced() -> None:
    blip = [(0, [problem()]), (2, [problem()]), (4, []), (10, []), (20, [])]
    flicker = [(0, [problem()]), (2, []), (4, [problem()]), (6, [problem()]), (20, []), (30, [])]

    assert run(blip, grace=5) == []
    assert run(flicker, grace=5) == [(6, HOLD, "problem"), (30, HOLD, "resolved")]  # it stands


def test_a_flapping_problem_is_announced_once_an_hour_at_most() -> None:
    def flap(start: float) -> list[tuple[float, list[Any]]]:
        return [(start, [problem()]), (start + 10, [problem()]), (start + 20, []),
                (start + 30, [])]  # fmt: skip

    beats = flap(0) + flap(600) + flap(1200) + flap(3700)

    assert run(beats, grace=5) == [
        (10, HOLD, "problem"), (30, HOLD, "resolved"),  # the next two flaps stay silent
        (3710, HOLD, "problem"), (3730, HOLD, "resolved"),
    ]  # fmt: skip


def test_notes_below_min_severity_are_followed_but_not_announced() -> None:
    book = notify.Book()
    waiting = problem("drive_not_connected", "info", "waiting for the drive")

    assert notify.observe(book, [waiting], 0.0) == []
    assert notify.observe(book, [waiting, problem()], 10.0, enabled=False) == []
    assert set(book.entries) == {"drive_not_connected", HOLD}  # status still learns `since`
    assert [n.kind for n in notify.observe(book, [waiting], 20.0, min_severity="info")] == [
        "problem"
    ]


STEPS = st.lists(
    st.tuples(st.floats(0.5, 2000), st.sets(st.sampled_from(["a", "b"]), max_size=2)),
    max_size=60,
)


@given(STEPS, st.floats(0, 30))
def test_never_more_than_one_announcement_per_problem_per_hour(steps: Any, grace: float) -> None:
    now, beats = 0.0, []
    for gap, codes in steps:
        now += gap
        beats.append((now, [problem(code) for code in sorted(codes)]))

    sent = run(beats, grace=grace)

    for code in ("a", "b"):
        mine = [(at, kind) for at, c, kind in sent if c == code]
        times = [at for at, kind in mine if kind == "problem"]
        assert all(b - a >= notify.INTERVAL for a, b in itertools.pairwise(times))
        kinds = [kind for _, kind in mine]
        assert all(kinds[i] != kinds[i + 1] for i in range(len(kinds) - 1)), kinds
        assert not kinds or kinds[0] == "problem"  # a clearing follows its announcement


def test_the_text_says_what_happened_and_the_fix() -> None:
    [notice] = notify.observe(notify.Book(), [problem()], 0.0)

    assert notice.text == (
        "12 files vanished. Fix: `objlibd missing --confirm` if they are really gone"
    )
    assert len(notify.problem_text(notify.Entry(0, "error", "x" * 1000, "fix it"))) <= 241


def test_macos_runs_osascript_with_one_argv_and_a_quoted_string() -> None:
    notice = notify.Notice(HOLD, "problem", "error", 'say "hi" \\ then')

    argv = notify.command("darwin", notice)

    script = (
        'display notification "say \\"hi\\" \\\\ then" with title "objlibd" subtitle '
        '"objlibd: error"'
    )
    assert argv == ["osascript", "-e", script]


def test_linux_uses_notify_send_when_installed_and_nothing_otherwise() -> None:
    notice = notify.Notice(HOLD, "resolved", "error", "Resolved: 12 files vanished")

    argv = notify.command("linux", notice, which=lambda name: f"/usr/bin/{name}")

    assert argv == ["notify-send", "--app-name=objlibd", "--urgency=normal", "objlibd: resolved",
                    "Resolved: 12 files vanished"]  # fmt: skip
    assert notify.command("linux", notice, which=lambda _name: None) is None


class Recorder:
    def __init__(self, code: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.code = code

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, self.code, "", "no display" if self.code else "")


def notifier(tmp_path: Path, runner: Recorder, **kw: Any) -> notify.Notifier:
    return notify.Notifier(NotifySettings(), tmp_path, grace=0.0, runner=runner,
                           platform="linux", which=lambda n: f"/usr/bin/{n}", **kw)  # fmt: skip


def test_the_runner_gets_the_argv_and_never_the_secret(tmp_path: Path) -> None:
    runner = Recorder()
    secret = "NOTIFYSECRET-0123456789-not-a-real-key"  # any registered secret is redacted
    logs.register_secret(secret)

    notifier(tmp_path, runner).observe([problem(message=f"the store said: bad key {secret}")], 1.0)

    [argv] = runner.calls
    assert argv[:2] == ["notify-send", "--app-name=objlibd"]
    assert secret not in " ".join(argv)
    assert "bad key" in argv[-1]


def test_a_restart_remembers_what_was_announced(tmp_path: Path) -> None:
    runner = Recorder()
    notifier(tmp_path, runner).observe([problem()], 1.0)
    again = notifier(tmp_path, runner)

    again.observe([problem()], 2.0)  # still there after the restart: not news
    again.observe([], 3.0)

    assert [argv[3] for argv in runner.calls] == ["objlibd: error", "objlibd: resolved"]
    assert (tmp_path / notify.BOOK_NAME).exists()


def test_without_notify_send_objlibd_says_so_once_and_carries_on(tmp_path: Path) -> None:
    runner = Recorder()
    quiet = notify.Notifier(NotifySettings(), tmp_path, grace=0.0, runner=runner,
                            platform="linux", which=lambda _n: None)  # fmt: skip

    with capture_logs() as captured:
        quiet.observe([problem()], 1.0)
        quiet.observe([problem("quarantined", "warning")], 2.0)

    assert runner.calls == []
    assert [e["event"] for e in captured] == ["notify.unavailable"]


def test_a_failing_notifier_is_logged_once(tmp_path: Path) -> None:
    runner = Recorder(code=1)
    noisy = notifier(tmp_path, runner)

    with capture_logs() as captured:
        noisy.observe([problem()], 1.0)
        noisy.observe([problem(), problem("quarantined", "warning")], 2.0)

    assert len(runner.calls) == 2
    assert [e["event"] for e in captured] == ["notify.failed"]


def test_severities_rank_as_the_config_names_them() -> None:
    assert [health.rank(s) for s in ("info", "warning", "error")] == [0, 1, 2]
