"""Failure memory, the pure part (tables, properties) and the store's file types.

The policy (`failures.py`) and what the DB makes of it (`failurelog.py`, schema v5); which
types and sizes the Gemini store takes (`remote/filetypes.py`), and that the defaults agree.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine_fixtures import Env, make_library, touch_later
from objlibd.config import DEFAULT_INCLUDE, LibrarySettings
from objlibd.engine.failures import FailurePolicy, Verdict, verdict
from objlibd.engine.sync import SyncOptions
from objlibd.models import FileRecord, FileStatus
from objlibd.remote.filetypes import (
    GEMINI_MAX_FILE_BYTES,
    gemini_mime,
    include_warnings,
    refused_extensions,
)
from objlibd.state.dbtime import iso

POLICY = FailurePolicy(quarantine_after=3, backoff_seconds=60.0, backoff_max_seconds=3600.0)
NOW = "2026-11-23T12:00:00.000Z"


def failed(**fields: object) -> FileRecord:
    return dataclasses.replace(FileRecord("a.pdf", FileStatus.FAILED), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "digest", "expected"),
    [
        (None, "h1", Verdict.UPLOAD),
        (failed(failures=2, failed_hash="h1"), "h1", Verdict.UPLOAD),
        (failed(failures=3, failed_hash="h1", quarantined_at=NOW), "h1", Verdict.QUARANTINED),
        (failed(failures=3, failed_hash="h1", quarantined_at=NOW), "h2", Verdict.UPLOAD),
        (failed(retry_after="2026-11-23T12:00:01.000Z"), "h1", Verdict.WAITING),
        (failed(retry_after="2026-11-23T11:59:59.000Z"), "h1", Verdict.UPLOAD),
        # quarantine wins over a backoff that is also set
        (failed(failed_hash="h1", quarantined_at=NOW, retry_after="2099-01-01T00:00:00.000Z"),
         "h1", Verdict.QUARANTINED),
    ],
)  # fmt: skip
def test_verdict(record: FileRecord | None, digest: str, expected: Verdict) -> None:
    assert verdict(record, digest, NOW) is expected


@pytest.mark.parametrize(
    ("record", "digest", "expected"),
    [
        (None, "h1", (1, False)),
        (failed(failures=1, failed_hash="h1"), "h1", (2, False)),
        (failed(failures=2, failed_hash="h1"), "h1", (3, True)),
        (failed(failures=2, failed_hash="h0"), "h1", (1, False)),  # new content, new count
        (failed(failures=5, failed_hash="h1"), "h1", (6, True)),  # after `retry`: at once
    ],
)
def test_permanent_failures_count_per_content_hash(
    record: FileRecord | None, digest: str, expected: tuple[int, bool]
) -> None:
    assert POLICY.permanent(record, digest) == expected


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_doubles_and_never_passes_the_cap(in_a_row: int) -> None:
    pause = POLICY.backoff(in_a_row)
    assert POLICY.backoff_seconds <= pause <= POLICY.backoff_max_seconds
    assert POLICY.backoff(in_a_row + 1) == min(2 * pause, POLICY.backoff_max_seconds)


@given(
    st.lists(st.sampled_from(["h1", "h2"]), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=6),
)
def test_a_content_is_quarantined_exactly_when_it_failed_the_limit_in_a_row(
    hashes: list[str], limit: int
) -> None:
    """Replaying refusals: quarantined iff the last `limit` refusals were all this content."""
    policy = dataclasses.replace(POLICY, quarantine_after=limit)
    record: FileRecord | None = None
    for digest in hashes:
        count, quarantined = policy.permanent(record, digest)
        record = failed(failures=count, failed_hash=digest)
    run = 1  # refusals of the last content in a row
    while run < len(hashes) and hashes[-run - 1] == hashes[-1]:
        run += 1
    assert (count, quarantined) == (run, run >= limit)


def test_iso_sorts_like_time() -> None:
    times = [0.0, 0.0005, 1.0, 59.999, 86_400.0, 1_800_000_000.123]
    assert sorted(iso(t) for t in times) == [iso(t) for t in times]


# -- the stored part, through the engine (local store) ------------------------------------------


def test_a_quarantined_file_counts_as_settled_until_it_changes(env: Env) -> None:
    """The walk cache holds while a file sits in quarantine; an edit brings it back."""
    (path, *_) = make_library(env.root, 3)
    env.engine.run(SyncOptions())
    env.state.failures.record_permanent_failure(
        path, "h", "refused", failures=3, quarantined_at=NOW
    )

    assert path in env.state.walk.index().settled
    env.engine.run(SyncOptions())  # a quiet run saves the walk cache with it settled
    assert env.state.walk.cached_walk() is not None

    touch_later(env.root / path, "new content\n")
    summary = env.engine.run(SyncOptions())

    assert (summary.replaced, summary.quarantined) == (1, 0)
    record = env.state.files.record(path)
    assert record is not None and (record.quarantined_at, record.failures) == (None, 0)


def test_retry_releases_held_files_and_keeps_their_count(env: Env) -> None:
    paths = make_library(env.root, 3)
    env.engine.run(SyncOptions())
    env.state.failures.record_permanent_failure(
        paths[0], "h", "refused", failures=3, quarantined_at=NOW
    )
    env.state.failures.record_transient_failure(
        paths[1], "503", in_a_row=2, retry_after=NOW, settled=True
    )

    assert env.state.failures.retry([paths[0], "not/held.txt"]) == [paths[0]]
    assert env.state.failures.retry(None) == [paths[1]]
    record = env.state.files.record(paths[0])
    assert record is not None and (record.quarantined_at, record.failures) == (None, 3)
    assert env.state.failures.failure_rows() == []


# -- file types and sizes -------------------------------------------------------------------------


def test_every_default_include_type_is_one_the_gemini_store_accepts() -> None:
    assert refused_extensions(DEFAULT_INCLUDE, "gemini") == []
    assert ".epub" not in DEFAULT_INCLUDE


def test_an_included_type_the_store_refuses_is_a_config_warning() -> None:
    library = LibrarySettings(include=(".pdf", ".epub", ".PNG"))

    warnings = include_warnings(library, "gemini")

    assert len(warnings) == 2
    assert warnings[0].startswith("[library] include .epub: the gemini store does not accept "
                                  "application/epub+zip")  # fmt: skip
    assert "image/png" in warnings[1]
    assert include_warnings(library, "local") == []


@pytest.mark.parametrize(
    ("declared", "sent"),
    [("application/pdf", "application/pdf"), ("application/rtf", "text/rtf"),
     ("application/epub+zip", None), ("application/octet-stream", None)],
)  # fmt: skip
def test_gemini_mime(declared: str, sent: str | None) -> None:
    assert gemini_mime(declared) == sent


def test_the_size_limit_is_100_mb_decimal(env: Env) -> None:
    assert GEMINI_MAX_FILE_BYTES == 100_000_000
    env.config = dataclasses.replace(
        env.config, library=dataclasses.replace(env.config.library, max_file_mb=0.001)
    )  # 1,000 bytes
    env.reconfigure()
    (env.root / "fits.txt").write_bytes(b"x" * 1000)
    (env.root / "too big.txt").write_bytes(b"x" * 1001)

    summary = env.engine.run(SyncOptions())

    assert (summary.uploaded, summary.skipped) == (1, 1)
    assert "0.0 MB > 0.001 MB" in summary.problems[0].reason
