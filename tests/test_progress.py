"""Progress people can plan with: rates, ETAs at the quota, and a progress line that stays clean."""

from __future__ import annotations

from io import StringIO

import pytest

from fake_clock import FakeClock
from objlibd.cli.progressbar import ProgressBar
from objlibd.engine import progress

TIER1 = {"rate_limit": {"rpm": 20, "calls": 0}, "calls_per_file": 2, "rate_limit_tier": "tier1"}


def screen(raw: str) -> list[str]:
    """What a terminal shows for `raw`: \\r returns, ESC[K erases to the end, \\n moves down."""
    lines, line, col = [], "", 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            line, i = line[:col], i + 3
            continue
        char = raw[i]
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append(line)
            line, col = "", 0
        else:
            line = line[:col] + char + line[col + 1 :]
            col += 1
        i += 1
    return [*lines, line] if line else lines


@pytest.mark.parametrize(
    ("left", "kw", "expected"),
    [
        (312, {"rpm": 20, "calls_per_file": 2}, 312 * 2 * 3.0),  # the quota bounds it
        (100, {"done": 50, "elapsed": 100.0}, 200.0),  # the rate so far
        (100, {"rpm": 2000, "calls_per_file": 2, "done": 10, "elapsed": 100.0}, 1000.0),  # slower
        (0, {"rpm": 20}, 0.0),
        (10, {}, None),  # nothing bounds it yet
    ],
)
def test_eta_is_the_larger_of_the_quota_and_the_rate_so_far(
    left: int, kw: dict[str, float], expected: float | None
) -> None:
    assert progress.eta_seconds(left, **kw) == (
        expected if expected is None else pytest.approx(expected)
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (30, "under a minute"), (960, "about 16 min"), (7500, "about 2 h 5 min"),
     (7200, "about 2 h"), (3 * 86400 + 3600, "about 3 days 1 h")],
)  # fmt: skip
def test_durations_read_like_a_person_would_say_them(seconds: float | None, text: str) -> None:
    assert progress.duration_text(seconds) == text


def test_the_plan_names_the_files_the_time_and_the_tier() -> None:
    assert (
        progress.plan_text(312, 960, tier="tier1") == "312 files to upload, about 16 min at tier1"
    )
    assert progress.plan_text(1, None) == "1 file to upload"
    assert [progress.rate_text(r) for r in (None, 0.5, 2.25, 40.0, 0.001)] == [
        "", "30 files/min", "2.2 files/s", "40 files/s", "4 files/h",
    ]  # fmt: skip


def test_a_shorter_phase_line_never_shows_the_tail_of_a_longer_one() -> None:
    """The 20k-file sync that showed `upload [---…] 179/2000000`."""
    clock = FakeClock(0.0)
    stream = StringIO()
    bar = ProgressBar(stream, clock=clock)
    for done in range(1, 2_000_001, 400_000):
        clock.advance(1.0)
        bar("hash", done, 2_000_000)
    for done in (1, 179):
        clock.advance(1.0)
        bar("upload", done, 20_000)

    shown = screen(stream.getvalue())

    assert len(shown) == 1
    assert shown[0].startswith(f"upload [{'-' * 30}] 179/20000  ")
    assert "2000000" not in shown[0]
    assert "files/s" in shown[0] and "left" in shown[0]


def test_rate_and_time_left_per_phase_at_the_quota() -> None:
    clock = FakeClock(0.0)
    stream = StringIO()
    bar = ProgressBar(stream, clock=clock)
    bar.use_quota(TIER1)
    bar("upload", 0, 312)
    clock.advance(60)
    bar("upload", 10, 312)

    first, line = screen(stream.getvalue())

    assert first == "objlibd: 312 files to upload, about 31 min at tier1"
    assert line.startswith(f"upload [{'-' * 30}] 10/312  10 files/min, about 30 min left")


def test_a_first_sync_prints_the_estimate_before_it_starts_even_off_a_terminal() -> None:
    stream = StringIO()
    bar = ProgressBar(stream, draw=False, first_sync=True)
    bar.use_quota(TIER1)
    bar("hash", 1, 20_000)
    bar("hash", 20_000, 20_000)
    bar("upload", 0, 20_000)
    bar.end()

    assert stream.getvalue() == (
        "objlibd: first sync: 20000 files to upload, about 33 h 20 min at tier1\n"
    )


def test_short_upload_phases_print_no_plan() -> None:
    stream = StringIO()
    bar = ProgressBar(stream, draw=False)
    bar.use_quota(TIER1)
    bar("upload", 0, 5)  # 30 s at tier1: nothing to plan

    assert stream.getvalue() == ""
