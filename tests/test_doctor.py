"""objlibd doctor against a healthy tmpfs drive, an unmounted one, a corrupt DB, no API key,
and an unreadable root (the last as an unprivileged user in a subprocess).

What cannot exist on Linux (launchctl, the Keychain) is played by fakes through `Probes`;
the mount, the library, the marker, the state DB, the log dir and the disk are real.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import keyring.errors
import pytest

from daemon_fixtures import LIBRARY_DIR, Drive, write_config
from fakes.gemini_server import Behaviour, FakeGemini
from objlibd import config as config_module
from objlibd.autostart.launchd import Launchd
from objlibd.autostart.plan import ServiceSpec
from objlibd.cli import service as service_cli
from objlibd.config import Config
from objlibd.doctor import report as doctor
from objlibd.doctor import service as servicechecks
from objlibd.doctor.report import Check, DaemonHealth, DiskUsage, Level, Probes
from objlibd.engine import volume
from objlibd.runtime import pidfile
from objlibd.state import keys
from objlibd.state.store import StateStore
from objlibd.status import files
from test_launchd import FakeLaunchctl, execute

SECRET = "objlibd-canary-THIS-IS-NOT-A-REAL-KEY-0123456789"
ALL_CHECKS = [
    "config valid", "mount point mounted", "library root readable", "marker matches the DB",
    "state DB integrity", "API key present", "store reachable", "service installed",
    "daemon running", "log dir writable", "free disk (state dir)",
]  # fmt: skip


class FakeKeyStore:
    """The OS keychain as a dict, with keyring's error for deleting what is not there."""

    def __init__(self, items: dict[tuple[str, str], str] | None = None) -> None:
        self.items = dict(items or {})

    def get_password(self, service_name: str, username: str) -> str | None:
        return self.items.get((service_name, username))

    def set_password(self, service_name: str, username: str, password: str) -> None:
        self.items[(service_name, username)] = password

    def delete_password(self, service_name: str, username: str) -> None:
        if self.items.pop((service_name, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


class NoKeychain(FakeKeyStore):
    def get_password(self, service_name: str, username: str) -> str | None:
        raise keyring.errors.NoKeyringError("No recommended backend was available.")


class Setup:
    """A config on a tmpfs drive, a state DB that synced it, a marker, a loaded agent."""

    def __init__(self, tmp_path: Path, drive: Drive, *, extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.drive = drive
        self.config_path = write_config(
            tmp_path / "objlibd.toml", drive.mount_point, tmp_path / "state",
            tmp_path / "logs", extra=extra,
        )  # fmt: skip
        self.config = config_module.load(self.config_path)
        self.config.logs.dir.mkdir(parents=True)
        self.launchctl = FakeLaunchctl()
        self.keystore = FakeKeyStore()
        self.environ: dict[str, str] = {}
        self.health = DaemonHealth(running=True, pid=4242, watcher_alive=True, volume="available")
        self.reached: list[str] = []

    def sync_once(self) -> str:
        """Do what a first sync leaves behind: a library id in the DB, the marker on the drive."""
        library_id = volume.new_library_id()
        state = StateStore.open(self.config.db_path)
        state.values.set_config(keys.LIBRARY_ID, library_id)
        state.values.set_config("store_name", self.config.store.name)
        state.close()
        volume.write_marker(self.config.library, volume.Marker(library_id))
        return library_id

    def agent(self, config: Config) -> Launchd:
        spec = ServiceSpec(
            Path(sys.executable), self.config_path, config.state.dir, config.logs.dir,
            self.tmp_path / "home", 501,
        )  # fmt: skip
        return Launchd(spec, self.launchctl)

    def install_agent(self) -> None:
        agent = self.agent(self.config)
        execute(agent.install_steps(), self.launchctl)

    def reach(self, config: Config) -> str:
        self.reached.append(config.store.name)
        return f'store "{config.store.name}" answers (fileSearchStores/abc)'

    def probes(self) -> Probes:
        return Probes(
            manager=self.agent,
            keystore=lambda: self.keystore,
            environ=self.environ,
            reach_store=self.reach,
            daemon=lambda _config: self.health,
            disk_usage=lambda _path: DiskUsage(100 * 1024**3, 0, 50 * 1024**3),
        )

    def run(self, *, offline: bool = False) -> doctor.Report:
        return doctor.run(self.config_path, self.probes(), offline=offline)


def levels(report: doctor.Report) -> dict[str, Level]:
    return {check.name: check.level for check in report.checks}


def find(report: doctor.Report, name: str) -> Check:
    return next(check for check in report.checks if check.name == name)


@pytest.fixture
def setup(tmp_path: Path, drive: Drive) -> Setup:
    return Setup(tmp_path, drive)


# -- the five situations --------------------------------------------------------------------------


def test_a_healthy_drive_is_all_ok_and_exit_zero(setup: Setup) -> None:
    setup.sync_once()
    setup.install_agent()

    report = setup.run()

    assert [c.name for c in report.checks] == ALL_CHECKS
    assert levels(report) == dict.fromkeys(ALL_CHECKS, Level.OK), doctor.render_report(report)
    assert report.ok
    assert find(report, "service installed").detail.endswith("loaded in gui/501, pid 4242")


def test_an_unmounted_drive_warns_and_skips_what_needs_it_but_exits_zero(setup: Setup) -> None:
    setup.sync_once()
    setup.install_agent()
    setup.drive.unmount()

    report = setup.run()

    assert levels(report)["mount point mounted"] is Level.WARN
    assert "drive not connected" in find(report, "mount point mounted").detail
    assert "changes nothing" in find(report, "mount point mounted").fix
    assert find(report, "library root readable").detail == "not checked: the drive is not mounted"
    assert find(report, "marker matches the DB").level is Level.WARN
    assert levels(report)["state DB integrity"] is Level.OK
    assert report.ok


def test_a_corrupt_state_db_fails_with_the_way_out(setup: Setup) -> None:
    setup.sync_once()
    setup.install_agent()
    setup.config.db_path.write_bytes(b"this is not a database" * 200)
    for suffix in ("-wal", "-shm"):
        Path(f"{setup.config.db_path}{suffix}").unlink(missing_ok=True)

    report = setup.run()

    check = find(report, "state DB integrity")
    assert check.level is Level.FAIL
    assert "is damaged" in check.detail and "moved aside" in check.fix
    assert find(report, "marker matches the DB").level is Level.WARN
    assert not report.ok


def test_a_damaged_page_fails_integrity_check(setup: Setup) -> None:
    setup.sync_once()
    state = StateStore.open(setup.config.db_path)
    for index in range(300):
        state.values.set_config(f"filler.{index}", "x" * 500)
    state.close()
    with sqlite3.connect(setup.config.db_path) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'library_config'"
        ).fetchone()
    conn.close()
    data = bytearray(setup.config.db_path.read_bytes())
    start = (root - 1) * size + 12  # keep the page header, scramble the cell pointers
    data[start : start + 64] = bytes(range(64))
    setup.config.db_path.write_bytes(bytes(data))

    report = setup.run()

    assert find(report, "state DB integrity").level is Level.FAIL
    assert not report.ok


def test_no_api_key_with_the_gemini_backend_fails_and_never_reaches_the_store(
    tmp_path: Path, drive: Drive
) -> None:
    setup = Setup(tmp_path, drive, extra="")
    text = setup.config_path.read_text().replace('backend = "local"', 'backend = "gemini"')
    setup.config_path.write_text(text)
    setup.sync_once()
    setup.install_agent()

    report = setup.run()

    key = find(report, "API key present")
    assert key.level is Level.FAIL
    assert "objlibd key set" in key.fix
    assert find(report, "store reachable").detail == "not checked: no API key"
    assert setup.reached == []
    assert not report.ok


def test_an_unreadable_root_fails_naming_the_cause(unreadable: UnreadableLibrary) -> None:
    result = unreadable.doctor_as_nobody("--json")
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}

    assert result.returncode == 1, result.stderr
    assert checks["mount point mounted"]["level"] == "OK"
    assert checks["library root readable"]["level"] == "FAIL"
    assert "Permission denied" in checks["library root readable"]["detail"]
    assert checks["library root readable"]["fix"]
    assert checks["marker matches the DB"]["level"] == "WARN"


def test_an_unreadable_root_as_text_shows_the_fix_under_the_line(
    unreadable: UnreadableLibrary,
) -> None:
    result = unreadable.doctor_as_nobody()
    lines = result.stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if "library root readable" in line)

    assert result.returncode == 1
    assert lines[index].lstrip().startswith("FAIL")
    assert "fix:" in lines[index + 1]
    assert lines[-1].endswith("needs attention")


