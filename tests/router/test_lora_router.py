"""LoRARouter on the packaged Qwen2.5-Coder-0.5B GGUF with a zero-initialised LoRA adapter
(B = 0, so the adapted model equals the base: the test is about plumbing, not accuracy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.adapters import zero_lora_adapter
from router.routes import ROUTE_NAMES, RouteChoice, RouteSignals, default_routes

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def base_gguf(demo_settings) -> Path:
    from router.llm.assets import packaged_gguf_path

    return packaged_gguf_path(demo_settings.cache_dir)


@pytest.fixture(scope="module")
def adapter_gguf(tmp_path_factory, base_gguf) -> Path:
    from router.adapters.gguf import write_gguf_adapter

    folder = zero_lora_adapter(tmp_path_factory.mktemp("zero_lora") / "adapter")
    return write_gguf_adapter(folder, folder / "adapter.gguf", base_gguf)


@pytest.fixture(scope="module")
def lora_router(demo_settings, base_gguf, adapter_gguf):
    from router.lora import LoRARouter

    return LoRARouter(default_routes(demo_settings.router), base_gguf=base_gguf, adapter_gguf=adapter_gguf,
                      n_ctx=512, version="test")


def _signals(engine, question: str) -> RouteSignals:
    return engine.decide(question)[1]


def test_lora_router_returns_a_valid_choice(lora_router, extractive_engine):
    signals = _signals(extractive_engine, "财务部的AM负责什么？")
    choice = lora_router.decide(signals)
    assert isinstance(choice, RouteChoice)
    assert choice.route in ROUTE_NAMES
    assert 0.0 <= choice.confidence <= 1.0
    assert choice.reason.startswith("lora adapter"), choice.reason
    assert abs(sum(v for k, v in choice.scores.items() if k.startswith("p_")) - 1.0) < 1e-3
    assert choice.scores["answerable"] == pytest.approx(1 - choice.scores["p_refuse"], abs=1e-3)
    # One resolution per match, and the rewritten query is built from them.
    assert len(choice.terms) == len(signals.matches) >= 1
    assert "AM" in choice.rewritten_query and choice.rewritten_query != signals.question


def test_prompt_carries_the_term_candidates_and_retrieval_evidence(lora_router, extractive_engine):
    from router.lora_format import evidence_from_signals, router_user

    signals = _signals(extractive_engine, "交付中心的PM住宿标准是多少？")
    user = lora_router.user_turn(signals)
    lines = user.split("\n")
    assert lines[0] == signals.question
    pm = next(m for m in signals.matches if m.term == "PM")
    # Every meaning is offered (the model chooses), not the disambiguator's pick.
    assert any(ln.startswith("术语：") and all(x.chinese in ln for x in pm.entry.meanings) for ln in lines)
    # The evidence the model reads: the best passage sentences and the measurements in words.
    assert any(ln.startswith("证据：") for ln in lines)
    assert lines[-1].startswith("覆盖：") and "相关度：" in lines[-1]
    # No rule verdict: the model decides from the evidence, it is not shown what the rules said.
    assert not any("规则" in ln for ln in lines)
    # The same function writes the training rows: serving and training prompts are identical.
    assert user == router_user(signals.question, **evidence_from_signals(signals))


def test_prefix_cache_and_repeat_calls_agree(lora_router, extractive_engine):
    signals = _signals(extractive_engine, "出差住宿标准是多少？")
    first = lora_router.decide(signals)
    # The system prefix stays in the KV cache; a second call gives the same decision.
    assert list(lora_router.llm.input_ids[: len(lora_router.prefix)]) == lora_router.prefix
    second = lora_router.decide(signals)
    # Re-evaluating only the last token (batch of 1) differs from the full batch in the last
    # bits of the quantised kernels, so the confidence agrees closely, not exactly.
    assert first.route == second.route
    assert abs(first.confidence - second.confidence) < 0.05


def test_invalid_adapter_falls_back_to_signal_router(demo_settings, base_gguf, tmp_path, extractive_engine):
    from router.lora import LoRARouter

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)  # llama.cpp would segfault on this; validation must stop it
    router = LoRARouter(default_routes(demo_settings.router), base_gguf=base_gguf, adapter_gguf=bad)
    assert router.llm is None and router.disabled_reason
    signals = _signals(extractive_engine, "AM是什么意思？")
    choice = router.decide(signals)
    assert choice.route == extractive_engine.router.decide(signals).route
    assert choice.reason.startswith("lora fallback (adapter not loaded")


def test_failure_during_decision_falls_back(lora_router, extractive_engine, monkeypatch):
    signals = _signals(extractive_engine, "AM是什么意思？")

    def broken(*a, **k):
        raise RuntimeError("llama_decode returned -1")

    monkeypatch.setattr(lora_router, "_decide_lora", broken)
    choice = lora_router.decide(signals)
    assert choice.route in ROUTE_NAMES
    assert "lora fallback (lora decision failed: RuntimeError" in choice.reason


def test_a_prompt_longer_than_the_context_falls_back_with_the_reason(lora_router, extractive_engine):
    question = "请说明差旅费报销的流程和标准，" * 40 + "AM出差住宿标准是多少？"  # ~600 tokens > n_ctx 512
    choice = lora_router.decide(_signals(extractive_engine, question))
    assert choice.route in ROUTE_NAMES
    assert "does not fit the context of 512" in choice.reason
    # The router still works afterwards (the cache was not left half-written).
    again = lora_router.decide(_signals(extractive_engine, "AM是什么意思？"))
    assert again.reason.startswith("lora adapter"), again.reason


def test_cascade_answers_with_signals_when_confident_and_agreeing(lora_router, extractive_engine):
    signals = _signals(extractive_engine, "AM是什么意思？")
    saved = (lora_router.cascade_threshold, lora_router.agreement)
    try:
        lora_router.cascade_threshold, lora_router.agreement = 0.0, 0.99
        assert lora_router.decide(signals).reason.startswith("cascade:")
        lora_router.agreement = 0.5  # measured agreement too low: the adapter decides
        assert lora_router.decide(signals).reason.startswith("lora adapter")
    finally:
        lora_router.cascade_threshold, lora_router.agreement = saved


def test_engine_backend_lora_without_adapter_is_a_config_error(demo_settings, demo_index):
    from knowledge.errors import ConfigError
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    import router.adapters as shipped

    settings = demo_settings.model_copy(update={"router": demo_settings.router.model_copy(update={"backend": "lora"})})
    saved = shipped.BASE_ADAPTER_DIR
    try:
        shipped.BASE_ADAPTER_DIR = saved.parent / "no-such-adapter"
        with pytest.raises(ConfigError, match="needs an adapter"):
            Engine(settings, demo_index, generator=ExtractiveGenerator())
    finally:
        shipped.BASE_ADAPTER_DIR = saved


def test_the_shipped_base_adapter_serves_a_fresh_install(demo_settings, demo_index, base_gguf):
    """router.backend=lora with no adapter published: the base adapter of router/adapters/base
    (a valid GGUF LoRA of the packaged model, with its manifest) decides, not the rules."""
    import json

    import router.adapters as shipped
    from router.adapters.gguf import validate_gguf_adapter
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    manifest = json.loads((shipped.BASE_ADAPTER_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "router-base-adapter" and manifest["data_sha256"]
    assert set(manifest["heldout_never_seen"]).isdisjoint(manifest["trained_on"])
    info = validate_gguf_adapter(shipped.BASE_ADAPTER_DIR / "adapter.gguf", base_gguf)
    assert info["rank"] == manifest["config"]["lora_r"]
    settings = demo_settings.model_copy(update={"router": demo_settings.router.model_copy(update={"backend": "lora"})})
    engine = Engine(settings, demo_index, generator=ExtractiveGenerator())
    assert engine.router.version == "base" and not engine.router.disabled_reason
    choice, _ = engine.decide("AM是什么意思？")
    assert choice.reason.startswith("lora adapter base"), choice.reason
    assert abs(sum(v for k, v in choice.scores.items() if k.startswith("p_")) - 1.0) < 1e-3
