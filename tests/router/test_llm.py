"""Generator backends: registry, packaged model assembly, prompts, and each backend for real.

llama.cpp runs the real packaged Qwen2.5-Coder-0.5B GGUF (loaded once per module); the
openai backend talks to llama-cpp-python's own OpenAI-compatible server started here; the
dashscope backend talks to a stand-in speaking DashScope's HTTP protocol on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.servers import free_port, llama_openai_server

from config.settings import LLMSettings, Settings
from fakes.dashscope_gen_server import DashScopeStandIn
from knowledge.errors import ConfigError, GenerationError, KBError, UnknownComponentError
from router.llm import assets, base
from router.llm import (
    REFUSAL_EN,
    REFUSAL_ZH,
    ExtractiveGenerator,
    Generator,
    build_rag_messages,
    create_generator,
    detect_language,
    is_refusal,
    parse_rag_messages,
    register_generator,
    registered_generators,
)
from router.llm.dashscope_gen import DashScopeGenerator
from router.llm.llama_cpp import LlamaCppGenerator
from router.llm.openai_compat import OpenAIGenerator

REPO = Path(__file__).resolve().parents[2]
PARIS = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
STORY = [{"role": "user", "content": "Write one sentence about a cat."}]


def llm_settings(**llm: object) -> Settings:
    return Settings(llm=LLMSettings(**llm))


class CountingGenerator(Generator):
    """A local-model stand-in: counts how often it is built."""

    name = "counting"
    built = 0

    def __init__(self) -> None:
        type(self).built += 1

    @classmethod
    def cache_key(cls, settings: Settings) -> str:
        return settings.llm.model_path

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, stop: list[str] | None = None
    ) -> str:
        return "counted"


@pytest.fixture()
def private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in a test vanish afterwards."""
    monkeypatch.setattr(base, "_REGISTRY", base._REGISTRY.copy())
    monkeypatch.setattr(base, "_INSTANCES", {})


def test_builtin_backends_are_registered() -> None:
    assert {"llama_cpp", "openai", "dashscope", "extractive"} <= set(registered_generators())


def test_register_rejects_duplicates_and_non_generators(private_registry: None) -> None:
    with pytest.raises(KBError, match="extractive"):
        register_generator("extractive", ExtractiveGenerator)
    with pytest.raises(KBError, match="not a Generator"):
        register_generator("str", str)  # type: ignore[arg-type]


def test_unknown_backend_names_known_ones() -> None:
    with pytest.raises(UnknownComponentError, match="'gpt-9'.*extractive"):
        create_generator(llm_settings(backend="gpt-9"))


def test_cached_backend_is_built_once_per_key(private_registry: None) -> None:
    register_generator("counting", CountingGenerator)
    CountingGenerator.built = 0
    first = create_generator(llm_settings(backend="counting", model_path="a.gguf"))
    again = create_generator(llm_settings(backend="counting", model_path="a.gguf"))
    other = create_generator(llm_settings(backend="counting", model_path="b.gguf"))
    assert first is again and other is not first
    assert CountingGenerator.built == 2
    assert list(first.stream(STORY, max_tokens=4, temperature=0)) == ["counted"]


