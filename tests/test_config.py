"""Configuration: the documented example matches the defaults, and bad input is explained."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objlibd import config as config_module
from objlibd.cli import main
from objlibd.config import Config
from objlibd.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "objlibd.toml"


def test_the_documented_example_equals_the_built_in_defaults() -> None:
    loaded = config_module.load(EXAMPLE)

    assert dataclasses.replace(loaded, source=None) == Config()


def test_every_key_of_every_table_is_in_the_example_with_a_comment() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")

    for table in dataclasses.fields(Config):
        if table.name == "source":
            continue
        assert f"[{table.name}]" in text
        for key in dataclasses.fields(getattr(Config(), table.name)):
            assert f"{key.name} =" in text, f"[{table.name}] {key.name} is not documented"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "objlibd.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sync]\nquiet_seconds = 'soon'\n", "[sync] quiet_seconds: expected a number, got 'soon'"),
        ("[sync]\nbogus = 1\n", "[sync] bogus: unknown key"),
        ("[nope]\n", "[nope]: unknown table"),
        ('[library]\nroot = "/elsewhere"\n', "[library] root: '/elsewhere' is outside mount_point"),
        ('[store]\nbackend = "s3"\n', "[store] backend: 's3' is not one of"),
        ("[sync]\nmax_wait_seconds = 1.0\n", "[sync] max_wait_seconds: must be at least quiet"),
        ('[jobs]\ntimezone = "Mars/Base"\n', "[jobs] timezone: 'Mars/Base' is not a known"),
        ("[library]\nmax_file_mb = 0\n", "[library] max_file_mb: must be greater than 0"),
        ("[gemini]\nrate_limit_max_rpm = -5\n", "[gemini] rate_limit_max_rpm: must be at least 0"),
        ('[library]\ninclude = ["pdf"]\n', "[library] include[0]: 'pdf' must look like"),
        ("[enrichment]\nrules = [{ key = 'path', pattern = 'x' }]\n", "rules[0] key: path and"),
        ("[enrichment]\nrules = [{ pattern = 'x' }]\n", "rules[0] key: required key is missing"),
        ("not toml at all = = =\n", "not valid TOML"),
        (
            "[library]\nmax_file_mb = nan\n",
            "[library] max_file_mb: must be a finite number, got nan",
        ),
        ("[jobs]\nreconcile_minutes = inf\n", "[jobs] reconcile_minutes: must be a finite number"),
        ("[sync]\nprune_after_days = 999999\n", "[sync] prune_after_days: must be at most 3650"),
        ("[sync]\nvolume_poll_seconds = nan\n", "[sync] volume_poll_seconds: must be a finite"),
        ("[sync]\nmass_missing_files = -1\n", "[sync] mass_missing_files: must be at least 0"),
        (
            "[jobs]\nmisfire_grace_seconds = 1e300\n",
            "[jobs] misfire_grace_seconds: must be at most",
        ),
        ("[gemini]\nmax_attempts = 9223372036854775807\n", "[gemini] max_attempts: must be at"),
        ("[logs]\nbackups = -inf\n", "[logs] backups: expected a whole number, got -inf"),
    ],
)
def test_bad_config_names_the_file_table_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        config_module.load(path)

    assert caught.value.message.startswith(f"{path}: ")
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_cli_prints_config_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[sync]\nquiet_seconds = 'soon'\n")

    code = main(["sync", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"objlibd: {path}: [sync] quiet_seconds: expected a number")
    assert "Traceback" not in err


def test_a_missing_config_file_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sync", "--config", str(tmp_path / "none.toml")])

    err = capsys.readouterr().err
    assert code == 2
    assert "file not found" in err
    assert "objlibd demo" in err


def test_config_path_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config_module.CONFIG_ENV, str(tmp_path / "from-env.toml"))

    assert config_module.resolve_path(None) == tmp_path / "from-env.toml"
    assert config_module.resolve_path("/x.toml") == Path("/x.toml")


def test_every_number_in_the_config_has_a_finite_range() -> None:
    found = config_module.numbers(Config())

    assert set(found) == set(config_module.RANGES), "a new number key needs a RANGES entry"
    for where, value in found.items():
        assert config_module.RANGES[where].problem(value) is None, f"default {where} refused"


@settings(max_examples=300, deadline=None)
@given(
    where=st.sampled_from(sorted(config_module.RANGES)),
    value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
)
def test_any_number_loads_in_range_or_is_refused_naming_its_key(where: str, value: float) -> None:
    table, key = where[1:].split("] ")
    try:
        loaded = config_module.from_mapping({table: {key: value}}, source=Path("/c.toml"))
    except ConfigError as err:
        assert err.message.startswith(f"/c.toml: [{table}] "), err.message
        assert key in err.message, err.message  # its own key, or a rule that relates it
        return
    number = config_module.numbers(loaded)[where]
    assert math.isfinite(number)
    assert config_module.RANGES[where].low <= number <= config_module.RANGES[where].high
