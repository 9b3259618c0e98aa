"""`objlibd status` stays fast: what it imports, and the plain-status path past argparse.

No timing assertions (bench/daemon_bench.py measures the wall time against `python -c pass`);
these guard the causes instead. `status` runs `python -m objlibd` with `-X importtime`, the way
people and scripts run it, and checks which modules it loaded. The fast path in `cli.main`
must agree with the full parser on every command line it takes.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from daemon_fixtures import write_config
from objlibd import config as config_module
from objlibd.cli import build_parser, guarded, main, plain_status
from objlibd.state.store import StateStore
from objlibd.status import cache as statuscache
from objlibd.status import files
from objlibd.status import view as status

# Never for `status`: the daemon's libraries, the store SDKs, the other CLI areas, and argparse
# and platformdirs, which the plain path and a config naming its dirs do not need.
NEVER = {
    "structlog", "watchdog", "apscheduler", "google", "google.genai", "tenacity", "httpx2",
    "psutil", "keyring", "subprocess", "argparse", "platformdirs", "objlibd.logs",
    "objlibd.runtime.daemon", "objlibd.remote", "objlibd.cli.engine", "objlibd.cli.service",
}  # fmt: skip
# While the daemon runs its heartbeat carries the DB facts and the volume: no SQLite at all.
NOT_WITH_A_HEARTBEAT = {"sqlite3", "objlibd.state.store", "objlibd.engine.volume", "objlibd.models"}


def make_setup(tmp_path: Path) -> tuple[Path, config_module.Config]:
    path = write_config(
        tmp_path / "objlibd.toml", tmp_path / "U32 Shadow", tmp_path / "state", tmp_path / "logs"
    )
    config = config_module.load(path)
    state = StateStore.open(config.db_path)
    state.close()
    return path, config


def beat(config: config_module.Config) -> None:
    """Write the heartbeat a running daemon writes (this test process plays the daemon)."""
    now = time.time()
    state = StateStore.open(config.db_path, readonly=True)
    try:
        db = status.db_facts(state)
    finally:
        state.close()
    data = {
        "pid": os.getpid(), "started_epoch": now - 90, "updated_epoch": now, "rss_mb": 41.5,
        "volume": {"state": "unavailable", "reason": "nothing is mounted"},
        "watcher": {"alive": False}, "queue": {"pending_paths": 0}, "next_runs": {},
        "remote": {"breaker": "closed"}, "db": db,
    }  # fmt: skip
    files.write_json_atomic(config.state.dir / files.HEARTBEAT_NAME, data)
    pid = {"pid": os.getpid(), "create_time": 0.0, "started_at": now}
    (config.state.dir / "objlibd.pid").write_text(json.dumps(pid))


def imported_by_status(config_path: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    argv = [sys.executable, "-X", "importtime", "-m", "objlibd", "status", "--json"]
    done = subprocess.run(
        [*argv, "--config", str(config_path)], capture_output=True, text=True, check=False
    )
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
    return done, {row[2].strip() for row in rows[1:]}


@pytest.mark.e2e
def test_status_with_a_running_daemon_reads_only_the_config_and_the_heartbeat(
    tmp_path: Path,
) -> None:
    path, config = make_setup(tmp_path)
    beat(config)

    done, modules = imported_by_status(path)

    assert json.loads(done.stdout)["daemon"]["running"] is True
    assert done.returncode == 0
    assert modules & (NEVER | NOT_WITH_A_HEARTBEAT) == set()


@pytest.mark.e2e
def test_status_with_the_daemons_own_config_does_not_even_load_the_config(
    tmp_path: Path,
) -> None:
    path, config = make_setup(tmp_path)
    beat(config)
    files.write_pointer(config)

    done, modules = imported_by_status(path)

    assert json.loads(done.stdout)["daemon"]["running"] is True
    assert modules & {"tomllib", "dataclasses", "zoneinfo", "objlibd.config"} == set()


def test_the_quick_snapshot_equals_the_full_one(tmp_path: Path) -> None:
    path, config = make_setup(tmp_path)
    beat(config)
    files.write_pointer(config)
    now = time.time()

    assert statuscache.quick(str(path), now=now) == status.snapshot(config, now=now)


def test_an_edited_config_takes_the_full_path(tmp_path: Path) -> None:
    path, config = make_setup(tmp_path)
    beat(config)
    files.write_pointer(config)
    path.write_text(path.read_text() + "\n# edited after the daemon started\n")

    assert statuscache.quick(str(path)) is None


def test_no_daemon_or_no_pointer_takes_the_full_path(tmp_path: Path) -> None:
    path, config = make_setup(tmp_path)
    files.write_pointer(config)

    assert statuscache.quick(str(path)) is None  # a pointer, but no live heartbeat
    beat(config)
    assert statuscache.quick(str(tmp_path / "other.toml")) is None  # no pointer for this file


def test_the_quick_path_resolves_the_config_as_the_config_module_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config_module.CONFIG_ENV, raising=False)
    explicit = statuscache._config_file("sub/x.toml")
    default = statuscache._config_file(None)
    monkeypatch.setenv(config_module.CONFIG_ENV, "~/env.toml")
    from_env = statuscache._config_file(None)

    assert explicit == str(config_module.resolve_path("sub/x.toml").resolve())
    assert from_env == str(config_module.resolve_path(None).resolve())
    monkeypatch.delenv(config_module.CONFIG_ENV)
    assert default == str(config_module.resolve_path(None).resolve())


@pytest.mark.e2e
def test_status_without_a_daemon_opens_the_db_but_loads_no_daemon_library(
    tmp_path: Path,
) -> None:
    path, _config = make_setup(tmp_path)

    done, modules = imported_by_status(path)

    assert json.loads(done.stdout)["daemon"]["running"] is False
    assert done.returncode == 1
    assert "objlibd.state.store" in modules  # it did read the DB
    assert modules & NEVER == set()


# -- without a daemon: the cache with exact keys ----------------------------------------------------

HEAVY = {
    "objlibd.config",
    "objlibd.state.store",
    "sqlite3",
    "tomllib",
    "dataclasses",
    "objlibd.engine.volume",
}


def strip_uptime(out: str) -> dict[str, Any]:
    snap: dict[str, Any] = json.loads(out)
    snap["daemon"].pop("uptime_s")
    return snap


@pytest.mark.e2e
def test_a_second_status_without_a_daemon_loads_neither_config_nor_sqlite(tmp_path: Path) -> None:
    path, _config = make_setup(tmp_path)
    first, loaded = imported_by_status(path)

    again, modules = imported_by_status(path)

    assert loaded >= HEAVY  # the first one took the full path, and noted what it read
    assert modules & (HEAVY | NEVER) == set()
    assert (again.returncode, strip_uptime(again.stdout)) == (
        first.returncode, strip_uptime(first.stdout)
    )  # fmt: skip


def recalled(path: Path) -> dict[str, Any] | None:
    return statuscache.quick(str(path))


def test_the_cache_answers_only_while_config_db_drive_and_environment_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, config = make_setup(tmp_path)
    full = status.snapshot(config)
    assert recalled(path) == {**full, "daemon": recalled(path)["daemon"]}  # type: ignore[index]

    state = StateStore.open(config.db_path)
    state.files.begin_upload("new.pdf", "h1", 1, 1)  # a one-shot command wrote the DB
    assert recalled(path) is None
    assert status.snapshot(config)["files"]["uploading"] == 1
    assert recalled(path)["files"]["uploading"] == 1  # type: ignore[index]
    state.close()  # its checkpoint writes the DB file itself
    assert recalled(path) is None
    status.snapshot(config)

    with monkeypatch.context() as env:
        env.setenv("HOME", str(tmp_path / "elsewhere"))  # "~" in a config: another dir
        assert recalled(path) is None
    assert recalled(path) is not None

    config.library.mount_point.mkdir()  # what the probe looks at changed
    assert recalled(path) is None
    status.snapshot(config)
    assert recalled(path) is not None

    path.write_text(path.read_text() + "\n# edited\n")
    assert recalled(path) is None


def test_an_unreadable_or_wrong_drive_is_always_probed_afresh(tmp_path: Path) -> None:
    path, config = make_setup(tmp_path)
    point = config.library.mount_point
    point.parent.mkdir(exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    point.symlink_to(tmp_path / "elsewhere")  # degraded: a symlink is never followed

    assert status.snapshot(config)["volume"]["state"] == "degraded"
    assert recalled(path) is None


# -- the plain-status path agrees with the full parser ---------------------------------------------

WORDS = (
    "--json", "--config", "--config=c.toml", "--config=", "c.toml", "my dir/x.toml", "",
    "-", "--", "--js", "--conf", "--conf=c.toml", "--json=1", "-h", "--help", "-1", "status",
)  # fmt: skip


def test_plain_status_reads_every_command_line_exactly_as_argparse_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    taken = 0
    for size in range(4):
        for rest in itertools.product(WORDS, repeat=size):
            words = ["status", *rest]
            plain = plain_status(words)
            if plain is None:
                continue  # the full parser decides, as it always did
            taken += 1
            args = parser.parse_args(words)  # SystemExit here: plain took a line argparse refuses
            assert plain == (args.config, args.json), words
    capsys.readouterr()
    assert taken > 50


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["status"], (None, False)),
        (["status", "--json", "--config", "my dir/x.toml"], ("my dir/x.toml", True)),
        (["status", "--config=a.toml", "--config", "b.toml"], ("b.toml", False)),
        (["status", "--config", "-x.toml"], None),  # argparse: expected one argument
        (["status", "--config"], None),
        (["status", "--js"], None),  # abbreviations are argparse's business
        (["status", "-h"], None),
        (["status", "extra"], None),
        (["--version"], None),
        (["sync", "--json"], None),
        ([], None),
    ],
)
def test_plain_status_takes_only_plain_lines(
    words: list[str], expected: tuple[str | None, bool] | None
) -> None:
    assert plain_status(words) == expected


def run_both_ways(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> list[tuple[int, str, str]]:
    """Run `words` through main (the plain path) and through the parsed handler."""
    code = main(words)
    plain = capsys.readouterr()
    args = build_parser().parse_args(words)
    parsed = (guarded(lambda: args.handler(args)), *capsys.readouterr())
    return [(code, plain.out, plain.err), parsed]


def without_uptime(out: str) -> dict[str, Any]:
    snap: dict[str, Any] = json.loads(out)
    snap["daemon"].pop("uptime_s")
    return snap


@pytest.mark.parametrize("running", [True, False])
def test_the_plain_path_prints_what_the_status_command_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], running: bool
) -> None:
    path, config = make_setup(tmp_path)
    if running:
        beat(config)

    (code, out, err), (code2, out2, err2) = run_both_ways(
        ["status", "--json", "--config", str(path)], capsys
    )

    assert (code, err) == (code2, err2) == (0 if running else 1, "")
    assert without_uptime(out) == without_uptime(out2)
    assert main(["status", f"--config={path}"]) == code
    assert capsys.readouterr().out.splitlines()[-1] == ("healthy" if running else "NOT HEALTHY")


def test_the_plain_path_reports_config_errors_like_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "objlibd.toml"
    path.write_text("[sync]\nquiet_seconds = 'soon'\n")

    (code, out, err), parsed = run_both_ways(["status", "--config", str(path)], capsys)

    assert (code, out, err) == parsed
    assert code == 2
    assert err.startswith(f"objlibd: {path}: [sync] quiet_seconds: expected a number")
    assert "Traceback" not in err


def test_the_cache_is_private(tmp_path: Path) -> None:
    path, config = make_setup(tmp_path)
    status.snapshot(config)

    cache = Path(statuscache.cache_file(str(path)))

    assert cache.stat().st_mode & 0o777 == 0o600
