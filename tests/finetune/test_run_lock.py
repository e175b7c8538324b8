"""Two retrains at once (issue 21, jobs run once): trainings of the same data and config share
the ``train_runs/<hash>`` folder, so the second waits for the first instead of writing its
checkpoints and adapter beside it; the retrain job holds the home's retrain lock throughout."""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROW = {"messages": [{"role": "user", "content": "AM是什么意思？"},
                    {"role": "assistant", "content": "{\"route\":\"glossary\",\"terms\":[\"AM\"]}"}]}


@dataclass
class _Result:
    steps: int = 1
    tokens_per_s: float = 1.0
    stopped_early: bool = False
    history: list = field(default_factory=list)

    def metrics(self) -> dict:
        return {"eval_loss": 1.0}


def test_two_trainings_never_write_one_run_folder_at_once(tmp_path, monkeypatch):
    from config.settings import reset_settings
    from finetune import cli

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for name in ("train.jsonl", "eval.jsonl"):
        (dataset / name).write_text(json.dumps(ROW, ensure_ascii=False) + "\n", encoding="utf-8")
    inside: list[Path] = []
    spans: list[tuple[Path, float, float]] = []
    lock = threading.Lock()

    def fake_train(config, data, out, resume=True):  # the real loop takes minutes: only the folder matters
        start = time.monotonic()
        with lock:
            inside.append(out)
        time.sleep(0.4)
        with lock:
            inside.remove(out)
        spans.append((out, start, time.monotonic()))
        return _Result()

    monkeypatch.setattr(cli, "train", fake_train)
    monkeypatch.setattr(cli, "evaluate_hook", lambda adapter_dir, settings: {})
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    reset_settings()
    parser = argparse.ArgumentParser(prog="kb")
    cli.register(parser.add_subparsers(dest="cmd", required=True))
    args = ["train", "--dataset", str(dataset), "--no-gate"]
    codes: list[int] = []
    try:
        threads = [threading.Thread(target=lambda: codes.append(cli.cmd_train(parser.parse_args(args))))
                   for _ in range(2)]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
    finally:
        reset_settings()
    assert codes == [0, 0] and len(spans) == 2
    (out_a, start_a, end_a), (out_b, start_b, end_b) = sorted(spans, key=lambda s: s[1])
    assert out_a == out_b and out_a.parent == tmp_path / "home" / "train_runs"  # the same run folder ...
    assert start_b >= end_a  # ... written by one training at a time


def test_the_retrain_job_holds_the_retrain_lock(tmp_path, monkeypatch):
    from api import jobs
    from knowledge.core.files import file_lock

    seen: list[str] = []

    def fake_run(ctx, cmd, env):
        # another retrain (another worker, or `kb train` by hand) cannot take the lock now
        got = threading.Event()

        def other() -> None:
            with file_lock(tmp_path / "train_runs" / ".retrain.lock"):
                got.set()

        t = threading.Thread(target=other, daemon=True)
        t.start()
        seen.append(f"{cmd[-1]}:{'free' if got.wait(0.3) else 'held'}")

    class Ctx:
        def check_cancelled(self) -> None: ...

        def progress(self, *a) -> None: ...

        def log(self, *a) -> None: ...

    monkeypatch.setattr(jobs, "_run_logged", fake_run)
    settings = type("S", (), {"home": tmp_path})()
    jobs.run_retrain(Ctx(), settings)
    assert seen == ["distill:held", "train:held"]
