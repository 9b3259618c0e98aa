"""`objlibd demo`: a small sample library and a config on local disk, for newcomers.

The library's mount point is whatever mount the demo folder sits on (`/` at worst), so the
same availability rules apply as for the real drive, with no drive needed.
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLES = {
    "Lectures/Introduction to Philosophy/01 - What is philosophy.txt": (
        "Lecture 1. Philosophy studies the fundamental nature of existence, of man, "
        "and of man's relationship to existence."
    ),
    "Lectures/Introduction to Philosophy/02 - Metaphysics.txt": (
        "Lecture 2. Metaphysics: existence exists; the law of identity; consciousness."
    ),
    "Lectures/Introduction to Philosophy/03 - Epistemology.md": (
        "# Lecture 3\n\nEpistemology: concepts, definitions, and the senses."
    ),
    "Transcripts/Q and A 1962.txt": "Q: What is the role of reason? A: Reason is man's means.",
    "Transcripts/Q and A 1963.txt": "Q: What is an axiom? A: A statement of a primary fact.",
    "Essays/On Objectivity.md": "# On objectivity\n\nObjectivity is a method, not a mood.",
    "Essays/Notes on Ethics.md": "# Notes on ethics\n\nValues are that which one acts to gain.",
    "Notes/reading list.csv": "title,author\nIntroduction,Unknown\nLogic,Unknown\n",
}


# The demo's closing search: it finds "Transcripts/Q and A 1962.txt".
SAMPLE_QUESTION = "What is the role of reason?"


def create(folder: Path) -> Path:
    """Write the sample library, state/log dirs and config under `folder`; return the config."""
    library = folder / "library"
    for rel, text in SAMPLES.items():
        target = library / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_text(text + "\n", encoding="utf-8")
    config_path = folder / "objlibd.toml"
    config_path.write_text(render_config(folder, library), encoding="utf-8")
    return config_path


def mount_point_of(path: Path) -> Path:
    """Return the mount point that holds `path`."""
    current = path.resolve()
    while not os.path.ismount(current):
        current = current.parent
    return current


def render_config(folder: Path, library: Path) -> str:
    """Return the demo config's TOML text."""
    return f"""# objlibd demo config: a sample library on local disk, the embedded local store.
[library]
mount_point = {_toml(mount_point_of(library))}
root = {_toml(library)}

[store]
backend = "local"
name = "objlibd-demo"

[state]
dir = {_toml(folder / "state")}

[sync]
quiet_seconds = 1.0

[logs]
dir = {_toml(folder / "logs")}
"""


def next_steps(config_path: Path) -> str:
    """Return what to try next."""
    cfg = _shell(config_path)
    return f"""
Try next:
  edit or add a file under {_shell(config_path.parent / "library")}, then
  objlibd sync --config {cfg}          # one-shot sync: only the change is uploaded
  objlibd run --config {cfg}           # the daemon: watches and syncs by itself (Ctrl-C stops)
  objlibd status --config {cfg}        # what it knows
  objlibd search "axiom" --config {cfg}  # ask the library (try --where 'collection = "Essays"')
"""


def _toml(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shell(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
