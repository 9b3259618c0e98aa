"""Fixtures for the engine's tests: a library on local disk, config, state, store, engine."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fake_clock import FakeClock
from objlibd import config as config_module
from objlibd.cli.demo import mount_point_of
from objlibd.config import Config
from objlibd.engine.sync import SyncEngine
from objlibd.remote.local import LocalStore
from objlibd.state.store import StateStore


def make_config(library_root: Path, state_dir: Path, mount_point: Path | None = None,
                **sync: object) -> Config:  # fmt: skip
    """Return a validated config for a library at `library_root` (local backend)."""
    raw: dict[str, object] = {
        "library": {
            "mount_point": str(mount_point or mount_point_of(library_root)),
            "root": str(library_root),
        },
        "store": {"backend": "local", "name": "test-library"},
        "state": {"dir": str(state_dir)},
        "logs": {"dir": str(state_dir.parent / "logs")},
    }
    if sync:
        raw["sync"] = dict(sync)
    return config_module.from_mapping(raw, source=state_dir.parent / "objlibd.toml")


def write_config_file(cfg: Config, path: Path) -> Path:
    """Write `cfg`'s essentials as TOML (for subprocess runs)."""
    path.write_text(
        f'[library]\nmount_point = "{cfg.library.mount_point}"\nroot = "{cfg.library.root}"\n'
        f"max_file_mb = {cfg.library.max_file_mb}\n"
        f'[store]\nbackend = "{cfg.store.backend}"\nname = "{cfg.store.name}"\n'
        f'[state]\ndir = "{cfg.state.dir}"\n[logs]\ndir = "{cfg.logs.dir}"\n',
        encoding="utf-8",
    )
    return path


def make_library(root: Path, count: int, *, seed: int = 7) -> list[str]:
    """Create `count` small text files in a few folders; return their relative paths."""
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        rel = f"Course {index % 5}/Lecture {index:04d}.txt"
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"lecture {index}\n" + "x" * rng.randint(0, 200), encoding="utf-8")
        paths.append(rel)
    return paths


def touch_later(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward so the change is visible even on coarse clocks."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


class Env:
    """A library, its config, state DB, local store and engine."""

    def __init__(self, tmp_path: Path, clock: FakeClock) -> None:
        self.root = tmp_path / "library"
        self.root.mkdir()
        self.clock = clock
        self.config = make_config(self.root, tmp_path / "state")
        self.state = StateStore.open(self.config.db_path)
        self.store = LocalStore(self.config.state.dir / "local-store")
        self.engine = SyncEngine(self.config, self.state, self.store, clock=clock)

    def reconfigure(self, **sync: object) -> None:
        """Replace [sync] settings and rebuild the engine."""
        self.config = replace(self.config, sync=replace(self.config.sync, **sync))  # type: ignore[arg-type]
        self.engine = SyncEngine(self.config, self.state, self.store, clock=self.clock)

    def docs_by_path(self) -> dict[str, list[str]]:
        """Return the store's documents grouped by identity path."""
        grouped: dict[str, list[str]] = {}
        self.store.ensure_store(self.config.store.name)
        for doc in self.store.list_docs():
            grouped.setdefault(doc.path or "?", []).append(doc.doc_id)
        return grouped


@pytest.fixture
def clock() -> FakeClock:
    """A fixed clock."""
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def env(tmp_path: Path, clock: FakeClock) -> Iterator[Env]:
    """A fresh library + engine on local disk."""
    environment = Env(tmp_path, clock)
    yield environment
    environment.state.close()


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Leave structlog and stdlib logging as each test found them."""
    yield
    from objlibd import logs

    logs.reset()


@pytest.fixture(autouse=True)
def private_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the daemon's status pointer (and anything else cached) out of the real home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
