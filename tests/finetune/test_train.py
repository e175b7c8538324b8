"""Training, adapters and export, on a tiny random Qwen2 with the real Qwen tokenizer.

One integration test at the end trains a real adapter on the packaged 0.5B model for a few
CPU steps and exports it for llama.cpp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.data import (
    IGNORE_INDEX,
    Example,
    collate,
    load_dataset,
    pack_examples,
    record_to_messages,
    tokenize_conversation,
)
from knowledge.errors import ConfigError, KBError, ValidationError

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


# --- fixtures and helpers ---------------------------------------------------------------------
TERMS = {
    "AM": ("Account Manager", "客户经理"),
    "PM": ("Project Manager", "项目经理"),
    "HR": ("Human Resources", "人力资源"),
    "KPI": ("Key Performance Indicator", "关键绩效指标"),
    "SLA": ("Service Level Agreement", "服务等级协议"),
    "ROI": ("Return on Investment", "投资回报率"),
}


def glossary_records(n: int) -> list[dict]:
    """``n`` Alpaca records teaching abbreviation expansions (cycled over TERMS)."""
    items = list(TERMS.items())
    out = []
    for i in range(n):
        term, (english, chinese) = items[i % len(items)]
        out.append({"instruction": f"Expand the abbreviation {term}.", "input": f"例句 {i}: {term}负责此事。",
                    "output": f"{english}（{chinese}）"})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    from finetune.base_model import packaged_tokenizer_dir

    return packaged_tokenizer_dir()


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer) -> Path:
    """A HF folder holding a random 2-layer Qwen2 and the real tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(qwen_tokenizer), tie_word_embeddings=True,
                         eos_token_id=qwen_tokenizer.eos_token_id, pad_token_id=qwen_tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny_qwen2")
    model.save_pretrained(str(out))
    qwen_tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def glossary_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder with train.jsonl (48 records) and eval.jsonl (6 records)."""
    root = tmp_path_factory.mktemp("dataset")
    write_jsonl(root / "train.jsonl", glossary_records(48))
    write_jsonl(root / "eval.jsonl", glossary_records(6))
    return root


def tiny_config(base: Path, **kw):
    from config.settings import Settings
    from finetune.train import TrainConfig

    defaults = dict(base_model=str(base), batch_size=4, max_seq_len=128, eval_every=5, checkpoint_every=0,
                    learning_rate=5e-3, target_modules=ALL_LINEAR, lora_dropout=0.0, progress=False,
                    bf16=False)  # same numerics on every CPU; bf16 has its own test
    return TrainConfig.load(overrides={**defaults, **kw}, settings=Settings())


# --- data --------------------------------------------------------------------------------------
def test_record_shapes_become_the_same_messages():
    want = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert record_to_messages({"instruction": "hi", "output": "yo"}) == want
    assert record_to_messages({"conversations": [{"from": "human", "value": "hi"},
                                                 {"from": "gpt", "value": "yo"}]}) == want
    assert record_to_messages({"messages": want, "meta": {"route": "glossary"}}) == want  # kb distill's form
    with pytest.raises(ValidationError, match="unknown record shape"):
        record_to_messages({"question": "hi"})
    with pytest.raises(ValidationError, match="no assistant"):
        record_to_messages({"messages": [{"role": "user", "content": "hi"}]})


def test_labels_cover_exactly_the_answer_and_eos(qwen_tokenizer):
    tok = qwen_tokenizer
    msgs = record_to_messages({"instruction": "Expand AM.", "input": "AM负责。",
                               "output": "Account Manager（客户经理）"})
    ex = tokenize_conversation(tok, msgs, max_len=512)
    # The ids are exactly the chat template's, and the inference prompt is a prefix of them.
    assert ex.input_ids == tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    prompt = tok(tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"]
    assert ex.input_ids[: len(prompt)] == prompt
    learned = [i for i, lab in enumerate(ex.labels) if lab != IGNORE_INDEX]
    assert learned == list(range(len(prompt), len(ex.input_ids) - 1))  # answer + <|im_end|>, not the "\n"
    assert tok.decode([ex.input_ids[i] for i in learned]) == "Account Manager（客户经理）<|im_end|>"
    assert all(ex.labels[i] == ex.input_ids[i] for i in learned)


def test_multi_turn_labels_every_assistant_turn_only(qwen_tokenizer):
    tok = qwen_tokenizer
    msgs = record_to_messages({"conversations": [
        {"from": "system", "value": "You expand abbreviations."},
        {"from": "human", "value": "AM?"}, {"from": "gpt", "value": "Account Manager"},
        {"from": "human", "value": "PM?"}, {"from": "gpt", "value": "Project Manager"}]})
    ex = tokenize_conversation(tok, msgs, max_len=512)
    text = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE_INDEX])
    assert text == "Account Manager<|im_end|>Project Manager<|im_end|>"


def test_truncation_drops_rows_without_answer(qwen_tokenizer):
    msgs = record_to_messages({"instruction": "x " * 200, "output": "answer"})
    assert tokenize_conversation(qwen_tokenizer, msgs, max_len=32) is None
    short = tokenize_conversation(qwen_tokenizer, record_to_messages({"instruction": "hi", "output": "a b c"}), 512)
    cut = tokenize_conversation(qwen_tokenizer, record_to_messages({"instruction": "hi", "output": "a b c"}),
                                len(short) - 2)
    assert len(cut) == len(short) - 2 and cut.labels == short.labels[: len(short) - 2]


def test_dataset_split_and_hash(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", glossary_records(20))
    split = load_dataset(tmp_path, eval_ratio=0.1, seed=0)
    assert (len(split.train), len(split.eval)) == (18, 2)
    assert load_dataset(tmp_path, eval_ratio=0.1, seed=0).data_hash == split.data_hash
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"bad.jsonl:2"):
        load_dataset(tmp_path)


def test_packing_keeps_examples_apart(qwen_tokenizer, tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    examples = [tokenize_conversation(qwen_tokenizer, record_to_messages(r), 512) for r in glossary_records(5)]
    rows = pack_examples(examples, max_len=160)
    assert sum(r.n_examples for r in rows) == 5 and all(len(r) <= 160 for r in rows)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32).eval()
    batch = collate(rows, pad_id=qwen_tokenizer.pad_token_id)
    assert "attention_mask" not in batch
    with torch.no_grad():
        # use_cache=False as in training: transformers derives the packed mask only without a cache.
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        seen = 0
        for r, row in enumerate(rows):
            start = 0
            for n in _segment_lengths(row.position_ids):
                ids = row.input_ids[start : start + n]
                match = next(ex for ex in examples if ex.input_ids == ids)
                # Labels of each segment are the example's own (its first is never a target).
                assert row.labels[start + 1 : start + n] == match.labels[1:]
                alone = model(input_ids=torch.tensor([ids])).logits[0]
                assert torch.allclose(packed[r, start : start + n], alone, atol=1e-4)
                start, seen = start + n, seen + 1
    assert seen == 5


def _segment_lengths(positions: list[int]) -> list[int]:
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [b - a for a, b in zip(starts, starts[1:])]


def test_collate_pads_unpacked_rows_with_a_mask():
    batch = collate([Example([5, 6, 7], [IGNORE_INDEX, 6, 7]), Example([8], [IGNORE_INDEX])], pad_id=0,
                    multiple_of=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100], [-100, -100, -100, -100]]


# --- config ------------------------------------------------------------------------------------
def test_config_layers_settings_file_and_overrides(tmp_path):
    from config.settings import Settings
    from finetune.train import TrainConfig

    path = tmp_path / "train.yaml"
    path.write_text("finetune:\n  lora_r: 4\n  packing: true\n", encoding="utf-8")
    cfg = TrainConfig.load(path, {"lora_r": 32}, settings=Settings())
    assert (cfg.lora_r, cfg.packing, cfg.lora_alpha) == (32, True, Settings().finetune.lora_alpha)
    with pytest.raises(ConfigError, match="lora_rr"):
        TrainConfig.load(overrides={"lora_rr": 1}, settings=Settings())


# --- training -------------------------------------------------------------------------------------
def test_loss_decreases_and_adapter_is_saved(tiny_base, glossary_dataset, tmp_path):
    from finetune.train import MANIFEST_NAME, train

    cfg = tiny_config(tiny_base, max_steps=20, early_stopping_patience=0)
    result = train(cfg, glossary_dataset, tmp_path / "run")
    evals = [h["eval_loss"] for h in result.history]
    assert result.steps == 20 and len(evals) == 4
    assert evals[-1] < evals[0] - 0.05, evals
    assert (tmp_path / "run" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    manifest = json.loads((tmp_path / "run" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["data_hash"] == result.data_hash and manifest["metrics"]["eval_loss"] == result.eval_loss
    assert manifest["timings"]["tokens_per_s"] > 0 and manifest["config"]["max_steps"] == 20


def test_packed_bf16_training_runs(tiny_base, glossary_dataset, tmp_path):
    from finetune.train import train

    result = train(tiny_config(tiny_base, max_steps=3, packing=True, max_seq_len=256, eval_every=0, bf16=True),
                   glossary_dataset, tmp_path / "run")
    assert result.steps == 3 and result.eval_loss is not None and result.train_loss > 0 and result.bf16


def test_saved_adapter_reloads_to_equal_logits(tiny_base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.train import load_lora_model

    model = load_lora_model(tiny_base, tiny_config(tiny_base), "cpu", bf16=False).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # fresh B is zero: make the adapter matter
    model.save_pretrained(str(tmp_path / "adapter"))
    ids = torch.tensor([[151644, 872, 198, 9707, 151645]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
        plain = base(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
        after = loaded(input_ids=ids).logits
    assert torch.equal(before, after)
    assert not torch.allclose(plain, after)


def test_resume_continues_where_it_stopped(tiny_base, glossary_dataset, tmp_path):
    from safetensors.torch import load_file

    from finetune.train import latest_checkpoint, train

    cfg = tiny_config(tiny_base, max_steps=6, checkpoint_every=3, eval_every=0, lora_dropout=0.1)
    full = train(cfg, glossary_dataset, tmp_path / "full")

    class Crash(Exception):
        pass

    def crash_at_4(rec):
        if rec["step"] == 4:
            raise Crash()

    with pytest.raises(Crash):
        train(cfg, glossary_dataset, tmp_path / "cut", on_step=crash_at_4)
    assert latest_checkpoint(tmp_path / "cut").name == "step-3"
    resumed = train(cfg, glossary_dataset, tmp_path / "cut")
    assert (resumed.resumed_from, resumed.steps) == (3, 6)
    a = load_file(str(tmp_path / "full" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].allclose(b[k], atol=1e-6) for k in a)
    assert resumed.train_loss == pytest.approx(full.train_loss, rel=1e-5)
    # A checkpoint made from other data is refused instead of silently mixed in.
    other = tmp_path / "other"
    write_jsonl(other / "train.jsonl", glossary_records(10))
    with pytest.raises(KBError, match="data hash"):
        train(cfg, other, tmp_path / "cut")


def test_early_stopping_keeps_best_weights(tiny_base, glossary_dataset, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import finetune.train as T

    # Scripted eval losses: best at the 2nd eval, then two worse ones -> stop (patience 2).
    losses = iter([3.0, 2.0, 2.5, 2.6, 9.9, 9.9])
    monkeypatch.setattr(T, "evaluate_loss", lambda *a, **k: next(losses))
    snapshots = []
    real_state = T._trainable_state
    monkeypatch.setattr(T, "_trainable_state", lambda m: snapshots.append(real_state(m)) or snapshots[-1])
    cfg = tiny_config(tiny_base, max_steps=40, eval_every=2, early_stopping_patience=2)
    result = T.train(cfg, glossary_dataset, tmp_path / "run")
    assert result.stopped_early and result.steps == 8
    assert (result.best_step, result.eval_loss) == (4, 2.0)
    saved = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    best = snapshots[-1]  # taken at step 4
    assert saved.keys() == best.keys() and all(saved[k].equal(best[k]) for k in saved)


# --- adapter store ---------------------------------------------------------------------------------
def _fake_adapter(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "tag": tag}), encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(tag.encode())
    (folder / "train_manifest.json").write_text(json.dumps({"base_model": "tiny", "data_hash": "d" + tag}),
                                                encoding="utf-8")
    (folder / "checkpoints").mkdir(exist_ok=True)
    return folder


def test_gate_publishes_better_and_rejects_worse(tmp_path):
    from router.adapters import AdapterStore

    store = AdapterStore(tmp_path)
    assert store.current() is None
    good = {"route_accuracy": 0.8, "expansion_accuracy": 0.9, "answer_accuracy": 0.7}
    assert store.admit(_fake_adapter(tmp_path / "c1", "1"), good)
    assert store.current() == "v0001"
    worse = {"route_accuracy": 0.7, "expansion_accuracy": 0.95, "answer_accuracy": 0.75}
    assert not store.admit(_fake_adapter(tmp_path / "c2", "2"), worse)
    assert store.current() == "v0001"
    rejected = store.manifest("v0002")
    assert rejected["status"] == "rejected" and rejected["metrics"] == worse
    assert rejected["report"]["metrics"]["route_accuracy"]["why"] == "worse"
    assert rejected["report"]["compared_with"] == "v0001" and rejected["data_hash"] == "d2"
    assert not (store.path("v0002") / "checkpoints").exists()
    assert (store.path("v0002") / "adapter_model.safetensors").read_bytes() == b"2"
    # Ties pass; a candidate without a key metric does not.
    assert store.admit(_fake_adapter(tmp_path / "c3", "3"), dict(good))
    assert not store.admit(_fake_adapter(tmp_path / "c4", "4"), {"route_accuracy": 0.99})
    # Loss-like metrics must not go up; a metric the current adapter lacks cannot block.
    assert store.admit(_fake_adapter(tmp_path / "c5", "5"), {"eval_loss": 2.0}, key_metrics=["eval_loss"])
    assert not store.admit(_fake_adapter(tmp_path / "c6", "6"), {"eval_loss": 2.5}, key_metrics=["eval_loss"])
    assert [v["status"] for v in store.versions()] == ["published", "rejected", "published", "rejected",
                                                       "published", "rejected"]
    assert [v["current"] for v in store.versions()].index(True) == 4


def test_publish_and_rollback_switch_the_pointer_atomically(tmp_path, monkeypatch):
    from router.adapters import AdapterStore

    store = AdapterStore(tmp_path)
    for tag in "123":
        store.add(_fake_adapter(tmp_path / f"c{tag}", tag), {"route_accuracy": 0.5})
    with pytest.raises(KBError, match="no earlier"):
        store.rollback()
    store.publish("v0001")
    store.publish("v0002")
    store.publish("v0003")
    assert store.rollback() == "v0002" and store.current() == "v0002"
    assert store.rollback() == "v0001"
    assert store.rollback(to="v0003") == "v0003"
    assert store.current_path() == tmp_path / "adapters" / "v0003"
    with pytest.raises(KBError, match="v0009"):
        store.publish("v0009")

    # A crash while switching leaves the old pointer whole and no temp file behind.
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.publish("v0001")
    monkeypatch.undo()
    assert (tmp_path / "adapters" / "current").read_text() == "v0003\n"
    assert not [p for p in (tmp_path / "adapters").iterdir() if p.name.endswith(".tmp")]


# --- CLI -------------------------------------------------------------------------------------------
def test_cli_train_then_adapters(tiny_base, glossary_dataset, tmp_path, monkeypatch, capsys):
    import argparse

    from config.settings import reset_settings
    from finetune import cli
    from finetune.cli import register

    # The router evaluation (finetune.gate) needs a distilled KB; the gate falls back to
    # eval_loss without it, which is what this test exercises.
    monkeypatch.setattr(cli, "evaluate_hook", lambda adapter_dir, settings: {})
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    reset_settings()
    parser = argparse.ArgumentParser(prog="kb")
    register(parser.add_subparsers(dest="cmd", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.fn(args)

    try:
        common = ["train", "--dataset", str(glossary_dataset), "--max-steps", "2", "--set", f"base_model={tiny_base}",
                  "--set", "progress=false", "--set", "max_seq_len=128"]
        assert run(*common) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["version"] == "v0001" and out["status"] == "published" and out["steps"] == 2
        assert Path(out["run_dir"]).parent == tmp_path / "home" / "train_runs"
        assert run(*common) == 0  # same data + config: resumes the finished run, gate ties pass
        assert json.loads(capsys.readouterr().out)["version"] == "v0002"
        assert run("adapters", "rollback") == 0 and "v0001" in capsys.readouterr().out
        assert run("adapters", "list", "--json") == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(v["version"], v["current"]) for v in listed] == [("v0001", True), ("v0002", False)]
    finally:
        monkeypatch.delenv("KB_HOME")
        reset_settings()


def test_gate_rescores_the_current_adapter_when_the_data_changed(tiny_base, glossary_dataset, tmp_path,
                                                                  monkeypatch, capsys):
    """Metrics from different eval splits do not compare: after a re-distillation, the gate
    scores the current adapter on the new eval data and compares against that."""
    import argparse
    import shutil

    from config.settings import reset_settings
    from finetune import cli
    from finetune.cli import register

    new_data = tmp_path / "data_b"
    shutil.copytree(glossary_dataset, new_data)
    write_jsonl(new_data / "eval.jsonl", glossary_records(7))  # other eval data, other hash
    scored: list[Path] = []

    def fake_eval(adapter_dir, settings):  # stands in for the llama.cpp evaluation (tested elsewhere)
        scored.append(Path(adapter_dir))
        stored = Path(adapter_dir).parent.name == "adapters"
        data = json.loads((Path(adapter_dir) / "train_manifest.json").read_text())["dataset"]
        if stored:
            return {"route_accuracy": 0.70, "expansion_accuracy": 1.0, "answer_accuracy": 0.5}  # on the new split
        acc = 0.90 if data == str(glossary_dataset) else 0.80
        return {"route_accuracy": acc, "expansion_accuracy": 1.0, "answer_accuracy": 0.5}

    monkeypatch.setattr(cli, "evaluate_hook", fake_eval)
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    reset_settings()
    parser = argparse.ArgumentParser(prog="kb")
    register(parser.add_subparsers(dest="cmd", required=True))

    def run(dataset: Path) -> dict:
        args = parser.parse_args(["train", "--dataset", str(dataset), "--max-steps", "1", "--set",
                                  f"base_model={tiny_base}", "--set", "progress=false", "--set", "max_seq_len=96"])
        assert args.fn(args) == 0
        return json.loads(capsys.readouterr().out)

    try:
        assert run(glossary_dataset)["status"] == "published"
        assert len(scored) == 1  # nothing to re-score against
        second = run(new_data)
        # 0.80 < the stored 0.90, but the current adapter only scores 0.70 on the new split.
        assert second["status"] == "published", second
        assert scored[-1].parent.name == "adapters" and len(scored) == 3
        from router.adapters import AdapterStore

        report = AdapterStore(tmp_path / "home").manifest(second["version"])["report"]
        assert report["current_rescored"] is True and report["compared_with"] == "v0001"
    finally:
        monkeypatch.delenv("KB_HOME")
        reset_settings()


# --- export -----------------------------------------------------------------------------------------
def _real_shape_adapter(tmp_path: Path, arch: str = "qwen2", b_std: float = 0.02) -> Path:
    """A peft adapter with the packaged model's attention shapes (2 of its 24 layers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    shape = dict(hidden_size=896, num_attention_heads=14, num_key_value_heads=2, num_hidden_layers=2,
                 intermediate_size=8, vocab_size=16)
    model = (Qwen2ForCausalLM(Qwen2Config(**shape)) if arch == "qwen2"
             else LlamaForCausalLM(LlamaConfig(**shape)))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, b_std)
    out = tmp_path / f"adapter-{arch}"
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def packaged_gguf() -> Path:
    from router.llm.assets import packaged_gguf_path

    return packaged_gguf_path()


