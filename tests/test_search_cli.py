"""`objlibd search` and `doctor --deep` on the local backend, as people run them.

A real library synced by the real engine into the local store; the CLI reads the state DB
read-only and never writes. Cited files are placed on the drive: present, changed, missing,
or — with the drive (a real tmpfs mount) away — unavailable, never "missing".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_fixtures import Drive
from engine_fixtures import Env, make_config, touch_later, write_config_file
from fake_clock import FakeClock
from objlibd.cli import main
from objlibd.config import Config
from objlibd.doctor import report as doctor
from objlibd.doctor.checks import Level
from objlibd.doctor.report import Probes
from objlibd.doctor.search import NAME as DEEP_CHECK
from objlibd.doctor.search import distinctive_phrase
from objlibd.engine import citations
from objlibd.engine.citations import FileState, file_state
from objlibd.engine.sync import SyncEngine, SyncOptions
from objlibd.models import FileRecord, FileStatus
from objlibd.remote.search import SearchQuery
from objlibd.state.store import StateStore

TEXTS = {
    "Lectures/01 Reason.txt": "Reason is the faculty that identifies the material of the senses.",
    "Lectures/02 Identity.md": "# Identity\n\nThe law of identity: a thing is what it is.",
    "Essays/Objectivity.txt": "Objectivity is a method of cognition, not a mood or a wish.",
    "Essays/Values.txt": "Values are that which one acts to gain and keep.",
}


@pytest.fixture
def synced(env: Env) -> Iterator[tuple[Env, Path]]:
    """The env's library with TEXTS, synced; yields it with its config file."""
    for rel, text in TEXTS.items():
        (env.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (env.root / rel).write_text(text, encoding="utf-8")
    assert env.engine.run(SyncOptions()).exit_code == 0
    yield env, write_config_file(env.config, env.root.parent / "objlibd.toml")


def search_json(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["search", *args, "--json", "--config", str(config)])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def tree(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    )


def test_search_cites_the_file_and_its_json_has_the_documented_shape(
    synced: tuple[Env, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _env, config = synced

    code, result = search_json(config, "what does the law of identity say?", capsys=capsys)

    assert code == 0
    assert set(result) == {
        "question", "where", "backend", "model", "answer", "grounded", "citations",
        "not_indexed", "notes",
    }  # fmt: skip
    assert (result["backend"], result["answer"], result["grounded"]) == ("local", None, True)
    first = result["citations"][0]
    assert set(first) == {"path", "title", "state", "passages", "metadata"}
    assert (first["path"], first["state"]) == ("Lectures/02 Identity.md", "present")
    assert "law of identity" in first["passages"][0]["text"]
    assert set(first["passages"][0]) == {"text", "page", "score"}
    assert first["metadata"]["collection"] == "Lectures"


def test_where_narrows_and_the_text_output_names_paths_and_states(
    synced: tuple[Env, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _env, config = synced

    _code, wide = search_json(config, "reason OR objectivity", capsys=capsys)
    _code, narrow = search_json(
        config, "reason OR objectivity", "--where", 'collection = "Essays"', capsys=capsys
    )
    code = main(["search", "values", "--config", str(config)])
    text = capsys.readouterr().out

    assert {c["path"] for c in wide["citations"]} == {
        "Lectures/01 Reason.txt",
        "Essays/Objectivity.txt",
    }
    assert [c["path"] for c in narrow["citations"]] == ["Essays/Objectivity.txt"]
    assert code == 0
    assert "Sources (1 file, 1 passage):" in text
    assert "1. Essays/Values.txt  [present]" in text
    assert '"Values are that which one acts to gain and keep."' in text


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["nothing-matches-this-word"], 1, "Nothing in the library matched."),
        (["reason", "--where", "collection = Lectures extra"], 2, "--where"),
        (["reason", "--top-k", "0"], 2, "--top-k 0"),
        (["?!"], 2, "nothing to search for"),
    ],
)
def test_exit_codes_nothing_found_and_bad_input(
    synced: tuple[Env, Path],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    says: str,
) -> None:
    _env, config = synced

    assert main(["search", *args, "--config", str(config)]) == code
    captured = capsys.readouterr()
    assert says in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_changed_and_missing_files_are_said_so(synced: tuple[Env, Path]) -> None:
    env, _config = synced
    touch_later(env.root / "Essays/Values.txt", "Values, rewritten since the upload.")
    (env.root / "Essays/Objectivity.txt").unlink()

    answer = citations.ask(env.config, SearchQuery("values OR objectivity OR reason"))

    states = {item.path: item.state for item in answer.located}
    assert states == {
        "Essays/Values.txt": FileState.CHANGED,
        "Essays/Objectivity.txt": FileState.MISSING,
        "Lectures/01 Reason.txt": FileState.PRESENT,
    }


def test_search_needs_no_daemon_and_writes_nothing(
    synced: tuple[Env, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env, config = synced
    env.state.close()
    env.store.close()
    before = tree(env.config.state.dir)

    assert main(["search", "identity", "--config", str(config)]) == 0
    capsys.readouterr()
    after = tree(env.config.state.dir)
    # SQLite's read-only connection to a WAL database recreates its empty -wal/-shm files
    assert [f for f in after if not f[0].endswith(("-wal", "-shm"))] == before
    env.state = StateStore.open(env.config.db_path)  # the fixture closes it


def test_a_store_never_synced_is_explained_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    config = write_config_file(make_config(root, tmp_path / "state"), tmp_path / "objlibd.toml")

    code = main(["search", "anything", "--config", str(config)])

    err = capsys.readouterr().err
    assert code == 1
    assert 'the local store "test-library" does not exist yet' in err
    assert "hint: run `objlibd sync`" in err
    assert not (tmp_path / "state").exists()


def test_a_store_other_than_the_synced_one_is_a_mismatch(
    synced: tuple[Env, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env, config = synced
    config.write_text(config.read_text().replace('"test-library"', '"other"'), encoding="utf-8")

    assert main(["search", "reason", "--config", str(config)]) == 2
    assert 'synced into local store "test-library"' in capsys.readouterr().err
    assert env.config.store.name == "test-library"


def test_the_demo_ends_with_a_search_that_finds_a_passage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out

    assert 'A sample search: objlibd search "What is the role of reason?"' in out
    assert "1. Transcripts/Q and A 1962.txt  [present]" in out
    assert "objlibd search" in out.split("Try next:")[1]


# -- the drive away: unavailable, never missing (a real tmpfs mount) -------------------------


def test_with_the_drive_away_citations_are_unavailable_never_missing(
    tmp_path: Path, drive: Drive, clock: FakeClock
) -> None:
    drive.root.mkdir(exist_ok=True)
    (drive.root / "notes.txt").write_text("Integration of concepts.", encoding="utf-8")
    cfg = make_config(drive.root, tmp_path / "state", mount_point=drive.mount_point)
    state = StateStore.open(cfg.db_path)
    from objlibd.remote.local import LocalStore

    store = LocalStore(cfg.state.dir / "local-store")
    assert SyncEngine(cfg, state, store, clock=clock).run(SyncOptions()).exit_code == 0
    store.close()
    state.close()
    drive.unmount()

    answer = citations.ask(cfg, SearchQuery("integration"))

    assert [(item.path, item.state) for item in answer.located] == [
        ("notes.txt", FileState.UNAVAILABLE)
    ]
    assert any("not known" in note for note in answer.notes)


# -- the pure decision -----------------------------------------------------------------------


def record(content_hash: str, size: int, mtime_ns: int) -> FileRecord:
    return FileRecord(
        path="a.txt", status=FileStatus.UPLOADED, content_hash=content_hash, size=size,
        mtime_ns=mtime_ns,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cited", "db", "disk", "digest", "state"),
    [
        ("h1", record("h1", 3, 7), None, "h1", FileState.MISSING),
        ("h1", record("h1", 3, 7), (3, 7), "never asked", FileState.PRESENT),
        ("h1", record("h1", 3, 7), (3, 8), "h1", FileState.PRESENT),  # touched, same bytes
        ("h1", record("h1", 3, 7), (4, 9), "h2", FileState.CHANGED),
        ("h1", record("h2", 3, 7), (3, 7), "h2", FileState.CHANGED),  # an older document
        ("h1", None, (3, 7), "h1", FileState.PRESENT),
        (None, None, (3, 7), "h2", FileState.PRESENT),
    ],
)
def test_file_state_decides_from_signature_then_content(
    cited: str | None,
    db: FileRecord | None,
    disk: tuple[int, int] | None,
    digest: str,
    state: FileState,
) -> None:
    def hashed() -> str:
        assert digest != "never asked", "a matching signature must not be hashed"
        return digest

    assert file_state(cited, db, disk, hashed) == state


# -- doctor --deep ---------------------------------------------------------------------------


def deep(config: Path) -> doctor.Check:
    probes = Probes(manager=lambda _c: None, keystore=lambda: None, environ={})  # type: ignore[arg-type,return-value]
    report = doctor.run(config, probes, deep=True)
    return next(check for check in report.checks if check.name == DEEP_CHECK)


def delete_behind_objlibds_back(cfg: Config, path: str) -> None:
    folder = next((cfg.state.dir / "local-store").glob("test-library-*"))
    for document in (folder / "docs").glob("*.json"):
        if json.loads(document.read_text())["customMetadata"]["path"] == path:
            name = document.name.removesuffix(".json")
            document.unlink()
            (folder / "blobs" / f"{name}.bin").unlink()


def test_doctor_deep_is_ok_then_fails_for_a_deleted_document_and_its_fix_works(
    synced: tuple[Env, Path],
) -> None:
    env, config = synced

    healthy = deep(config)
    delete_behind_objlibds_back(env.config, "Essays/Objectivity.txt")
    broken = deep(config)
    env.engine.run(SyncOptions(cleanup_orphans=True))  # what the fix says to run
    env.engine.run(SyncOptions())
    repaired = deep(config)

    assert (healthy.level, repaired.level) == (Level.OK, Level.OK)
    assert "found Essays/Objectivity.txt (local)" in healthy.detail
    assert broken.level is Level.FAIL
    assert "no citation maps back to it" in broken.detail
    assert "--cleanup-orphans" in broken.fix


def test_doctor_deep_without_a_usable_file_warns_and_plain_doctor_skips_it(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    (env.root / "tiny.txt").write_text("two words", encoding="utf-8")
    env.engine.run(SyncOptions())
    config = write_config_file(env.config, env.root.parent / "objlibd.toml")

    check = deep(config)
    plain = doctor.run(config, Probes(manager=lambda _c: None, keystore=lambda: None))  # type: ignore[arg-type,return-value]

    assert check.level is Level.WARN and "no synced text file" in check.detail
    assert DEEP_CHECK not in [c.name for c in plain.checks]


def test_a_distinctive_phrase_is_words_of_the_file_in_order() -> None:
    text = "a b c the incomparable epistemological considerations of it and so on"

    phrase = distinctive_phrase(text, words=3)

    assert phrase == "incomparable epistemological considerations"
    assert distinctive_phrase("too short", words=3) is None


def test_the_cli_has_doctor_deep(
    synced: tuple[Env, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _env, config = synced

    main(["doctor", "--deep", "--json", "--config", str(config)])
    checks = json.loads(capsys.readouterr().out)["checks"]

    assert {c["name"]: c["level"] for c in checks}[DEEP_CHECK] == "OK"
