"""The layout holds: the layer contracts catch a bad import, and no module or class outgrows
its size (issue #11). `lint-imports` itself runs in CI; here it runs on a copy of the package
with one import that breaks a layer, to show the contracts are not vacuous."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "daemon" / "objlibd"
LINT = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300
# The packages that are the layers, top to bottom, and what sits beneath them at the top level.
LAYERS = ["cli", "doctor", "autostart", "runtime", "status", "engine", "state", "remote"]
BASE = {"__init__", "__main__", "models", "errors", "config", "logs", "credentials"}

needs_lint = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(root: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(PACKAGE, root / "daemon" / "objlibd",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _add_import(module: Path, line: str) -> None:
    text = module.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    module.write_text(head + sep + line + "\n" + rest, encoding="utf-8")


@needs_lint
def test_the_tree_keeps_its_contracts() -> None:
    result = _lint(REPO, REPO / "daemon")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@needs_lint
@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # the engine reaching up into the daemon
        ("engine/sync.py", "from objlibd.runtime import worker", "Layers"),
        # the state DB reaching up into the engine
        ("state/store.py", "from objlibd.engine import scanner", "Layers"),
        # watchdog outside its home
        ("engine/scanner.py", "import watchdog", "watchdog lives in the watcher"),
        # the Gemini SDK outside its home
        ("remote/local.py", "from google import genai", "google.genai and tenacity"),
    ],
)
def test_a_bad_import_breaks_a_contract(
    tmp_path: Path, module: str, bad_import: str, contract: str
) -> None:
    root = _copy(tmp_path)
    _add_import(root / "daemon" / "objlibd" / module, f"{bad_import}  # noqa")
    result = _lint(root, root / "daemon")
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    assert f"objlibd.{module[:-3].replace('/', '.')}" in broken


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_400_lines_and_no_class_over_300() -> None:
    too_long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE)
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines (module limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(f"{name}: class {node.name} {size} lines")
    assert too_long == []


def test_every_module_sits_in_a_layer_or_the_base() -> None:
    """A new top-level module must choose a layer (or join the base on purpose)."""
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= BASE, f"top-level modules outside the base: {sorted(top - BASE)}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == {*LAYERS, "config"}  # config is a package of the base
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc, f"objlibd.{name} says what it owns in its docstring"
