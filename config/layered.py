"""Packaged YAML data files that a company may override section by section (lexicon, topics)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file (``what`` names it in the error)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: {what} is a mapping of sections, got {type(data).__name__}")
    return data


def layered(default: Path, env_var: str, what: str) -> dict[str, Any]:
    """``default``'s sections, each replaced by the same section of the file ``$env_var`` names.

    >>> from pathlib import Path
    >>> "absent_topics" in layered(Path(__file__).with_name("topics.yaml"), "KB_NO_SUCH_VARIABLE", "topics")
    True
    """
    data = read_mapping(default, what)
    extra = os.environ.get(env_var)
    if extra:
        data.update(read_mapping(Path(extra), what))
    return data