def test_gguf_adapter_matches_peft_weights(tmp_path, packaged_gguf):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    from router.adapters.gguf import validate_gguf_adapter, write_gguf_adapter

    adapter = _real_shape_adapter(tmp_path)
    out = write_gguf_adapter(adapter, tmp_path / "lora.gguf", packaged_gguf)
    info = validate_gguf_adapter(out, packaged_gguf)
    assert info["arch"] == "qwen2" and info["alpha"] == 8.0 and info["rank"] == 4
    assert info["targets"] == sorted(f"blk.{i}.attn_{x}.weight" for i in (0, 1) for x in "qkv")
    reader = gguf.GGUFReader(str(out))
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("adapter.type").contents() == "lora"
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    peft_w = load_file(str(adapter / "adapter_model.safetensors"))
    a = peft_w["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
    b = peft_w["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    assert tensors["blk.1.attn_v.weight.lora_a"].shape == a.shape == (4, 896)  # A (r, in)
    assert tensors["blk.1.attn_v.weight.lora_b"].shape == b.shape == (128, 4)  # B (out, r)
    assert np.array_equal(tensors["blk.1.attn_v.weight.lora_a"], a)
    assert np.array_equal(tensors["blk.1.attn_v.weight.lora_b"], b)


def _write_gguf(path: Path, arch: str, kv: dict, tensors: dict) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    for key, value in kv.items():
        (w.add_string if isinstance(value, str) else w.add_float32 if isinstance(value, float)
         else w.add_uint32)(key, value)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_validator_rejects_broken_adapters(tmp_path, packaged_gguf):
    import numpy as np

    from router.adapters.gguf import validate_gguf_adapter

    a, b = np.zeros((4, 896), np.float32), np.zeros((896, 4), np.float32)
    good_kv = {"general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 8.0}
    ok = _write_gguf(tmp_path / "ok.gguf", "qwen2", good_kv,
                     {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b})
    assert validate_gguf_adapter(ok, packaged_gguf)["rank"] == 4
    cases = {
        "architecture": ("llama", good_kv, {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b}),
        "alpha": ("qwen2", {**good_kv, "adapter.lora.alpha": -1.0},
                  {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b}),
        "output size": ("qwen2", good_kv, {"blk.0.attn_v.weight.lora_a": a, "blk.0.attn_v.weight.lora_b": b}),
        "pairs": ("qwen2", good_kv, {"blk.0.attn_q.weight.lora_a": a}),
        "no such tensor": ("qwen2", good_kv, {"blk.99.attn_q.weight.lora_a": a, "blk.99.attn_q.weight.lora_b": b}),
        "input size": ("qwen2", good_kv, {"blk.0.attn_q.weight.lora_a": a.T.copy(),
                                          "blk.0.attn_q.weight.lora_b": b}),
        "general.type": ("qwen2", {k: v for k, v in good_kv.items() if k != "general.type"},
                         {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b}),
    }
    for i, (expected, (arch, kv, tensors)) in enumerate(cases.items()):
        bad = _write_gguf(tmp_path / f"bad{i}.gguf", arch, kv, tensors)
        with pytest.raises(ValidationError, match=expected):
            validate_gguf_adapter(bad, packaged_gguf)
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 10)
    with pytest.raises(ValidationError, match="not a GGUF"):
        validate_gguf_adapter(tmp_path / "junk.gguf", packaged_gguf)
    data = ok.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:-100])  # a copy that stopped early
    with pytest.raises(ValidationError, match="past the end"):
        validate_gguf_adapter(tmp_path / "cut.gguf", packaged_gguf)
    nan = _write_gguf(tmp_path / "nan.gguf", "qwen2", good_kv,
                      {"blk.0.attn_q.weight.lora_a": a + np.nan, "blk.0.attn_q.weight.lora_b": b})
    with pytest.raises(ValidationError, match="NaN"):
        validate_gguf_adapter(nan, packaged_gguf)


