"""Issue #14: the first sync at the service's real pace, against a true request quota.

The fake Gemini server gains a true quota (a sliding window over the quota-bearing calls,
429 RESOURCE_EXHAUSTED with the seconds until a slot frees, the limit never told). The real
SDK, the real engine and a real state DB run against it; a quota measured per minute is
kept fast by running the client and the fake on one compressed clock (`ScaledClock`), so
"300 rpm" is 300 calls per 60 of its seconds.

* 100 new files at a true 300 rpm, starting from the tier1 guess (20 rpm): done within
  twice the quota bound + 15 s, at most 10 % of quota calls refused, the breaker never
  opens; the next sync starts at the learned pace.
* A true 10 rpm, below the start: the pace drops to it, the breaker stays closed, every
  file lands.
* The Caller: a quota 429 on a paced call is absorbed inside the attempt (the breaker sees
  nothing); at the pace's floor it is the breaker's again; the pace is saved as it changes.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from structlog.testing import capture_logs

from engine_fixtures import make_library
from fake_clock import FakeClock, ScaledClock
from fakes.gemini_server import Behaviour, FakeGemini, Faults, Quota
from objlibd import config as config_module
from objlibd.cli.demo import mount_point_of
from objlibd.config import Config, GeminiSettings, StateSettings, StoreSettings
from objlibd.engine.summary import SyncSummary, render
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.errors import RemoteStoppedError
from objlibd.remote.base import UploadRequest
from objlibd.remote.gemini import GeminiStore
from objlibd.remote.gemini.calls import poll_delays
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status import view as status

KEY = "test-key"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)


# -- must-show 1: the fake's true quota ----------------------------------------------------------


def sdk(fake: FakeGemini) -> genai.Client:
    options = types.HttpOptions(base_url=fake.base_url, api_version="v1beta")
    return genai.Client(api_key=KEY, http_options=options)


def create_store(client: genai.Client) -> None:
    client.file_search_stores.create(config=types.CreateFileSearchStoreConfig(display_name="s"))


def test_the_fake_admits_rpm_calls_per_sliding_window_and_says_when_a_slot_frees() -> None:
    clock = FakeClock(0.0)
    with FakeGemini(quota=Quota(rpm=3, clock=clock.clock)) as fake:
        client = sdk(fake)
        for moment in (0.0, 10.0, 20.0):
            clock.now = moment
            create_store(client)
        clock.now = 30.0

        with pytest.raises(genai_errors.ClientError) as refused:
            create_store(client)
        listed = list(client.file_search_stores.list())  # no quota on listings
        clock.now = 60.5  # the call made at 0 s has left the window
        create_store(client)

    error = refused.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    details = error.details["error"]["details"]
    assert details == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30.000s"}
    ]
    assert "3" not in str(error.message), "the client is not told the limit"
    assert (len(listed), fake.quota_calls, fake.quota_429s) == (3, 4, 1)


def test_the_window_is_configurable_and_only_quota_bearing_routes_count() -> None:
    clock = FakeClock(0.0)
    quota = Quota(rpm=1, window_seconds=6.0, clock=clock.clock)
    with FakeGemini(quota=quota) as fake:
        client = sdk(fake)
        create_store(client)
        with pytest.raises(genai_errors.ClientError, match="429"):
            create_store(client)
        clock.now = 6.5
        create_store(client)
        for _ in range(5):
            list(client.file_search_stores.list())

    assert (fake.quota_calls, fake.quota_429s, fake.count("stores.list")) == (2, 1, 5)


# -- the Caller: paced 429s are the pace's, not the breaker's ---------------------------------


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(faults=Faults(retry_delay="0.01s")) as server:
        yield server


def settings_for(fake: FakeGemini, **overrides: Any) -> GeminiSettings:
    base = GeminiSettings(
        base_url=fake.base_url, rate_limit_tier="tier3", timeout_seconds=5.0,
        poll_interval_seconds=0.01, operation_deadline_seconds=10.0, max_attempts=4,
        retry_initial_delay_seconds=0.01, retry_max_delay_seconds=0.05,
        breaker_cooldown_seconds=0.2,
    )  # fmt: skip
    return replace(base, **overrides)


def request_for(root: Path, rel: str) -> UploadRequest:
    path = root / rel
    path.write_bytes(b"hello world\n")
    metadata = (("path", rel), ("sha256", "0" * 64))
    return UploadRequest(path, rel, "0" * 64, 12, "text/plain", metadata)


def test_a_quota_429_is_absorbed_by_the_pace_within_one_attempt(
    fake: FakeGemini, tmp_path: Path
) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    saved: list[dict[str, object]] = []
    store = GeminiStore(settings_for(fake, max_attempts=1), KEY, clock=clock.clock,
                        sleep=clock.sleep, save_pace=saved.append)  # fmt: skip
    store.ensure_store("library")
    fake.inject("stores.importFile", 429, retry_delay="4s")

    with capture_logs() as logs:
        store.upload(request_for(tmp_path, "a.txt"))

    health = store.health()
    assert health["breaker"] == {"state": "closed", "error_rate": 0.0, "consecutive": 0,
                                 "opened_at": None, "trips": 0}  # fmt: skip
    assert health["pace"]["quota_429s"] == 1  # type: ignore[index]
    assert health["pace"]["rpm"] == 1000.0  # type: ignore[index]
    assert max(clock.slept) == pytest.approx(4.0), "the server's RetryInfo was waited"
    assert fake.count("stores.importFile") == 2
    # Halved, but no limit learned: the window may hold calls from before this pace started.
    assert saved[-1] == {"rpm": 1000.0, "limit": None, "start_rpm": 2000.0, "quota_429s": 1}
    slowed = [entry for entry in logs if entry["event"] == "remote.pace.slowed"]
    assert [(e["rpm"], e["was"]) for e in slowed] == [(1000.0, 2000.0)]


def test_at_the_floor_a_quota_429_is_the_breakers_and_the_retry_policys(
    fake: FakeGemini, tmp_path: Path
) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    settings = settings_for(fake, rate_limit_rpm=1.0, rate_limit_max_rpm=1.0)  # pinned at 1
    store = GeminiStore(settings, KEY, clock=clock.clock, sleep=clock.sleep)
    store.ensure_store("library")
    fake.inject("stores.importFile", 429, retry_delay="1s")

    store.upload(request_for(tmp_path, "a.txt"))

    health = store.health()
    assert health["breaker"]["error_rate"] == 0.01  # type: ignore[index]
    assert health["pace"]["quota_429s"] == 0  # type: ignore[index]


def test_a_pace_that_cannot_be_saved_does_not_fail_the_upload(
    fake: FakeGemini, tmp_path: Path
) -> None:
    def broken(_pace: dict[str, object]) -> None:
        raise OSError("disk full")

    clock = FakeClock(0.0, yield_on_sleep=True)
    store = GeminiStore(settings_for(fake), KEY, clock=clock.clock, sleep=clock.sleep,
                        save_pace=broken)  # fmt: skip
    store.ensure_store("library")
    fake.inject("files.upload", 429, retry_delay="1s")

    with capture_logs() as logs:
        store.upload(request_for(tmp_path, "a.txt"))

    assert [e["error"] for e in logs if e["event"] == "remote.pace.save_failed"] == ["disk full"]


def test_a_shutdown_cuts_a_quota_hold_short(fake: FakeGemini, tmp_path: Path) -> None:
    stop = threading.Event()
    store = GeminiStore(settings_for(fake), KEY, stop=stop)
    store.ensure_store("library")
    fake.inject("stores.importFile", 429, retry_delay="600s")
    failures: list[BaseException] = []

    def upload() -> None:
        try:
            store.upload(request_for(tmp_path, "a.txt"))
        except BaseException as err:  # noqa: BLE001 - the test reads what came out
            failures.append(err)

    worker = threading.Thread(target=upload)
    worker.start()
    wait_until(lambda: store.health()["pace"]["quota_429s"] == 1)  # type: ignore[index]
    stop.set()
    worker.join(timeout=5)

    assert not worker.is_alive(), "the 600 s hold ended with the stop"
    assert [type(err) for err in failures] == [RemoteStoppedError]


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # poll interval of this deadline wait


def test_the_store_starts_from_a_learned_pace(fake: FakeGemini) -> None:
    learned = {"rpm": 321.0, "limit": 300.0, "start_rpm": 20.0, "quota_429s": 4}
    store = GeminiStore(settings_for(fake, rate_limit_tier="tier1"), KEY, learned_pace=learned)

    pace = store.health()["pace"]

    assert (pace["rpm"], pace["limit"], pace["source"]) == (321.0, 300.0, "learned")  # type: ignore[index]


def test_polls_start_at_half_a_second_and_grow_to_the_setting() -> None:
    assert list(itertools.islice(poll_delays(3.0), 6)) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert list(itertools.islice(poll_delays(0.01), 2)) == [0.01, 0.01]


def test_an_import_operation_is_polled_sooner_at_first(tmp_path: Path) -> None:
    clock = FakeClock(0.0, yield_on_sleep=True)
    with FakeGemini(Behaviour(op_polls_to_done=4)) as fake:
        store = GeminiStore(settings_for(fake, poll_interval_seconds=3.0), KEY,
                            clock=clock.clock, sleep=clock.sleep)  # fmt: skip
        store.ensure_store("library")
        clock.slept.clear()
        store.upload(request_for(tmp_path, "a.txt"))

    assert [pause for pause in clock.slept if pause >= 0.5] == [0.5, 1.0, 2.0, 3.0]


# -- must-shows 2 and 3: syncs against a true quota, on a compressed clock ------------------------


def paced_config(tmp_path: Path, fake: FakeGemini, **gemini: object) -> Config:
    root = tmp_path / "library"
    root.mkdir(exist_ok=True)
    settings: dict[str, object] = {
        "base_url": fake.base_url, "rate_limit_tier": "tier1", "poll_interval_seconds": 0.5,
        "timeout_seconds": 10.0, "operation_deadline_seconds": 600.0,
    }  # fmt: skip
    settings.update(gemini)
    raw: dict[str, object] = {
        "library": {"mount_point": str(mount_point_of(root)), "root": str(root)},
        "store": {"backend": "gemini", "name": "paced"},
        "state": {"dir": str(tmp_path / "state")},
        "logs": {"dir": str(tmp_path / "logs")},
        "gemini": settings,
    }
    return config_module.from_mapping(raw, source=tmp_path / "objlibd.toml")


def paced_sync(config: Config, clock: ScaledClock) -> tuple[SyncSummary, dict[str, Any], float]:
    """One sync through the engine, the pace loaded from and saved into the state DB.

    Returns the summary, the store's health at the end, and the wall time in `clock` seconds.
    """
    state = StateStore.open(config.db_path)
    store = GeminiStore(
        config.gemini, KEY, clock=clock.clock, sleep=clock.sleep, stop=threading.Event(),
        learned_pace=state.values.get_json(keys.PACE),
        save_pace=lambda pace: state.values.set_json(keys.PACE, pace),
    )  # fmt: skip
    try:
        started = clock.clock()
        summary = SyncEngine(config, state, store).run(SyncOptions())
        return summary, store.health(), clock.clock() - started
    finally:
        store.close()
        state.close()


def test_100_files_at_a_true_300_rpm_from_the_tier1_guess(tmp_path: Path) -> None:
    clock = ScaledClock(5.0)
    quota = Quota(rpm=300, clock=clock.clock)
    with FakeGemini(quota=quota) as fake:
        config = paced_config(tmp_path, fake)
        make_library(config.library.root, 100)

        summary, health, wall = paced_sync(config, clock)

        assert (summary.exit_code, summary.uploaded) == (0, 100), summary.to_dict()
        calls, refused = fake.quota_calls, fake.quota_429s
        bound = calls * 60.0 / 300
        assert wall <= 2 * bound + 15, f"{wall:.0f} s for {calls} quota calls (bound {bound:.0f} s)"
        assert refused <= 0.10 * calls, f"{refused} quota 429s for {calls} quota calls"
        assert health["breaker"]["trips"] == 0
        assert health["pace"]["quota_429s"] == refused
        assert summary.pace is not None and summary.pace["source"] == "configured"

        make_library(config.library.root / "More", 20)
        learned = read_pace(config)
        second, health, _ = paced_sync(config, clock)

    assert learned is not None and learned["start_rpm"] == 20.0
    assert float(learned["rpm"]) > 20.0, "the first sync learned a faster pace"
    assert (second.exit_code, second.uploaded) == (0, 20)
    assert second.pace is not None and second.pace["source"] == "learned"
    assert health["breaker"]["trips"] == 0


def test_a_true_quota_below_the_start_pulls_the_pace_down_to_it(tmp_path: Path) -> None:
    clock = ScaledClock(20.0)
    quota = Quota(rpm=10, clock=clock.clock)
    with FakeGemini(quota=quota) as fake, capture_logs() as logs:
        config = paced_config(tmp_path, fake)
        make_library(config.library.root, 8)

        summary, health, wall = paced_sync(config, clock)

        refused = fake.quota_429s
    assert (summary.exit_code, summary.uploaded) == (0, 8), summary.to_dict()
    slowed = [entry["rpm"] for entry in logs if entry["event"] == "remote.pace.slowed"]
    assert refused >= 1 and slowed, "the sync met the quota"
    assert min(slowed) <= 10.0, slowed
    assert health["breaker"]["trips"] == 0
    assert not [entry for entry in logs if entry["event"].startswith("remote.breaker")]
    assert wall <= 2 * (17 * 60.0 / 10) + 15


def read_pace(config: Config) -> dict[str, Any] | None:
    state = StateStore.open(config.db_path, readonly=True)
    try:
        learned: dict[str, Any] | None = state.values.get_json(keys.PACE)
        return learned
    finally:
        state.close()


# -- what people see -------------------------------------------------------------------------


PACE = {"rpm": 300.0, "source": "learned", "limit": 280.0, "quota_429s": 4,
        "pending_uploads": 1200, "eta_s": 480.0}  # fmt: skip


def test_the_summary_reports_pace_absorbed_429s_and_the_eta_of_what_is_left() -> None:
    summary = SyncSummary(uploaded=3, pace=PACE)

    assert summary.to_dict()["pace"] == PACE
    assert (
        "  pace: 300 rpm (learned), 4 quota 429s absorbed; 1200 uploads left, about 8 min at this pace"
        in render(summary)
    )


def test_status_shows_the_live_pace_and_the_eta_of_the_uploads_at_it() -> None:
    live = {"rpm": 300.0, "source": "learned", "limit": 280.0, "ceiling": None,
            "quota_429s": 4, "cuts": 1, "calls": 800, "waited_s": 12.0}  # fmt: skip
    beat = {
        "remote": {"breaker": {"state": "closed"}, "pace": live, "rate_limit_tier": "tier1",
                   "rate_limit": {"rpm": 300.0, "calls": 800, "waited_seconds": 12.0,
                                  "waiting": 3},
                   "calls_per_file": 2, "in_flight": 4},
        "progress": {"phase": "upload", "done": 0, "total": 1200, "started_epoch": 0.0},
    }  # fmt: skip

    snap = status.assemble(beat, status._empty_db(), 0.0, settings={"backend": "gemini",
                           "store": "s"}, volume={"state": "available", "reason": ""},
                           pause=None)  # fmt: skip

    assert snap["remote"]["pace"] == live
    assert snap["progress"]["eta"] == "1200 files to upload, about 8 min at the learned 300 rpm"
    assert "pace:       300 rpm (learned), 4 quota 429s absorbed" in status.render_text(snap)


def test_status_without_a_daemon_shows_the_learned_pace(tmp_path: Path) -> None:
    config = Config(
        state=StateSettings(dir=tmp_path / "state"), store=StoreSettings(backend="gemini")
    )
    state = StateStore.open(config.db_path)
    state.values.set_json(
        keys.PACE, {"rpm": 210.5, "limit": 200.0, "start_rpm": 20.0, "quota_429s": 7}
    )
    state.close()

    snap = status.snapshot(config)

    assert snap["remote"]["pace"] == {"rpm": 210.5, "source": "learned", "quota_429s": 7}
    assert "pace:       210.5 rpm (learned), 7 quota 429s absorbed" in status.render_text(snap)
    assert json.dumps(snap)  # still plain JSON


def test_the_engine_reports_the_eta_of_its_pending_uploads_at_the_pace(tmp_path: Path) -> None:
    from objlibd.remote.local import LocalStore

    config = Config(state=StateSettings(dir=tmp_path / "state"))
    state = StateStore.open(config.db_path)
    engine = SyncEngine(config, state, LocalStore(tmp_path / "store"))
    engine._report("upload", 10, 110)
    health = {"pace": {"rpm": 300.0, "source": "learned", "quota_429s": 2}, "calls_per_file": 2}

    facts = engine.pace_facts(health)
    state.close()

    assert facts == {"rpm": 300.0, "source": "learned", "limit": None, "quota_429s": 2,
                     "pending_uploads": 100, "eta_s": 40.0}  # fmt: skip
    assert engine.pace_facts({"backend": "local"}) is None
