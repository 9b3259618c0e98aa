"""`objlibd sync` with the gemini backend, end to end: the real SDK against the local fake.

Must-shows 2 to 5 of issue #3: a 300-file library becomes 300 documents with identity
metadata; edits replace upload-first; prune and orphan cleanup delete documents; a fault
storm (20 % 429, 10 % 500, 5 % hung) still lands every file exactly once while the breaker
trips and recovers; SIGKILL anywhere (including between import and DB commit, and while
polling) then a re-run is exact; the API key never reaches a log, status or state file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine_fixtures import make_library, touch_later
from fakes.gemini_server import Behaviour, Call, FakeGemini, Faults
from objlibd.cli.demo import mount_point_of
from objlibd.models import FileStatus
from objlibd.state.store import StateStore

pytestmark = pytest.mark.e2e

# Recognisable, so a leak is unmistakable; shaped like a real key.
FAKE_KEY = "objlibd-canary-FAKE-7f3a9c2e41d05b-0123456789"
STORE = "objlibd-e2e"


@dataclass
class Site:
    """A library, a config pointing at the fake, and where objlibd keeps its files."""

    tmp: Path
    root: Path
    config: Path
    fake: FakeGemini
    paths: list[str]

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def log_dir(self) -> Path:
        return self.tmp / "logs"


def write_config(site: Site, *, sync: str = "", logs_level: str = "info", **gemini: object) -> None:
    """Write the TOML: gemini backend at the fake, test-sized delays, `gemini` overrides."""
    options: dict[str, object] = {
        "base_url": site.fake.base_url,
        "rate_limit_tier": "tier3",
        "rate_limit_rpm": 60000,
        "poll_interval_seconds": 0.02,
        "retry_initial_delay_seconds": 0.02,
        "retry_max_delay_seconds": 0.2,
        "breaker_cooldown_seconds": 0.1,
        "timeout_seconds": 2.0,
        "operation_deadline_seconds": 30.0,
    }
    options.update(gemini)
    lines = [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    site.config.write_text(
        f"[library]\nmount_point = {json.dumps(str(mount_point_of(site.root)))}\n"
        f"root = {json.dumps(str(site.root))}\n"
        f'[store]\nbackend = "gemini"\nname = "{STORE}"\n'
        f"[state]\ndir = {json.dumps(str(site.state_dir))}\n"
        f'[logs]\ndir = {json.dumps(str(site.log_dir))}\nlevel = "{logs_level}"\n'
        f"[sync]\n{sync}\n"
        "[gemini]\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )


def child_env(key: str = FAKE_KEY) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "GEMINI_API_KEY": key,
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    })  # fmt: skip
    for name in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "OBJLIBD_CONFIG"):
        env.pop(name, None)
    return env


def objlibd(site: Site, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one objlibd command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "objlibd", *args, "--config", str(site.config)],
        capture_output=True, text=True, timeout=timeout, check=False, env=child_env(),
    )  # fmt: skip


def sync(site: Site, *extra: str, timeout: float = 300) -> dict[str, Any]:
    """Run `objlibd sync --json`; return the summary (with stderr) or fail with stderr."""
    done = objlibd(site, "sync", "--json", *extra, timeout=timeout)
    assert done.stdout.strip(), f"no summary; exit {done.returncode}; stderr:\n{done.stderr}"
    summary: dict[str, Any] = json.loads(done.stdout)
    summary["stderr"] = done.stderr
    return summary


def start_sync(site: Site, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "objlibd", "sync", "--json", "--config", str(site.config), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(),
    )  # fmt: skip


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def docs_by_path(fake: FakeGemini) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for doc in fake.documents():
        grouped.setdefault(doc["metadata"].get("path", "?"), []).append(doc)
    return grouped


def assert_exact(site: Site) -> None:
    """One active document per file, with the file's hash; the DB points at exactly those."""
    grouped = docs_by_path(site.fake)
    state = StateStore.open(site.state_dir / "objlibd.db", readonly=True)
    try:
        records = state.files.all_records()
        assert state.db.integrity_check() == "ok"
    finally:
        state.close()

    assert sorted(grouped) == sorted(site.paths), "a document for every file and nothing else"
    duplicates = {path: docs for path, docs in grouped.items() if len(docs) != 1}
    details = {path: (docs, records.get(path)) for path, docs in duplicates.items()}
    assert duplicates == {}, f"exactly one document per file: {details}"
    for path in site.paths:
        (doc,) = grouped[path]
        record = records[path]
        assert (doc["metadata"]["sha256"], doc["state"]) == (
            sha256_of(site.root / path),
            "STATE_ACTIVE",
        )
        assert (record.status, record.remote_id, record.orphaned_remote_id) == (
            FileStatus.UPLOADED,
            doc["name"],
            None,
        )


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `condition` until true or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.02)  # poll interval of this deadline wait


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def make_site(tmp_path: Path, fake: FakeGemini, count: int) -> Site:
    root = tmp_path / "library"
    root.mkdir()
    paths = make_library(root, count)
    site = Site(tmp_path, root, tmp_path / "objlibd.toml", fake, paths)
    write_config(site)
    return site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A 300-file library and a fake that only accepts FAKE_KEY."""
    with FakeGemini(Behaviour(api_key=FAKE_KEY), Faults(retry_delay="0.02s")) as fake:
        yield make_site(tmp_path, fake, 300)


# -- must-show 2: sync, edits, prune, orphans --------------------------------------------------


def test_a_300_file_library_becomes_300_documents_with_identity_metadata(site: Site) -> None:
    summary = sync(site)

    assert (summary["exit_code"], summary["counts"]["uploaded"]) == (0, 300), summary["stderr"]
    assert_exact(site)
    assert list(site.fake.store_names().values()) == [STORE]
    first = docs_by_path(site.fake)[site.paths[0]][0]
    assert list(first["metadata"])[:2] == ["path", "sha256"]
    assert first["metadata"]["collection"] == "Course 0"
    assert site.fake.file_names() == [], "temporary Files-API files are deleted"


def test_a_second_sync_of_an_unchanged_library_uploads_nothing(site: Site) -> None:
    sync(site)
    imports = site.fake.count("stores.importFile")

    summary = sync(site)

    assert (summary["counts"]["unchanged"], site.fake.count("stores.importFile")) == (300, imports)


def test_edited_files_are_replaced_upload_first(site: Site) -> None:
    sync(site)
    edited = site.paths[10:20]
    old = {path: docs_by_path(site.fake)[path][0]["name"] for path in edited}
    for path in edited:
        touch_later(site.root / path, f"edited {path}\n")

    summary = sync(site)

    assert (summary["exit_code"], summary["counts"]["replaced"]) == (0, 10), summary["stderr"]
    assert_exact(site)
    journal = list(site.fake.journal)
    for path in edited:
        new = docs_by_path(site.fake)[path][0]["name"]
        created = journal.index(("created", new))
        deleted = journal.index(("deleted", old[path]))
        assert created < deleted, f"{path}: the old document went before the new one landed"


def test_prune_and_orphan_cleanup_delete_documents_in_the_store(site: Site) -> None:
    write_config(site, sync="prune_after_days = 0.000000001")
    sync(site)
    gone = site.paths[:5]
    for path in gone:
        (site.root / path).unlink()
    stray = plant_orphan(site.fake, "Stray/not in the library.txt")
    marked = sync(site)

    summary = sync(site, "--prune-missing", "--cleanup-orphans")

    assert (marked["counts"]["missing"], summary["counts"]["pruned"]) == (5, 5), summary["stderr"]
    assert summary["counts"]["orphans_deleted"] == 1
    site.paths = site.paths[5:]
    assert_exact(site)
    assert stray not in [doc["name"] for doc in site.fake.documents()]


def plant_orphan(fake: FakeGemini, path: str) -> str:
    """Put a document into the store behind objlibd's back; return its name."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=FAKE_KEY, http_options=types.HttpOptions(
        base_url=fake.base_url, api_version="v1beta"))  # fmt: skip
    (store,) = fake.store_names()
    source = io.BytesIO(b"not part of the library\n")
    uploaded = client.files.upload(file=source, config={"mime_type": "text/plain"})
    metadata = [types.CustomMetadata(key="path", string_value=path),
                types.CustomMetadata(key="sha256", string_value="0" * 64)]  # fmt: skip
    operation = client.file_search_stores.import_file(
        file_search_store_name=store, file_name=uploaded.name or "",
        config=types.ImportFileConfig(custom_metadata=metadata),
    )  # fmt: skip
    done = client.operations.get(operation)
    assert done.response is not None and done.response.document_name
    client.close()
    return done.response.document_name


