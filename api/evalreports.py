"""Where the latest ``kb eval`` report is: ``kb eval`` records its folder in
``KB_HOME/eval_latest.json`` so the admin console can show it wherever ``--report`` put it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from knowledge.core.files import atomic_write_json

POINTER = "eval_latest.json"


def record(home: Path | str, report_dir: Path | str) -> None:
    """Remember ``report_dir`` (absolute) as the latest report of the knowledge base at ``home``."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    body = {"report_dir": str(Path(report_dir).resolve()),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(home / POINTER, body, indent=None)


def latest(home: Path | str) -> dict[str, Any] | None:
    """``{"report_dir", "written_at", "config", "metrics", "html"}`` of the latest report, or None.

    Falls back to ``KB_HOME/eval_report`` (a report written there by hand or by an older ``kb``).
    """
    home = Path(home)
    try:
        pointer = json.loads((home / POINTER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pointer = {"report_dir": str(home / "eval_report"), "written_at": ""}
    folder = Path(pointer.get("report_dir", ""))
    try:
        data = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    html = folder / "report.html"
    return {"report_dir": str(folder), "written_at": pointer.get("written_at", ""),
            "config": data.get("config", {}), "metrics": data.get("metrics", {}),
            "html": str(html) if html.is_file() else None}