# -- the API key: found, never shown --------------------------------------------------------------


def gemini(setup: Setup) -> Setup:
    text = setup.config_path.read_text().replace('backend = "local"', 'backend = "gemini"')
    setup.config_path.write_text(text)
    return setup


def test_a_key_in_the_keychain_is_found_and_never_shown(setup: Setup) -> None:
    gemini(setup).sync_once()
    setup.keystore.set_password("objlibd", "gemini-api-key", SECRET)

    report = setup.run()
    shown = doctor.render_report(report) + json.dumps(report.as_dict())

    assert find(report, "API key present").level is Level.OK
    assert "keychain" in find(report, "API key present").detail
    assert find(report, "store reachable").level is Level.OK
    assert setup.reached == ["test-store"]
    assert SECRET not in shown and SECRET[:12] not in shown


def test_the_environment_wins_and_offline_skips_the_network(setup: Setup) -> None:
    gemini(setup).sync_once()
    setup.environ["GEMINI_API_KEY"] = SECRET

    report = setup.run(offline=True)

    assert find(report, "API key present").detail == "found in $GEMINI_API_KEY (not shown)"
    assert find(report, "store reachable").detail == "not checked (--offline)"
    assert setup.reached == []


def test_no_usable_keychain_counts_as_no_key(setup: Setup) -> None:
    gemini(setup)
    setup.keystore = NoKeychain()

    check = find(setup.run(), "API key present")

    assert check.level is Level.FAIL
    assert "no usable keychain (NoKeyringError)" in check.detail


