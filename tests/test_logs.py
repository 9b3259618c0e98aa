"""logs: JSON lines in a rotating file, stdlib records included, secrets redacted, the reader."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from daemon_fixtures import wait_for
from objlibd import logs
from objlibd.config import LogSettings

UTC = dt.UTC


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "logs"
    yield directory
    logs.reset()


def lines(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / logs.LOG_FILE).read_text().splitlines()]


def test_setup_writes_json_lines_with_time_level_event(log_dir: Path) -> None:
    logs.setup(LogSettings(dir=log_dir), console=False)

    structlog.get_logger("objlibd.test").info("batch.synced", uploaded=3, ms=12)

    (record,) = lines(log_dir)
    assert record["event"] == "batch.synced"
    assert record["level"] == "info"
    assert record["uploaded"] == 3
    assert record["logger"] == "objlibd.test"
    assert record["timestamp"].endswith("Z")


def test_stdlib_records_of_watchdog_and_apscheduler_become_json_too(log_dir: Path) -> None:
    logs.setup(LogSettings(dir=log_dir), console=False)

    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    logging.getLogger("apscheduler.scheduler").info("Running job (chatter, dropped at info)")

    events = [(r["logger"], r["event"], r["level"]) for r in lines(log_dir)]
    assert events == [
        ("watchdog.observers.inotify_c", "Inotify queue overflowed", "warning"),
        ("apscheduler.scheduler", "Run time of job was missed", "warning"),
    ]


def test_level_filters_below_the_configured_level(log_dir: Path) -> None:
    logs.setup(LogSettings(dir=log_dir, level="warning"), console=False)
    log = structlog.get_logger("objlibd.test")

    log.info("quiet.thing")
    log.warning("loud.thing")

    assert [r["event"] for r in lines(log_dir)] == ["loud.thing"]


def test_secret_keys_and_the_api_key_value_are_redacted(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "SECRETVALUE123456-not-a-real-key")
    logs.setup(LogSettings(dir=log_dir), console=False)

    structlog.get_logger("t").info(
        "request.sent",
        api_key="k1",
        headers={"Authorization": "Bearer x", "accept": "json"},
        refresh_token="t1",
        url="https://x.example/?key=SECRETVALUE123456-not-a-real-key",
    )
    logging.getLogger("httpx").warning("GET ?key=%s failed", "SECRETVALUE123456-not-a-real-key")

    text = (log_dir / logs.LOG_FILE).read_text()
    first, second = lines(log_dir)
    assert "SECRETVALUE123456-not-a-real-key" not in text
    assert first["api_key"] == logs.REDACTED
    assert first["headers"] == {"Authorization": logs.REDACTED, "accept": "json"}
    assert first["refresh_token"] == logs.REDACTED
    assert second["event"] == f"GET ?key={logs.REDACTED} failed"


def test_tracebacks_are_plain_text_without_locals(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "LOCALSECRET98765-not-a-real-key")
    logs.setup(LogSettings(dir=log_dir), console=False)

    def fail() -> None:
        password = "hunter2-local-only"
        raise RuntimeError("boom with LOCALSECRET98765-not-a-real-key " + password[:0])

    try:
        fail()
    except RuntimeError:
        structlog.get_logger("t").exception("upload.crashed")

    (record,) = lines(log_dir)
    assert "Traceback" in record["exception"]
    assert "hunter2-local-only" not in json.dumps(record)
    assert "LOCALSECRET98765-not-a-real-key" not in json.dumps(record)


def test_rotation_keeps_backups_and_the_reader_spans_them(log_dir: Path) -> None:
    logs.setup(LogSettings(dir=log_dir, max_bytes=2000, backups=3), console=False)
    log = structlog.get_logger("t")

    for i in range(60):
        log.info("tick.done", i=i)

    files = logs.log_files(log_dir)
    numbers = [r["i"] for _, r in logs.read(log_dir, logs.LogFilter())]
    assert [p.name for p in files] == [
        "objlibd.jsonl.3", "objlibd.jsonl.2", "objlibd.jsonl.1", "objlibd.jsonl",
    ]  # fmt: skip
    assert numbers == sorted(numbers)
    assert numbers[-1] == 59
    assert [r["i"] for _, r in logs.tail(log_dir, logs.LogFilter(), 3)] == [57, 58, 59]


NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - dt.timedelta(minutes=10)),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("30s", NOW - dt.timedelta(seconds=30)),
        ("1d", NOW - dt.timedelta(days=1)),
        ("1.5h", NOW - dt.timedelta(minutes=90)),
        ("2026-11-23T11:00:00", dt.datetime(2026, 11, 23, 11, tzinfo=UTC)),
        ("2026-11-23T11:00:00+01:00", dt.datetime(2026, 11, 23, 10, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: dt.datetime) -> None:
    assert logs.parse_since(text, NOW) == expected


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        logs.parse_since("yesterday-ish", NOW)


def rec(level: str, minutes_ago: int, event: str = "x.y") -> tuple[str, dict]:
    record = {
        "level": level,
        "event": event,
        "timestamp": (NOW - dt.timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(record), record


@pytest.mark.parametrize(
    ("flt", "record", "shown"),
    [
        (logs.LogFilter(level="warning"), rec("info", 0), False),
        (logs.LogFilter(level="warning"), rec("warning", 0), True),
        (logs.LogFilter(level="warning"), rec("error", 0), True),
        (logs.LogFilter(level="warn"), rec("warning", 0), True),
        (logs.LogFilter(since=NOW - dt.timedelta(minutes=10)), rec("info", 11), False),
        (logs.LogFilter(since=NOW - dt.timedelta(minutes=10)), rec("info", 9), True),
        (logs.LogFilter(grep="VOLUME"), rec("info", 0, "volume.unmounted"), True),
        (logs.LogFilter(grep="volume"), rec("info", 0, "batch.synced"), False),
    ],
)
def test_log_filter(flt: logs.LogFilter, record: tuple[str, dict], shown: bool) -> None:
    assert flt.matches(*record) is shown


def test_follow_sees_appends_across_a_rotation(log_dir: Path) -> None:
    logs.setup(LogSettings(dir=log_dir, max_bytes=600, backups=2), console=False)
    log = structlog.get_logger("t")
    log.info("before.follow")
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        for _, record in logs.follow(
            log_dir, logs.LogFilter(grep="wanted"), keep_going=lambda: not done.is_set(), poll=0.02
        ):
            seen.append(record["event"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        # the follower starts at the end of the file: write until it is surely reading
        assert wait_for(lambda: log.info("wanted.warmup") or seen, 5)
        for i in range(10):  # ~150 bytes a line: rotates every few lines
            log.info("other.event", i=i, pad="x" * 40)
            log.info("wanted.event", i=i, pad="x" * 40)
            assert wait_for(lambda n=i: seen.count("wanted.event") > n, 5), seen
    finally:
        done.set()
        thread.join(5)

    assert [e for e in seen if e != "wanted.warmup"] == ["wanted.event"] * 10


def test_render_is_one_readable_line() -> None:
    record = {
        "timestamp": "2026-11-23T12:00:00Z",
        "level": "warning",
        "event": "volume.unmounted",
        "logger": "objlibd.service",
        "reason": "nothing is mounted",
    }

    text = logs.render(record, color=False)

    assert "warning" in text
    assert "volume.unmounted  reason=nothing is mounted" in text
