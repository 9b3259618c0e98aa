"""Configuration: the documented example matches the defaults, and bad input is explained."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

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
        ("[gemini]\nrate_limit_max_rpm = -5\n", "[gemini] rate_limit_max_rpm: must be 0 (not set)"),
        ('[library]\ninclude = ["pdf"]\n', "[library] include[0]: 'pdf' must look like"),
        ("[enrichment]\nrules = [{ key = 'path', pattern = 'x' }]\n", "rules[0] key: path and"),
        ("[enrichment]\nrules = [{ pattern = 'x' }]\n", "rules[0] key: required key is missing"),
        ("not toml at all = = =\n", "not valid TOML"),
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