def test_llama_arch_adapter_permutes_q_and_k(tmp_path):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    from router.adapters.gguf import permute_qk, write_gguf_adapter

    base_tensors = {}
    for i in (0, 1):
        base_tensors[f"blk.{i}.attn_q.weight"] = np.zeros((896, 896), np.float32)
        base_tensors[f"blk.{i}.attn_k.weight"] = np.zeros((128, 896), np.float32)
        base_tensors[f"blk.{i}.attn_v.weight"] = np.zeros((128, 896), np.float32)
    base = _write_gguf(tmp_path / "base.gguf", "llama",
                       {"llama.block_count": 2, "llama.attention.head_count": 14,
                        "llama.attention.head_count_kv": 2}, base_tensors)
    adapter = _real_shape_adapter(tmp_path, arch="llama")
    out = write_gguf_adapter(adapter, tmp_path / "lora.gguf", base)
    tensors = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(out)).tensors}
    peft_w = load_file(str(adapter / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.{}_proj.lora_B.weight"
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_b"], permute_qk(peft_w[key.format("q")], 14))
    assert np.array_equal(tensors["blk.0.attn_k.weight.lora_b"], permute_qk(peft_w[key.format("k")], 14, 2))
    assert np.array_equal(tensors["blk.0.attn_v.weight.lora_b"], peft_w[key.format("v")])
    assert not np.array_equal(tensors["blk.0.attn_q.weight.lora_b"], peft_w[key.format("q")])


def test_merge_adapter_gives_the_adapted_model(tiny_base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.export import merge_adapter
    from finetune.train import load_lora_model

    model = load_lora_model(tiny_base, tiny_config(tiny_base), "cpu", bf16=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(str(tmp_path / "adapter"))
    merged_dir = merge_adapter(tmp_path / "adapter", tmp_path / "merged", base_model=tiny_base, dtype="float32")
    ids = torch.tensor([[151644, 872, 198, 9707]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
        adapted = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))(input_ids=ids).logits
    assert torch.allclose(merged, adapted, atol=1e-4)
    assert (merged_dir / "tokenizer.json").is_file()


def _small_qwen2_base(path: Path) -> Path:
    """A GGUF with the packaged model's attention shapes for 2 blocks, Q8_0-quantised,
    plus metadata of every kind, to test merging and copying quickly."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_uint32("qwen2.block_count", 2)
    w.add_uint32("qwen2.attention.head_count", 14)
    w.add_uint32("qwen2.attention.head_count_kv", 2)
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    w.add_array("tokenizer.ggml.tokens", ["<a>", "<b>", "c"])
    w.add_array("tokenizer.ggml.scores", [0.5, 0.25, 0.0])
    for i in (0, 1):
        for name, rows in (("attn_q", 896), ("attn_k", 128), ("attn_v", 128), ("attn_output", 896)):
            q = gguf.quants.quantize(rng.normal(0, 0.05, (rows, 896)).astype(np.float32),
                                     gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(f"blk.{i}.{name}.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(896, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_merge_into_gguf_rewrites_only_adapted_tensors(tmp_path):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    from finetune.export import merge_into_gguf

    base_path = _small_qwen2_base(tmp_path / "base.gguf")
    adapter = _real_shape_adapter(tmp_path)
    out = merge_into_gguf(adapter, tmp_path / "merged.gguf", base_path)
    base, merged = gguf.GGUFReader(str(base_path)), gguf.GGUFReader(str(out))
    bt, mt = {t.name: t for t in base.tensors}, {t.name: t for t in merged.tensors}
    assert list(bt) == list(mt)
    for name in ("blk.0.attn_output.weight", "blk.1.attn_norm.weight"):
        assert mt[name].tensor_type == bt[name].tensor_type
        assert np.array_equal(np.asarray(bt[name].data), np.asarray(mt[name].data))
    assert mt["blk.1.attn_v.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    w = load_file(str(adapter / "adapter_model.safetensors"))
    pre = "base_model.model.model.layers.1.self_attn.v_proj."
    want = gguf.quants.dequantize(bt["blk.1.attn_v.weight"].data, bt["blk.1.attn_v.weight"].tensor_type) \
        + 2.0 * (w[pre + "lora_B.weight"] @ w[pre + "lora_A.weight"])  # scale = alpha / r = 8 / 4
    assert np.allclose(np.asarray(mt["blk.1.attn_v.weight"].data, np.float32), want, atol=1e-3)
    for key in ("tokenizer.chat_template", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "qwen2.block_count"):
        assert merged.get_field(key).contents() == base.get_field(key).contents()


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python is not installed")
def test_llama_cpp_adapter_equals_merged_gguf(tmp_path, packaged_gguf):
    """llama.cpp with base + LoRA GGUF moves the logits the way the merged GGUF does (both
    written here; the merge is plain numpy W + s·B·A, so agreement proves the adapter's
    layout and scale). Quantised vs F16 matmuls differ by ~0.4 logits even with B = 0, so
    the adapter is made strong and the direction of the change is compared."""
    import numpy as np

    from finetune.export import merge_into_gguf
    from router.adapters.gguf import write_gguf_adapter

    adapter = _real_shape_adapter(tmp_path, b_std=0.2)
    lora = write_gguf_adapter(adapter, tmp_path / "lora.gguf", packaged_gguf)
    merged = merge_into_gguf(adapter, tmp_path / "merged.gguf", packaged_gguf)
    script = """
import sys, numpy as np
from llama_cpp import Llama
def logits(**kw):
    llm = Llama(n_ctx=64, n_threads=2, logits_all=True, verbose=False, **kw)
    llm.eval(llm.tokenize(b"<|im_start|>user\\nWhat does AM mean?<|im_end|>", special=True))
    return np.array(llm.scores[llm.n_tokens - 1])
np.save(sys.argv[4], np.stack([logits(model_path=sys.argv[1]), logits(model_path=sys.argv[1], lora_path=sys.argv[2]),
                               logits(model_path=sys.argv[3])]))
"""
    out = tmp_path / "logits.npy"
    proc = subprocess.run([sys.executable, "-c", script, str(packaged_gguf), str(lora), str(merged), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    base, with_lora, with_merge = np.load(out)
    a, b = with_lora - base, with_merge - base
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert np.abs(a).max() > 2.0 and cos > 0.98, (np.abs(a).max(), cos)


# --- integration: the packaged model -----------------------------------------------------------------
def test_real_adapter_on_packaged_model(tmp_path, packaged_gguf):
    """A few CPU steps of LoRA on the packaged Qwen2.5-Coder-0.5B (HF copy made once, cached),
    then the adapter exported and validated for llama.cpp (and loaded there, in a
    subprocess, when llama-cpp-python is installed)."""
    from config.settings import Settings
    from router.adapters.gguf import validate_gguf_adapter, write_gguf_adapter
    from finetune.train import TrainConfig, train

    data = write_jsonl(tmp_path / "data" / "train.jsonl", glossary_records(8))
    cfg = TrainConfig.load(overrides=dict(max_steps=3, batch_size=2, max_seq_len=96, eval_every=0,
                                          checkpoint_every=0, eval_ratio=0.25, progress=False),
                           settings=Settings())
    result = train(cfg, data.parent, tmp_path / "run")
    assert result.steps == 3 and result.eval_loss is not None and 0 < result.eval_loss < 10
    manifest = json.loads((tmp_path / "run" / "train_manifest.json").read_text(encoding="utf-8"))
    assert manifest["base_gguf"] == str(packaged_gguf)
    out = write_gguf_adapter(tmp_path / "run", tmp_path / "lora.gguf")
    info = validate_gguf_adapter(out, packaged_gguf)
    assert info["rank"] == 8 and len(info["targets"]) == 48  # q and v of 24 blocks
    if HAS_LLAMA_CPP:
        script = ("import sys; from llama_cpp import Llama; "
                  "llm = Llama(model_path=sys.argv[1], lora_path=sys.argv[2], n_ctx=128, verbose=False); "
                  "print(repr(llm.create_completion('AM means', max_tokens=4)['choices'][0]['text']))")
        proc = subprocess.run([sys.executable, "-c", script, str(packaged_gguf), str(out)],
                              capture_output=True, text=True, timeout=300, env={**os.environ})
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_cli_exports_a_stored_adapter_for_llama_cpp(tmp_path, monkeypatch, capsys):
    import argparse

    import gguf

    from config.settings import reset_settings
    from router.adapters import AdapterStore
    from finetune.cli import register

    base = _small_qwen2_base(tmp_path / "base.gguf")
    AdapterStore(tmp_path / "home").admit(_real_shape_adapter(tmp_path), {"eval_loss": 1.0}, ["eval_loss"])
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    reset_settings()
    parser = argparse.ArgumentParser(prog="kb")
    register(parser.add_subparsers(dest="cmd", required=True))
    try:
        args = parser.parse_args(["adapters", "export", "--gguf", str(tmp_path / "lora.gguf"),
                                  "--merged-gguf", str(tmp_path / "merged.gguf"), "--base-gguf", str(base)])
        assert args.fn(args) == 0
    finally:
        monkeypatch.delenv("KB_HOME")
        reset_settings()
    assert "validated" in capsys.readouterr().out
    assert gguf.GGUFReader(str(tmp_path / "lora.gguf")).get_field("adapter.type").contents() == "lora"
    assert len(gguf.GGUFReader(str(tmp_path / "merged.gguf")).tensors) == 10
