"""Topics that distillation labels "refuse" (``config/topics.yaml``): data, not code.

``KB_TOPICS`` may name another YAML file with the same keys (its top-level keys replace the
packaged ones), so a company whose documents do cover canteens can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from config.layered import layered

DEFAULT_TOPICS = Path(__file__).with_name("topics.yaml")


@dataclass(frozen=True)
class Topics:
    off_topic: tuple[str, ...]
    unanswered: tuple[str, ...]
    absent_zh: tuple[str, ...]
    absent_en: tuple[str, ...]
    # Workplace topics the refusal calibration asks about (router/calibration.py); kept apart
    # from the distillation topics above so calibration is not measured on training material.
    probe_zh: tuple[str, ...] = ()
    probe_en: tuple[str, ...] = ()



@lru_cache(maxsize=1)
def topics() -> Topics:
    """The process-wide topic lists (packaged YAML, overridden section by section by ``KB_TOPICS``).

    >>> "红烧肉怎么做？" in topics().off_topic, "班车" in topics().absent_zh
    (True, True)
    """
    data = layered(DEFAULT_TOPICS, "KB_TOPICS", "a topics file")
    absent = data.get("absent_topics") or {}
    probes = data.get("calibration_probes") or {}
    return Topics(off_topic=tuple(data.get("off_topic") or ()), unanswered=tuple(data.get("unanswered") or ()),
                  absent_zh=tuple(absent.get("zh") or ()), absent_en=tuple(absent.get("en") or ()),
                  probe_zh=tuple(probes.get("zh") or ()), probe_en=tuple(probes.get("en") or ()))