def test_the_store_is_reached_before_the_first_sync_too(setup: Setup) -> None:
    gemini(setup)
    StateStore.open(setup.config.db_path).close()
    setup.environ["GEMINI_API_KEY"] = SECRET

    check = find(setup.run(), "store reachable")

    assert check.level is Level.OK
    assert setup.reached == [setup.config.store.name]


def gemini_at(setup: Setup, base_url: str) -> Setup:
    gemini(setup)
    extra = (
        f'\n[gemini]\nbase_url = "{base_url}"\nmax_attempts = 2\n'
        "retry_initial_delay_seconds = 0.01\nretry_max_delay_seconds = 0.02\ntimeout_seconds = 5\n"
    )
    setup.config_path.write_text(setup.config_path.read_text() + extra)
    return setup


def test_doctor_asks_the_real_store_and_creates_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SDK against the fake service: before the first sync, a lookup, no creation."""
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeGemini(Behaviour(api_key=SECRET)) as fake:
        gemini_at(setup, fake.base_url).environ["GEMINI_API_KEY"] = SECRET
        probes = setup.probes()
        probes.reach_store = servicechecks.reach_store

        check = find(doctor.run(setup.config_path, probes), "store reachable")
        stores = fake.store_names()

    assert check.level is Level.OK
    assert "does not exist yet" in check.detail
    assert stores == {}


def test_a_closed_port_fails_the_store_check_before_any_sync(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    gemini_at(setup, f"http://127.0.0.1:{closed_port()}").environ["GEMINI_API_KEY"] = SECRET
    probes = setup.probes()
    probes.reach_store = servicechecks.reach_store

    check = find(doctor.run(setup.config_path, probes), "store reachable")

    assert check.level is Level.FAIL
    assert "did not succeed in 2 attempts" in check.detail
    assert SECRET not in check.detail + check.fix


def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_error_is_a_fail_without_the_key(setup: Setup) -> None:
    gemini(setup).sync_once()
    setup.environ["GEMINI_API_KEY"] = SECRET

    def refuse(_config: Config) -> str:
        raise ConnectionError("name resolution failed")

    probes = setup.probes()
    probes.reach_store = refuse
    check = find(doctor.run(setup.config_path, probes), "store reachable")

    assert check.level is Level.FAIL
    assert check.detail == "ConnectionError: name resolution failed"


# -- the other lines ------------------------------------------------------------------------------


def test_an_invalid_config_is_one_fail_line(tmp_path: Path) -> None:
    path = tmp_path / "objlibd.toml"
    path.write_text("[library]\nmount_point = 3\n")

    report = doctor.run(path, Probes(manager=lambda _c: None, keystore=FakeKeyStore))

    assert [(c.name, c.level) for c in report.checks] == [("config valid", Level.FAIL)]
    assert "[library] mount_point" in report.checks[0].detail
    assert not report.ok


def test_service_lines_follow_what_launchctl_says(setup: Setup) -> None:
    setup.sync_once()
    not_installed = find(setup.run(), "service installed")
    setup.install_agent()
    setup.launchctl.loaded = False
    stopped = setup.run()
    setup.health = DaemonHealth(running=False)
    setup.launchctl.loaded = True
    crashed = find(setup.run(), "daemon running")

    assert (not_installed.level, not_installed.fix) == (Level.WARN, "run `objlibd install`")
    assert find(stopped, "service installed").fix == "run `objlibd start`"
    assert crashed.level is Level.FAIL and "launchd.stderr.log" in crashed.fix


def test_a_plist_for_another_python_asks_to_install_again(setup: Setup) -> None:
    setup.install_agent()
    agent = setup.agent(setup.config)
    agent.path.write_bytes(agent.path.read_bytes().replace(b"python", b"python3.9"))

    check = find(setup.run(), "service installed")

    assert check.level is Level.WARN and "install" in check.fix


def test_a_dead_watcher_on_an_available_drive_fails(setup: Setup) -> None:
    setup.health = DaemonHealth(running=True, pid=9, watcher_alive=False, volume="available")

    check = find(setup.run(), "daemon running")

    assert check.level is Level.FAIL and "watcher is not alive" in check.detail


def test_daemon_health_reads_the_real_pidfile_and_heartbeat(setup: Setup) -> None:
    state_dir = setup.config.state.dir
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = pidfile.PidFile(state_dir / pidfile.PIDFILE_NAME)
    lock.acquire()
    try:
        before = doctor.daemon_health(setup.config)
        files.write_json_atomic(
            state_dir / files.HEARTBEAT_NAME,
            {"pid": os.getpid(), "updated_epoch": time.time(),
             "watcher": {"alive": True}, "volume": {"state": "available"}},
        )  # fmt: skip
        after = doctor.daemon_health(setup.config)
    finally:
        lock.release()
    gone = doctor.daemon_health(setup.config)

    assert before == DaemonHealth(running=True, pid=os.getpid(), watcher_alive=None)
    assert after == DaemonHealth(True, os.getpid(), True, "available")
    assert gone == DaemonHealth(running=False)


def test_a_log_dir_that_cannot_be_written_fails(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; the unprivileged subprocess test covers access")
    log_dir = tmp_path / "logs"
    log_dir.mkdir(mode=0o500)

    assert doctor.check_log_dir(log_dir).level is Level.FAIL


def test_log_dir_missing_is_a_warning_and_present_is_ok(tmp_path: Path) -> None:
    assert doctor.check_log_dir(tmp_path / "nope").level is Level.WARN
    assert doctor.check_log_dir(tmp_path).level is Level.OK


@pytest.mark.parametrize(
    ("free", "level"),
    [(10 * 1024**2, Level.FAIL), (500 * 1024**2, Level.WARN), (5 * 1024**3, Level.OK)],
)
def test_free_disk_thresholds(tmp_path: Path, free: int, level: Level) -> None:
    check = doctor.check_disk(tmp_path / "state" / "deeper", lambda _p: DiskUsage(0, 0, free))

    assert check.level is level


def test_a_drive_pushed_to_name_1_by_a_leftover_folder_is_named(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    stale = tmp_path / "U32 Shadow"
    stale.mkdir()
    moved = tmp_path / "U32 Shadow 1"
    moved.mkdir()
    mount_tmpfs(moved)
    try:
        config = config_module.from_mapping(
            {"library": {"mount_point": str(stale), "root": str(stale / LIBRARY_DIR)}},
            source=tmp_path / "objlibd.toml",
        )
        check = doctor.check_mount(config.library)
    finally:
        unmount_all(moved)

    assert check.level is Level.FAIL
    assert str(moved) in check.detail
    assert f'rmdir "{stale}"' in check.fix


def test_render_text_is_one_line_per_check_plus_fixes_and_a_summary() -> None:
    report = doctor.Report(
        Path("/c.toml"),
        (Check("a", Level.OK, "fine"), Check("bb", Level.FAIL, "broken", "do this")),
    )

    assert doctor.render_report(report).splitlines() == [
        "objlibd doctor (/c.toml)",
        "  OK    a   fine",
        "  FAIL  bb  broken",
        "            fix: do this",
        "1 OK, 1 FAIL: needs attention",
    ]


# -- an unreadable library root, seen by an unprivileged user --------------------------------------


NOBODY = 65534


def mount_tmpfs(point: Path) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(point)],
        check=True, capture_output=True,
    )  # fmt: skip


def unmount_all(point: Path) -> None:
    while os.path.ismount(point):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


class UnreadableLibrary:
    """A tmpfs drive whose library root only root may read, in a dir others can traverse."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mount_point = base / "U32 Shadow"

    def setup(self) -> None:
        self.mount_point.mkdir()
        mount_tmpfs(self.mount_point)
        root = self.mount_point / LIBRARY_DIR
        root.mkdir(mode=0o700)
        (root / "a lecture.txt").write_text("text")
        self.config_path = write_config(
            self.base / "objlibd.toml", self.mount_point, self.base / "state",
            self.base / "logs",
        )  # fmt: skip
        (self.base / "logs").mkdir()
        StateStore.open(self.base / "state" / "objlibd.db").close()
        for path in (self.base / "state", self.base / "logs"):
            path.chmod(0o777)
        (self.base / "state" / "objlibd.db").chmod(0o666)

    def doctor_as_nobody(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            sys.executable, "-m", "objlibd", "doctor", "--offline",
            "--config", str(self.config_path), *args,
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.base)}
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    def teardown(self) -> None:
        unmount_all(self.mount_point)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def unreadable() -> Iterator[UnreadableLibrary]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs and drop to an unprivileged user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run doctor as an unprivileged user")
    # pytest's tmp dirs are 0700 (root only): the unprivileged doctor needs to traverse this one
    base = Path(tempfile.mkdtemp(prefix="objlibd-doctor-"))
    base.chmod(0o755)
    library = UnreadableLibrary(base)
    try:
        try:
            library.setup()
        except subprocess.CalledProcessError as err:
            pytest.skip(f"cannot mount a tmpfs here: {err}")
        yield library
    finally:
        library.teardown()