# -- must-show 3: a fault storm ------------------------------------------------------------------


def test_a_fault_storm_lands_every_file_once_while_the_breaker_trips_and_recovers(
    tmp_path: Path,
) -> None:
    faults = Faults(
        rate_429=0.20, rate_500=0.10, rate_hang=0.05, hang_seconds=0.2, retry_delay="0.02s"
    )
    with FakeGemini(Behaviour(api_key=FAKE_KEY), faults, seed=3) as fake:
        site = make_site(tmp_path, fake, 300)
        write_config(site, max_attempts=12)
        started = time.monotonic()

        summary = sync(site, timeout=240)

        elapsed = time.monotonic() - started
        assert (summary["exit_code"], summary["counts"]["uploaded"]) == (0, 300), (
            summary.get("failures"),
            summary["stderr"][-3000:],
        )
        assert_exact(site)
        applied = {key.rsplit(":", 1)[1] for key in fake.faults_applied}
        assert applied >= {"429", "500", "hang"}
        stderr = summary["stderr"]
        assert "remote.breaker.opened" in stderr and "remote.breaker.half_open" in stderr
        last_open = stderr.rfind("remote.breaker.opened")
        assert stderr.rfind("remote.breaker.closed") > last_open, "the breaker ends closed"
        assert elapsed < 180, f"the storm took {elapsed:.0f}s"


