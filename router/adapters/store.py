"""The adapter store: versioned LoRA adapters with an evaluation gate and an atomic ``current`` pointer.

Serving (:mod:`router.lora` reads ``current``) and training (``kb train`` admits candidates)
both use it, which is why it lives here and not in ``finetune/``.

Layout under the knowledge-base home::

    adapters/
      v0001/                 adapter_config.json, adapter_model.safetensors, train_manifest.json,
                             manifest.json {version, base_model, data_hash, metrics, created_at,
                                            status: published|rejected, report}
      v0002/ ...
      current                the published version's name (replaced with os.replace)
      history.json           {"stack": [...published versions, newest last], "events": [...]}

A candidate enters through :meth:`AdapterStore.admit`: it is published only when every key
metric is at least as good as the current adapter's; otherwise it is stored as
``rejected`` together with the comparison, so the decision can be read and overridden later
(``kb adapters publish VERSION``). :meth:`rollback` returns to the previously published
version. The serving side reads ``current`` only, so it never sees a half-copied adapter.

Publish, rollback and admit read and rewrite ``history.json``, the manifests and ``current``
under one lock (``adapters/.lock``, across processes and threads), so two administrators at
once cannot leave the pointer and the history disagreeing. A new version's files are synced
to disk before its folder is renamed into place (:func:`knowledge.core.files.claim_version`).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from knowledge.core.errors import KBError
from knowledge.core.files import (MANIFEST, atomic_write_json, claim_version, damaged_files, file_lock,
                                  folder_checksums, is_version_name, numbered_versions, read_pointer,
                                  write_pointer)
from knowledge.failpoints import hit

DEFAULT_KEY_METRICS = ("route_accuracy", "expansion_accuracy", "answer_accuracy")
HISTORY = "history.json"
# Files of a training output folder that belong in a published adapter (checkpoints do not).
_SKIP = {"checkpoints"}


def lower_is_better(metric: str) -> bool:
    """Loss-like metrics improve downwards.

    >>> lower_is_better("eval_loss"), lower_is_better("route_accuracy")
    (True, False)
    """
    return metric.endswith(("loss", "perplexity", "error", "error_rate", "latency_ms"))


def compare_metrics(candidate: dict[str, float], current: dict[str, float] | None,
                    key_metrics: Iterable[str]) -> dict[str, Any]:
    """Per-metric comparison and the overall decision.

    A candidate passes a metric when it is at least as good as the current adapter's
    (ties pass); a metric the candidate lacks fails; one the current adapter lacks passes.

    >>> compare_metrics({"acc": 0.9}, {"acc": 0.8}, ["acc"])["passed"]
    True
    >>> compare_metrics({"eval_loss": 1.2}, {"eval_loss": 1.0}, ["eval_loss"])["passed"]
    False
    """
    rows: dict[str, Any] = {}
    for name in key_metrics:
        cand = candidate.get(name)
        cur = (current or {}).get(name)
        if cand is None or (isinstance(cand, float) and math.isnan(cand)):
            ok, why = False, "missing in candidate"
        elif cur is None:
            ok, why = True, "no current value"
        else:
            ok = cand <= cur if lower_is_better(name) else cand >= cur
            why = "at least as good" if ok else "worse"
        rows[name] = {"candidate": cand, "current": cur, "passed": ok, "why": why}
    return {"metrics": rows, "passed": all(r["passed"] for r in rows.values())}


class AdapterStore:
    """Adapter versions under ``home/adapters`` (see the module docstring)."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.root = self.home / "adapters"

    # -- reading ---------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        p = self.root / version
        if not is_version_name(version) or not (p / MANIFEST).is_file():
            raise KBError(f"no adapter version {version!r} in {self.root}; known: {self.version_names()}")
        return p

    def manifest(self, version: str) -> dict[str, Any]:
        return json.loads((self.path(version) / MANIFEST).read_text(encoding="utf-8"))

    def version_names(self) -> list[str]:
        """Version folder names, oldest first."""
        return numbered_versions(self.root)

    def versions(self) -> list[dict[str, Any]]:
        """Every version's manifest, oldest first, with ``current: bool`` added."""
        cur = self.current()
        return [{**self.manifest(v), "current": v == cur} for v in self.version_names()]

    def current(self) -> str | None:
        """The published version's name, or ``None`` when nothing is published."""
        return read_pointer(self.root)

    def current_path(self) -> Path | None:
        """Folder of the published adapter (what the router loads), or ``None``."""
        name = self.current()
        return self.path(name) if name else None

    # -- writing ---------------------------------------------------------------------------
    def add(self, candidate_dir: str | Path, metrics: dict[str, float], status: str = "rejected",
            report: dict[str, Any] | None = None) -> str:
        """Copy a trained adapter into a new version folder (atomically) and return its name.

        Nothing is published here; ``status`` is recorded as given.
        """
        src = Path(candidate_dir)
        if not (src / "adapter_config.json").is_file():
            raise KBError(f"{src} is not a trained adapter folder (adapter_config.json missing)")
        self.root.mkdir(parents=True, exist_ok=True)
        train = _read_json(src / "train_manifest.json") or {}
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".incoming-"))
        try:
            for item in src.iterdir():
                if item.name in _SKIP or item.name.startswith("."):
                    continue
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
            hit("adapter.copied")  # the candidate is half in place: only the temp folder exists
            manifest = {
                "version": None,
                "base_model": train.get("base_model", ""),
                "base_gguf": train.get("base_gguf"),
                "data_hash": train.get("data_hash", ""),
                "metrics": dict(metrics),
                "created_at": _now(),
                "status": status,
                "report": report or {},
                "source": str(src),
                "files": folder_checksums(tmp),
            }
            return self._claim_version(tmp, manifest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _claim_version(self, tmp: Path, manifest: dict[str, Any]) -> str:
        def stamp(name: str) -> None:
            manifest["version"] = name
            _write_json(tmp / MANIFEST, manifest)

        return claim_version(self.root, tmp, before=stamp)

    def admit(self, candidate_dir: str | Path, metrics: dict[str, float],
              key_metrics: Iterable[str] = DEFAULT_KEY_METRICS, current_metrics: dict[str, float] | None = None
              ) -> bool:
        """The evaluation gate: store the candidate, publish it only if it is at least as good
        as the current adapter on every key metric. Returns whether it was published.

        ``current_metrics``: the current adapter re-scored on the candidate's eval data (pass
        them when the dataset changed: numbers from different eval splits do not compare);
        default: the metrics stored when the current adapter was admitted.
        """
        keys = list(key_metrics)
        with self.lock():  # the adapter compared with stays current until the decision is published
            current = self.current()
            cur_metrics = (current_metrics if current_metrics is not None else self.manifest(current)["metrics"]) \
                if current else None
            comparison = compare_metrics(metrics, cur_metrics, keys)
            report = {"gate": "every key metric >= current", "key_metrics": keys, "compared_with": current,
                      "current_rescored": current_metrics is not None and current is not None, **comparison}
            version = self.add(candidate_dir, metrics, status="rejected", report=report)
            if comparison["passed"]:
                self.publish(version)
        return comparison["passed"]

    def verify(self, version: str) -> None:
        """KBError when ``version``'s files do not match its manifest (missing, truncated, other
        content); versions stored before manifests recorded their files pass."""
        bad = damaged_files(self.path(version), self.manifest(version).get("files") or {})
        if bad:
            raise KBError(f"adapter version {version} is damaged: {', '.join(bad)}; not published")

    def lock(self) -> Any:
        """The lock every writer of ``current``, ``history.json`` and the manifests holds
        (re-entrant in one thread: :meth:`admit` publishes under it)."""
        return file_lock(self.root / ".lock")

    def publish(self, version: str) -> None:
        """Make ``version`` the current adapter (also a rejected one: an explicit override)."""
        with self.lock():
            self.verify(version)
            manifest = self.manifest(version)
            manifest["status"] = "published"
            manifest["published_at"] = _now()
            _write_json(self.path(version) / MANIFEST, manifest)
            history = self._history()
            history["stack"].append(version)
            history["events"].append({"action": "publish", "version": version, "at": _now()})
            hit("adapter.publish")  # manifest says published, the pointer does not yet
            self._switch(version, history)

    def rollback(self, to: str | None = None) -> str:
        """Return to the previously published version (or to ``to``); returns the new current.

        Rollbacks walk back the publish stack, so rolling back twice goes two versions back.
        """
        with self.lock():
            return self._rollback(to)

    def _rollback(self, to: str | None) -> str:
        history = self._history()
        stack = [v for v in history["stack"] if (self.root / v / MANIFEST).is_file()]
        current = self.current()
        if to is None:
            if len(stack) < 2:
                raise KBError(f"no earlier published adapter to roll back to (current: {current})")
            stack.pop()
            target = stack[-1]
        else:
            self.path(to)  # raises for an unknown version
            if to in stack:
                while stack[-1] != to:
                    stack.pop()
            else:
                stack.append(to)
            target = to
        self.verify(target)
        if current and current != target:
            old = self.manifest(current)
            old["rolled_back_at"] = _now()
            _write_json(self.path(current) / MANIFEST, old)
        manifest = self.manifest(target)
        manifest["status"] = "published"
        _write_json(self.path(target) / MANIFEST, manifest)
        history["stack"] = stack
        history["events"].append({"action": "rollback", "from": current, "version": target, "at": _now()})
        self._switch(target, history)
        return target

    def _history(self) -> dict[str, Any]:
        data = _read_json(self.root / HISTORY) or {}
        return {"stack": list(data.get("stack", [])), "events": list(data.get("events", []))}

    def _switch(self, version: str, history: dict[str, Any]) -> None:
        _write_json(self.root / HISTORY, history)
        write_pointer(self.root, version)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _write_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data)
