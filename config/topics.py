"""Topics that distillation labels "refuse" (``config/topics.yaml``): data, not code.

``KB_TOPICS`` may name another YAML file with the same keys (its top-level keys replace the
packaged ones), so a company whose documents do cover canteens can say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TOPICS = Path(__file__).with_name("topics.yaml")


@dataclass(frozen=True)
class Topics:
    off_topic: tuple[str, ...]
    unanswered: tuple[str, ...]
    absent_zh: tuple[str, ...]
    absent_en: tuple[str, ...]


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a topics file is a mapping of lists, got {type(data).__name__}")
    return data


@lru_cache(maxsize=1)
def topics() -> Topics:
    """The process-wide topic lists (packaged YAML, overridden section by section by ``KB_TOPICS``).

    >>> "红烧肉怎么做？" in topics().off_topic, "班车" in topics().absent_zh
    (True, True)
    """
    data = _read(DEFAULT_TOPICS)
    extra = os.environ.get("KB_TOPICS")
    if extra:
        data.update(_read(Path(extra)))
    absent = data.get("absent_topics") or {}
    return Topics(off_topic=tuple(data.get("off_topic") or ()), unanswered=tuple(data.get("unanswered") or ()),
                  absent_zh=tuple(absent.get("zh") or ()), absent_en=tuple(absent.get("en") or ()))