def test_importing_router_llm_loads_no_heavy_library() -> None:
    code = (
        "import sys, router.llm; "
        "print(sorted(m for m in ('llama_cpp', 'openai', 'dashscope', 'torch', 'jieba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- prompts -------------------------------------------------------------------------


def test_rag_messages_number_passages_and_carry_rules() -> None:
    msgs = build_rag_messages("住宿标准是多少？", ["第一段。", "第二段\n\n续行。"], "zh", feedback="800元")
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert REFUSAL_ZH in system and "[1]" in system
    assert "[1] 第一段。\n\n[2] 第二段\n续行。" in user
    assert user.index("[2]") < user.index("住宿标准是多少？") < user.index("800元")
    assert parse_rag_messages(msgs) == ("住宿标准是多少？", ["第一段。", "第二段\n续行。"])

    en = build_rag_messages("Hotel limit?", ["Hotels cost 80 USD."], "en")
    assert REFUSAL_EN in en[0]["content"] and "exactly" in en[0]["content"]
    assert parse_rag_messages(en) == ("Hotel limit?", ["Hotels cost 80 USD."])
    assert parse_rag_messages(build_rag_messages("Anything?", [], "en")) == ("Anything?", [])


def test_detect_language_and_refusals() -> None:
    assert detect_language("PM负责哪些工作？") == "zh"
    assert detect_language("What does PM mean in 项目?") == "en"
    assert is_refusal(REFUSAL_ZH) and is_refusal(REFUSAL_EN.upper().rstrip("."))
    assert is_refusal("抱歉，知识库中没有找到该问题的答案")
    assert not is_refusal("出差住宿标准为每晚500元[1]。")


# -- extractive ----------------------------------------------------------------------

TRAVEL = [
    "差旅费包括交通费和住宿费。员工出差应提前申请。",
    "一线城市出差住宿标准为每晚600元；其他城市为每晚400元。",
    "餐费补贴每天100元。",
]


def test_extractive_quotes_the_matching_sentence_with_its_number() -> None:
    answer = ExtractiveGenerator().compose("一线城市住宿标准是多少？", TRAVEL)
    assert answer.startswith("一线城市出差住宿标准为每晚600元[2]")
    assert "100元" not in answer

    en = ExtractiveGenerator().compose(
        "What is the daily meal allowance?",
        ["Hotels are capped at 80 USD per night.", "Taxis are allowed. The meal allowance is 30 USD daily."],
    )
    assert en == "The meal allowance is 30 USD daily [2]."


def test_extractive_generate_reads_the_rag_prompt_and_is_deterministic() -> None:
    gen = create_generator(llm_settings(backend="extractive"))
    assert isinstance(gen, ExtractiveGenerator)
    msgs = build_rag_messages("餐费补贴每天多少？", TRAVEL, "zh")
    first = gen.generate(msgs, max_tokens=64, temperature=0.7)
    assert first == gen.compose("餐费补贴每天多少？", TRAVEL) == "餐费补贴每天100元[3]。"
    assert list(gen.stream(msgs, max_tokens=64, temperature=0.7)) == [first]


def test_extractive_refuses_without_overlap() -> None:
    assert ExtractiveGenerator().compose("年假有几天？", TRAVEL) == REFUSAL_ZH
    assert ExtractiveGenerator().compose("Who is the CEO?", ["Hotels cost 80 USD."]) == REFUSAL_EN


# -- packaged model assembly ---------------------------------------------------------


def test_packaged_gguf_is_assembled_once_and_verified(tmp_path: Path) -> None:
    target = tmp_path / assets.GGUF_NAME
    target.write_bytes(b"half a model")  # a leftover of the wrong size is rebuilt
    try:
        path = assets.packaged_gguf_path(tmp_path)
        assert path == target
        assert path.stat().st_size == sum(p.stat().st_size for p in assets.part_paths())
        assert path.stat().st_mode & 0o777 == 0o644  # readable by every user of a shared cache
        with open(path, "rb") as fh:
            assert fh.read(4) == b"GGUF"
        sidecar = tmp_path / (assets.GGUF_NAME + ".sha256")
        assert sidecar.read_text().startswith(assets.EXPECTED_SHA256)
        before = path.stat()

        started = time.perf_counter()
        assert assets.packaged_gguf_path(tmp_path) == path
        assert time.perf_counter() - started < 0.5  # size check + sidecar only
        sidecar.unlink()
        assert assets.packaged_gguf_path(tmp_path) == path  # full hash once more, no rewrite
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert sidecar.is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == [assets.GGUF_NAME, sidecar.name]
    finally:
        target.unlink(missing_ok=True)  # 491 MB: do not leave it in pytest's kept tmp dirs


def test_packaged_gguf_with_wrong_hash_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "EXPECTED_SHA256", "0" * 64)
    with pytest.raises(KBError, match="sha256 1d9614638d18.*expected 0000"):
        assets.packaged_gguf_path(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


# -- llama.cpp -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_settings() -> Settings:
    return llm_settings(backend="llama_cpp", n_ctx=2048)


@pytest.fixture(scope="module")
def llama_gen(llama_settings: Settings) -> LlamaCppGenerator:
    gen = create_generator(llama_settings)
    assert isinstance(gen, LlamaCppGenerator)
    return gen


def test_llama_model_is_loaded_once(llama_gen: LlamaCppGenerator, llama_settings: Settings) -> None:
    assert create_generator(llama_settings) is llama_gen
    assert llama_gen.model_path.name == assets.GGUF_NAME
    assert llama_gen.llm.n_ctx() == 2048


def test_llama_answers_a_simple_question(llama_gen: LlamaCppGenerator) -> None:
    text = llama_gen.generate(PARIS, max_tokens=8, temperature=0)
    assert "paris" in text.lower()


def test_llama_answers_from_a_rag_prompt(llama_gen: LlamaCppGenerator) -> None:
    msgs = build_rag_messages(
        "What is the hotel limit per night?",
        ["The hotel limit is 80 USD per night.", "Taxis are allowed for trips under 20 km."],
        "en",
    )
    text = llama_gen.generate(msgs, max_tokens=40, temperature=0)
    # A 0.5B model may or may not cite; it must use the passage's number or refuse.
    assert "80" in text or is_refusal(text), text


def test_llama_stream_equals_greedy_generation(llama_gen: LlamaCppGenerator) -> None:
    whole = llama_gen.generate(STORY, max_tokens=24, temperature=0)
    pieces = list(llama_gen.stream(STORY, max_tokens=24, temperature=0))
    assert len(pieces) >= 3
    assert "".join(pieces) == whole


def test_llama_prompt_longer_than_the_context_is_clipped_to_fit(llama_gen: LlamaCppGenerator) -> None:
    # Was a GenerationError (a 502); the prompt is now fitted to the window (tests/api/test_inputs.py).
    text = llama_gen.generate([{"role": "user", "content": "word " * 3000}], max_tokens=4, temperature=0)
    assert isinstance(text, str)


def test_llama_rejects_a_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.gguf"):
        LlamaCppGenerator(tmp_path / "missing.gguf")


# -- openai backend against llama-cpp-python's OpenAI-compatible server --------------


@pytest.fixture(scope="module")
def llama_server(llama_gen: LlamaCppGenerator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_openai_server(llama_gen.model_path, tmp_path_factory.mktemp("llama_server")) as base_url:
        yield base_url


def test_openai_backend_generates_and_streams(llama_server: str) -> None:
    gen = create_generator(llm_settings(backend="openai", base_url=llama_server, model=""))
    assert isinstance(gen, OpenAIGenerator)
    assert gen.model.endswith(assets.GGUF_NAME)  # the server names its model by its path
    text = gen.generate(PARIS, max_tokens=8, temperature=0)
    assert "paris" in text.lower()
    whole = gen.generate(STORY, max_tokens=16, temperature=0)
    pieces = list(gen.stream(STORY, max_tokens=16, temperature=0))
    assert len(pieces) >= 3 and "".join(pieces) == whole


def test_openai_backend_reports_http_errors(llama_server: str) -> None:
    gen = OpenAIGenerator(llama_server, model="any")
    too_long = [{"role": "user", "content": "word " * 3000}]  # more tokens than n_ctx=2048
    with pytest.raises(GenerationError, match="HTTP 400 .*context"):
        gen.generate(too_long, max_tokens=4, temperature=0)


def test_openai_backend_reports_unreachable_server() -> None:
    gen = OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", model="m", timeout=5)
    with pytest.raises(GenerationError, match="cannot reach"):
        gen.generate(PARIS, max_tokens=4, temperature=0)


def test_openai_backend_never_defaults_to_the_public_api() -> None:
    with pytest.raises(ConfigError, match="llm.base_url"):
        create_generator(llm_settings(backend="openai", base_url=""))


# -- dashscope backend against the protocol stand-in ---------------------------------


@pytest.fixture()
def dashscope(monkeypatch: pytest.MonkeyPatch) -> Iterator[DashScopeStandIn]:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    with DashScopeStandIn(api_key="sk-test") as server:
        yield server


def test_dashscope_generates(dashscope: DashScopeStandIn) -> None:
    gen = create_generator(llm_settings(backend="dashscope", base_url=dashscope.base_url))
    assert isinstance(gen, DashScopeGenerator)
    msgs = build_rag_messages("住宿标准？", ["住宿每晚500元。"], "zh")
    assert gen.generate(msgs, max_tokens=100, temperature=0.1) == "Echo: " + msgs[1]["content"]
    sent = dashscope.requests[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    assert sent["body"]["model"] == "qwen-plus"
    assert sent["body"]["input"]["messages"] == msgs
    assert sent["body"]["parameters"]["result_format"] == "message"
    assert sent["body"]["parameters"]["max_tokens"] == 100


def test_dashscope_streams_incrementally(
    dashscope: DashScopeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = "一线城市出差住宿标准为每晚600元[2]。"
    dashscope.reply = reply
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", dashscope.base_url)  # the env route works too
    gen = create_generator(llm_settings(backend="dashscope", model="qwen-turbo"))
    pieces = list(gen.stream(STORY, max_tokens=100, temperature=0))
    assert len(pieces) > 3 and "".join(pieces) == reply
    sent = dashscope.requests[-1]
    assert sent["headers"]["x-dashscope-sse"] == "enable"
    assert sent["body"]["parameters"]["incremental_output"] is True
    assert gen.generate(STORY, max_tokens=3, temperature=0) == "一线城"  # max_tokens reaches the server


def test_dashscope_errors_carry_status_and_message(dashscope: DashScopeStandIn) -> None:
    bad_model = DashScopeGenerator("sk-test", model="qwen-nope", base_url=dashscope.base_url)
    with pytest.raises(GenerationError, match="HTTP 400 InvalidParameter: Model not exist"):
        bad_model.generate(STORY, max_tokens=8, temperature=0)
    with pytest.raises(GenerationError, match="HTTP 400 InvalidParameter: Model not exist"):
        list(bad_model.stream(STORY, max_tokens=8, temperature=0))
    bad_key = DashScopeGenerator("sk-wrong", base_url=dashscope.base_url)
    with pytest.raises(GenerationError, match="HTTP 401 InvalidApiKey"):
        bad_key.generate(STORY, max_tokens=8, temperature=0)
    gone = DashScopeGenerator("sk-test", base_url=f"http://127.0.0.1:{free_port()}/api/v1", timeout=5)
    with pytest.raises(GenerationError, match="dashscope backend"):
        gone.generate(STORY, max_tokens=8, temperature=0)


def test_dashscope_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        create_generator(llm_settings(backend="dashscope"))


def test_stand_in_is_a_faithful_echo_by_default() -> None:
    # Guards the fake itself: wrong paths are 404s, not silently accepted.
    with DashScopeStandIn() as server:
        resp = httpx.post(server.base_url + "/services/aigc/other", json={}, timeout=5)
    assert resp.status_code == 404
