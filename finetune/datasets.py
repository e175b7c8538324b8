"""The dataset store: distilled router datasets as versioned artifacts under ``KB_HOME/datasets``.

Layout (like indexes and adapters)::

    datasets/
      v0001/        train.jsonl, eval.jsonl, manifest.json {version, files: {name: sha256}, ...}
      current       the published version's name
      .teacher_cache.jsonl

:func:`publish_dataset` writes a version into a temporary folder, claims the next ``vNNNN`` with
a rename and switches ``current`` atomically, so ``kb train`` never reads half a dataset.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from knowledge.core.errors import ConfigError
from knowledge.core.files import MANIFEST, atomic_write_json, claim_version, read_pointer, sha256_file, write_jsonl, write_pointer

DATASETS = "datasets"
FILES = ("train.jsonl", "eval.jsonl")


def datasets_dir(home: str | Path) -> Path:
    return Path(home) / DATASETS


def current_dataset(home: str | Path) -> Path:
    """The published distilled dataset (``home/datasets/current`` names its version folder)."""
    root = datasets_dir(home)
    version = read_pointer(root)
    if version is None:
        raise ConfigError(f"no distilled dataset under {root}: run `kb distill` "
                          "first or pass --dataset FILE.jsonl")
    folder = root / version
    if not folder.is_dir():
        raise ConfigError(f"{root / 'current'} names {folder.name!r}, which does not exist")
    return folder


def publish_dataset(root: Path, train: list[dict[str, Any]], evals: list[dict[str, Any]],
                    manifest: dict[str, Any]) -> tuple[str, Path]:
    """Write a new version (``train.jsonl``, ``eval.jsonl``, ``manifest.json`` with the files'
    hashes) and make it current; returns its name and folder."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".incoming-"))
    write_jsonl(tmp / FILES[0], train)
    write_jsonl(tmp / FILES[1], evals)
    manifest["files"] = {name: sha256_file(tmp / name) for name in FILES}

    def stamp(version: str) -> None:
        manifest["version"] = version
        atomic_write_json(tmp / MANIFEST, manifest)

    version = claim_version(root, tmp, before=stamp)
    write_pointer(root, version)
    return version, root / version