def test_a_tcc_denial_names_the_interpreter_and_its_real_binary() -> None:
    """macOS grants Full Disk Access per binary path: a venv python is a symlink."""
    hint = f"grant Full Disk Access (or Removable Volumes) to {sys.executable} in System Settings"

    fix = doctor.binary_hint(hint)

    assert sys.executable in fix
    if os.path.realpath(sys.executable) != sys.executable:
        assert os.path.realpath(sys.executable) in fix
    assert doctor.binary_hint("check the folder's permissions") == "check the folder's permissions"


def test_a_daemon_that_cannot_read_what_this_shell_reads_points_at_tcc(setup: Setup) -> None:
    """The launchd job hangs on EPERM while Terminal reads fine (TCC is per binary)."""
    setup.sync_once()
    setup.health = DaemonHealth(
        True, 4242, False, "unavailable", f"cannot read {setup.drive.root}: Operation not permitted"
    )

    check = find(setup.run(), "daemon running")

    assert check.level is Level.FAIL
    assert "the daemon cannot" in check.detail and "Operation not permitted" in check.detail
    assert f"Full Disk Access (or Removable Volumes) to {sys.executable}" in check.fix


def test_a_daemon_waiting_for_an_unplugged_drive_is_fine(setup: Setup) -> None:
    setup.sync_once()
    setup.drive.unmount()
    setup.health = DaemonHealth(True, 4242, False, "unavailable", "library disk not connected")

    check = find(setup.run(), "daemon running")

    assert check.level is Level.OK and "waiting for the drive" in check.detail