# -- must-show 4: crash-exact -----------------------------------------------------------------------


class Killer:
    """SIGKILLs the armed sync process from inside the fake, at a chosen request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.route = ""
        self.remaining = 0
        self.condition: Callable[[Call], bool] = lambda _call: True
        self.kills = 0

    def arm(self, proc: subprocess.Popen[bytes], route: str, after: int,
            condition: Callable[[Call], bool] | None = None) -> None:  # fmt: skip
        with self.lock:
            self.proc, self.route, self.remaining = proc, route, after
            self.condition = condition or (lambda _call: True)

    def __call__(self, call: Call) -> None:
        with self.lock:
            if self.proc is None or call.route != self.route or not self.condition(call):
                return
            self.remaining -= 1
            if self.remaining > 0:
                return
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
            self.proc = None


def operation_pending(fake: FakeGemini) -> Callable[[Call], bool]:
    """True for a poll of an operation that is not done yet (we are mid-polling)."""

    def check(call: Call) -> bool:
        with fake.lock:
            ops = [op for op in fake.operations.values() if op.name.endswith(call.params["op"])]
        return bool(ops) and not ops[0].done

    return check


def test_sigkill_anywhere_then_rerun_is_exact_with_no_orphans(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    # Operations finish on the server's own time too: an import whose answer was lost
    # still completes though nobody polls it.
    behaviour = Behaviour(api_key=FAKE_KEY, op_polls_to_done=3, op_seconds_to_done=0.5)
    with FakeGemini(behaviour, Faults(retry_delay="0.02s"), seed=5) as fake:
        site = make_site(tmp_path, fake, 300)
        killer = Killer()
        for route in ("stores.importFile", "operations.get", "files.delete"):
            fake.on(route, killer)
        # where: import served but its answer lost / while polling / op done, DB not committed
        points: list[tuple[str, Callable[[Call], bool] | None]] = [
            ("stores.importFile", None),
            ("operations.get", operation_pending(fake)),
            ("files.delete", None),
            ("random", None),
        ]
        killed = 0
        for round_number in range(12):
            if round_number == 6:  # edits between crashes: replacements crash too
                for path in rng.sample(site.paths, 15):
                    touch_later(site.root / path, f"edited in round {round_number}\n")
            route, condition = points[round_number % len(points)]
            proc = start_sync(site)
            if route == "random":
                killed += kill_after(proc, rng.uniform(0.3, 2.0))
            else:
                killer.arm(proc, route, rng.randint(1, 25), condition)
                proc.wait(timeout=120)
                killed += proc.returncode == -signal.SIGKILL

        final = sync(site, "--cleanup-orphans")

        assert final["exit_code"] == 0, final["stderr"][-3000:]
        assert killed >= 9, "most kills must land while the sync was running"
        assert killer.kills >= 7
        assert_exact(site)


def kill_after(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGKILL `proc` after `seconds` unless it finished; return True if it was killed."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    return False


# -- must-show 5: the key never leaks --------------------------------------------------------------


def test_the_api_key_never_reaches_logs_status_or_state_files(tmp_path: Path) -> None:
    faults = Faults(rate_429=0.05, rate_500=0.05, retry_delay="0.02s")
    with FakeGemini(Behaviour(api_key=FAKE_KEY), faults, seed=11) as fake:
        site = make_site(tmp_path, fake, 40)
        write_config(site, logs_level="debug", max_attempts=12)
        outputs = [sync(site)["stderr"]]
        outputs += run_daemon_until_synced(site)
        for args in (("status", "--json"), ("store", "list", "--json"), ("logs", "--json"),
                     ("doctor", "--offline")):  # fmt: skip
            done = objlibd(site, *args)
            outputs += [done.stdout, done.stderr]
        fake.behaviour.api_key = "a-different-key"  # the error path: the key is refused
        refused = objlibd(site, "sync", "--json")
        outputs += [refused.stdout, refused.stderr]

        assert "API key not valid" in refused.stdout + refused.stderr
        assert leaks(FAKE_KEY, outputs, [site.state_dir, site.log_dir, site.config]) == []


def run_daemon_until_synced(site: Site) -> list[str]:
    """Run `objlibd run` until the store holds every file, then SIGTERM it; return its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "objlibd", "run", "--config", str(site.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    try:
        site.root.joinpath("new while running.txt").write_text("fresh\n", encoding="utf-8")
        wait_for(lambda: len(site.fake.documents()) >= len(site.paths) + 1, 60, "daemon sync")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    return [out, err]


def leaks(secret: str, outputs: list[str], places: list[Path]) -> list[str]:
    """Return every output index and file that contains the secret (or its distinctive part)."""
    needles = [secret.encode(), secret[10:30].encode()]
    found = [f"output #{i}" for i, text in enumerate(outputs)
             if any(n.decode() in text for n in needles)]  # fmt: skip
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found


# -- the daemon stops on time even with uploads in flight -----------------------------------------


def test_sigterm_with_uploads_in_flight_exits_0_in_time_and_a_rerun_finishes_exactly(
    tmp_path: Path,
) -> None:
    """Every call takes 4 s: the stop budget runs out mid-upload, so the upload is abandoned."""
    # Imports finish on the service side whether or not anyone polls, as the real one does.
    behaviour = Behaviour(api_key=FAKE_KEY, op_seconds_to_done=0.05)
    with FakeGemini(behaviour, Faults(latency_seconds=4.0), seed=5) as fake:
        site = make_site(tmp_path, fake, 8)
        write_config(site, timeout_seconds=30.0)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "objlibd", "run", "--config", str(site.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(),
        )  # fmt: skip
        try:
            wait_for(lambda: fake.count("files.upload") >= 2, 60, "uploads in flight")
            asked = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
            took = time.monotonic() - asked
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        fake.faults.latency_seconds = 0.0
        # What the dead daemon sent is still being served; a real service would finish it too.
        wait_for(lambda: fake.in_flight == 0, 30, "the abandoned requests to be served")

        summary = sync(site, "--cleanup-orphans")

    assert (code, took < 10) == (0, True), took
    assert summary["exit_code"] == 0, summary["stderr"][-2000:]
    assert_exact(site)


# -- issue #14: the learned pace is kept for the next run ------------------------------------------


def test_the_pace_a_sync_learns_is_kept_and_the_next_sync_starts_from_it(tmp_path: Path) -> None:
    with FakeGemini(Behaviour(api_key=FAKE_KEY), Faults(retry_delay="0.02s")) as fake:
        site = make_site(tmp_path, fake, 5)
        fake.inject("stores.importFile", 429, retry_delay="0.05s")  # a quota 429: it slows
        first = sync(site)
        site.root.joinpath("new since.txt").write_text("new\n", encoding="utf-8")
        second = objlibd(site, "sync")
        shown = json.loads(objlibd(site, "status", "--json").stdout)

    pace = first["pace"]
    assert (pace["source"], pace["quota_429s"], pace["rpm"]) == ("configured", 1, 30000.0)
    assert "remote.breaker" not in first["stderr"]
    assert "pace: 30000 rpm (learned), 0 quota 429s absorbed" in second.stdout, second.stdout
    assert shown["remote"]["pace"] == {"rpm": 30000.0, "source": "learned", "quota_429s": 1}


def test_the_daemons_heartbeat_carries_the_pace_and_status_prints_it(
    tmp_path: Path,
) -> None:
    with FakeGemini(Behaviour(api_key=FAKE_KEY), Faults(retry_delay="0.02s")) as fake:
        site = make_site(tmp_path, fake, 5)
        proc = subprocess.Popen(
            [sys.executable, "-m", "objlibd", "run", "--config", str(site.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(),
        )  # fmt: skip
        beat_file = site.state_dir / "daemon.heartbeat.json"
        try:
            wait_for(lambda: len(fake.documents()) >= 5, 60, "the daemon's first sync")
            wait_for(lambda: (heartbeat_remote(beat_file).get("pace") or {}).get("calls", 0) >= 10,
                     30, "a heartbeat after the uploads")  # fmt: skip
            pace = heartbeat_remote(beat_file)["pace"]
            shown = objlibd(site, "status")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    assert set(pace) == {"rpm", "source", "limit", "ceiling", "quota_429s", "cuts", "calls",
                         "waited_s"}  # fmt: skip
    assert (pace["source"], pace["quota_429s"]) == ("configured", 0)
    assert "pace:       60000 rpm (configured), 0 quota 429s absorbed" in shown.stdout


def heartbeat_remote(path: Path) -> dict[str, Any]:
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    remote: dict[str, Any] = beat.get("remote") or {}
    return remote