def test_the_daemon_line_carries_the_health_models_verdict(setup: Setup) -> None:
    setup.sync_once()
    unreachable = {
        "code": "store_unreachable",
        "severity": "error",
        "since": None,
        "message": "store unreachable for 12 min with 3 waiting",
        "fix": "check base_url",
    }
    quarantined = {
        "code": "quarantined",
        "severity": "warning",
        "since": None,
        "message": "2 files quarantined",
        "fix": "`objlibd failures`",
    }
    waiting = {"code": "paused", "severity": "info", "since": None, "message": "paused",
               "fix": "`objlibd resume`"}  # fmt: skip

    def line(*problems: dict[str, object]) -> Check:
        setup.health = DaemonHealth(True, 4242, True, "available", "ok", problems)
        return find(setup.run(), "daemon running")

    assert (line().level, line(waiting).level) == (Level.OK, Level.OK)
    warned = line(quarantined, waiting)
    failed = line(unreachable, quarantined)
    assert (warned.level, warned.fix) == (Level.WARN, "`objlibd failures`")
    assert failed.level is Level.FAIL
    assert "store_unreachable: store unreachable for 12 min" in failed.detail
    assert failed.fix == "store_unreachable: check base_url | quarantined: `objlibd failures`"


def test_a_config_that_cannot_become_a_service_is_a_line_not_a_crash(setup: Setup) -> None:
    text = setup.config_path.read_text()
    setup.config_path.write_text(text.replace(f'dir = "{setup.config.logs.dir}"', 'dir = "logs"'))
    probes = setup.probes()
    probes.manager = lambda config: service_cli.manager_for(service_cli.ServiceContext(), config)

    check = find(doctor.run(setup.config_path, probes), "service installed")

    assert check.level is Level.FAIL and "must be absolute for a service" in check.detail
