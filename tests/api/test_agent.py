"""Qwen-Agent integration for real: the registered ``kb_answer`` tool, a qwen-agent ``Assistant``
whose LLM is llama-cpp-python's OpenAI-compatible server running the packaged Qwen2.5-Coder-0.5B
on 127.0.0.1, and the tool's HTTP mode against a real uvicorn server of the project's app.

The answer side uses the engine with the extractive generator, so only one LLM (the agent's) runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.servers import AppServer, free_port, llama_openai_server

REPO = Path(__file__).resolve().parents[2]
QUESTION = "AM是什么意思？"
# A 0.5B model gets short, greedy replies: bounded time, reproducible path.
GENERATE_CFG = {"max_tokens": 48, "temperature": 0, "max_input_tokens": 1500}


@pytest.fixture(scope="module", autouse=True)
def qwen_agent_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # qwen-agent reads its workspace folder at import time; keep it out of the repo.
    old = os.environ.get("QWEN_AGENT_DEFAULT_WORKSPACE")
    os.environ["QWEN_AGENT_DEFAULT_WORKSPACE"] = str(tmp_path_factory.mktemp("qwen_agent_ws"))
    yield
    if old is None:
        os.environ.pop("QWEN_AGENT_DEFAULT_WORKSPACE", None)
    else:
        os.environ["QWEN_AGENT_DEFAULT_WORKSPACE"] = old


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """llama-cpp-python's OpenAI-compatible server with the packaged model, on a free port."""
    from router.llm.assets import packaged_gguf_path

    model = packaged_gguf_path()
    with llama_openai_server(model, tmp_path_factory.mktemp("agent_llm")) as base:
        model_id = httpx.get(f"{base}/models", timeout=5).json()["data"][0]["id"]
        yield {"model_server": base, "model": model_id}


@pytest.fixture(scope="module")
def kb_server(demo_settings, extractive_engine) -> Iterator[str]:
    from api.main import create_app

    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        yield url


class ScriptedQwen:
    """A scripted model behind the real OpenAI chat-completions wire protocol on 127.0.0.1.

    It behaves as a capable Qwen model does under qwen-agent's Nous function-calling prompt:
    offered ``kb_answer`` in the system prompt, it replies ``<tool_call>{...}</tool_call>`` for
    the user's question; given a ``<tool_response>``, it answers from it. Streaming (SSE chunks
    ending in ``data: [DONE]``) and plain replies both work. ``requests`` holds every body.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "scripted-qwen", "object": "model"}]})

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                stand_in.requests.append(body)
                text = stand_in.reply(body["messages"])
                if not body.get("stream"):
                    self._send(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": text}}]})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
                for i, piece in enumerate(pieces + [""]):
                    delta = {"role": "assistant", "content": piece} if piece else {}
                    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece else "stop"}]}
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def _text(message: dict[str, Any]) -> str:
        content = message.get("content") or ""
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)

    def reply(self, messages: list[dict[str, Any]]) -> str:
        last = self._text(messages[-1])
        if "<tool_response>" in last:
            result = json.loads(last.split("<tool_response>")[1].split("</tool_response>")[0])
            return f"根据知识库：{result['answer']}"
        if '"name": "kb_answer"' in self._text(messages[0]):
            call = {"name": "kb_answer", "arguments": {"question": last.strip()}}
            return f"<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"
        return "I have no tool for that."

    def __enter__(self) -> "ScriptedQwen":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _assert_am_answer(text: str) -> dict[str, Any]:
    result = json.loads(text)
    assert set(result) >= {"answer", "route", "confidence", "citations", "verification"}
    assert result["route"] == "glossary"
    assert "客户经理" in result["answer"]
    assert result["citations"] and result["citations"][0]["chunk_id"] == "glossary:AM"
    assert result["verification"] == "not_applicable"
    return result


# -- the tool through qwen-agent's own registry and entry points ------------------------


def test_tool_is_registered_with_an_openai_schema() -> None:
    from qwen_agent.tools.base import TOOL_REGISTRY, BaseTool, is_tool_schema

    from api.agent import TOOL_NAME, KBAnswerTool, kb_tool_class

    assert kb_tool_class() is KBAnswerTool is TOOL_REGISTRY[TOOL_NAME]
    assert issubclass(KBAnswerTool, BaseTool)
    function = KBAnswerTool().function
    assert function["name"] == "kb_answer"
    assert is_tool_schema(function)
    assert function["parameters"]["required"] == ["question"]
    assert "abbreviations" in function["description"] and "缩略语" in function["description"]


def test_registry_instance_answers_in_process(extractive_engine) -> None:
    from qwen_agent.tools.base import TOOL_REGISTRY

    tool = TOOL_REGISTRY["kb_answer"]({"name": "kb_answer", "engine": extractive_engine})
    _assert_am_answer(tool.call(json.dumps({"question": QUESTION}, ensure_ascii=False)))  # as qwen-agent passes it
    fact = json.loads(tool.call({"question": "婚假是几天？"}))
    assert fact["route"] in {"fact", "rag"} and fact["citations"]
    assert fact["verification"] in {"verified", "corrected", "not_applicable"}


def test_tool_rejects_bad_arguments(extractive_engine) -> None:
    import jsonschema

    from api.agent import kb_tool_class
    from knowledge.errors import ValidationError

    tool = kb_tool_class()({"engine": extractive_engine})
    with pytest.raises(jsonschema.ValidationError):
        tool.call("{}")
    with pytest.raises(ValidationError, match="non-empty"):
        tool.call('{"question": "  "}')


def test_http_mode_against_the_projects_server(kb_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.agent import kb_tool_class, tool_config
    from knowledge.errors import KBError

    tool_cls = kb_tool_class()
    _assert_am_answer(tool_cls(tool_config(base_url=kb_server)).call({"question": QUESTION}))

    # With KB_CHAT_API_KEY set, the server demands it and the tool sends it from the environment.
    monkeypatch.setenv("KB_CHAT_API_KEY", "secret-1")
    _assert_am_answer(tool_cls(tool_config(base_url=kb_server)).call({"question": QUESTION}))
    with pytest.raises(KBError, match="HTTP 401"):
        tool_cls(tool_config(base_url=kb_server, api_key="wrong")).call({"question": QUESTION})
    with pytest.raises(KBError, match="HTTP 422"):
        tool_cls(tool_config(base_url=kb_server)).call({"question": "报销" * 10_000})
    with pytest.raises(KBError, match="cannot reach"):
        tool_cls(tool_config(base_url=f"http://127.0.0.1:{free_port()}", timeout=5)).call({"question": QUESTION})


def test_full_tool_loop_with_a_model_that_calls_tools(extractive_engine) -> None:
    """qwen-agent's whole loop (detect call → run tool → feed result back → final reply)."""
    from api.agent import make_assistant, openai_llm_cfg

    with ScriptedQwen() as model:
        bot = make_assistant(openai_llm_cfg(model.base_url, "scripted-qwen"), engine=extractive_engine)
        messages = bot.run_nonstream([{"role": "user", "content": QUESTION}])
    assert [m["role"] for m in messages] == ["assistant", "function", "assistant"]
    call = messages[0]["function_call"]
    assert call["name"] == "kb_answer" and json.loads(call["arguments"]) == {"question": QUESTION}
    assert messages[1]["name"] == "kb_answer"
    result = _assert_am_answer(messages[1]["content"])
    assert messages[2]["content"] == f"根据知识库：{result['answer']}"
    # The model was offered the tool's schema and got the tool's JSON back.
    assert len(model.requests) == 2
    system = ScriptedQwen._text(model.requests[0]["messages"][0])
    assert "kb_answer" in system and "缩略语" in system and '"required": ["question"]' in system
    assert "<tool_response>" in ScriptedQwen._text(model.requests[1]["messages"][-1])


# -- a real Assistant over the tiny local model ---------------------------------------


def test_assistant_call_tool_entry_point(llm_server: dict[str, str], extractive_engine) -> None:
    from api.agent import make_assistant, openai_llm_cfg

    bot = make_assistant(openai_llm_cfg(llm_server["model_server"], llm_server["model"], generate_cfg=GENERATE_CFG),
                         engine=extractive_engine)
    assert list(bot.function_map) == ["kb_answer"]
    _assert_am_answer(bot._call_tool("kb_answer", json.dumps({"question": QUESTION}, ensure_ascii=False)))
    # Tool errors go back to the LLM as text, the way qwen-agent reports them.
    assert "ValidationError" in bot._call_tool("kb_answer", '{"question": ""}')


def test_assistant_with_the_tiny_model(llm_server: dict[str, str], extractive_engine,
                                       monkeypatch: pytest.MonkeyPatch, record_property: Any) -> None:
    import qwen_agent.agents.fncall_agent as fncall_agent

    from api.agent import make_assistant, openai_llm_cfg

    # At most one tool round trip plus the final reply per run, whatever the small model does.
    monkeypatch.setattr(fncall_agent, "MAX_LLM_CALL_PER_RUN", 2)
    bot = make_assistant(openai_llm_cfg(llm_server["model_server"], llm_server["model"], generate_cfg=GENERATE_CFG),
                         engine=extractive_engine)
    prompts = [QUESTION, "Use the kb_answer tool to answer: what does AM mean?"]
    path, messages, calls, seen = "no tool call", [], [], []
    for attempt, prompt in enumerate(prompts, start=1):
        messages = bot.run_nonstream([{"role": "user", "content": prompt}])
        seen.append(messages)
        calls = [m for m in messages if m.get("function_call")]
        if calls:
            path = f"tool called on attempt {attempt}"
            break
    record_property("tiny_model_path", path)
    print(f"\n[tiny model path] {path}: {json.dumps(seen, ensure_ascii=False)[:2000]}")

    assert messages and all(m["role"] in {"assistant", "function"} for m in messages)
    if calls:
        assert calls[0]["function_call"]["name"] == "kb_answer"
        results = [m for m in messages if m["role"] == "function"]
        assert results and results[0]["name"] == "kb_answer"
        result = json.loads(results[0]["content"])
        assert result["route"] in {"glossary", "fact", "rag", "refuse"} and "answer" in result
        args = json.loads(calls[0]["function_call"]["arguments"])
        if "AM" in args.get("question", ""):
            assert "客户经理" in result["answer"]
    else:
        # Weaker, honest property: the agent ran end to end against the real server and replied
        # in text (the tool path itself is covered through qwen-agent's own entry points above).
        assert any(m["role"] == "assistant" and m.get("content") for m in messages)


def test_example_script_runs_against_both_servers(llm_server: dict[str, str], kb_server: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QWEN_AGENT_MAX_LLM_CALL_PER_RUN": "2"}
    cmd = [sys.executable, str(REPO / "examples" / "qwen_agent_assistant.py"), QUESTION,
           "--model-server", llm_server["model_server"], "--model", llm_server["model"],
           "--kb-server", kb_server, "--max-tokens", "64", "--show-tool"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert lines, out.stderr[-2000:]
    if any(ln.startswith("tool result:") for ln in lines):
        result = next(ln for ln in lines if ln.startswith("tool result:"))
        assert "route" in result


def test_llm_configs() -> None:
    from api.agent import dashscope_llm_cfg, openai_llm_cfg
    from knowledge.errors import ConfigError

    assert dashscope_llm_cfg(api_key="sk-x") == {"model": "qwen-plus", "model_type": "qwen_dashscope", "api_key": "sk-x"}
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        dashscope_llm_cfg()  # conftest clears the key
    with pytest.raises(ConfigError, match="'localhost:8080'"):
        openai_llm_cfg("localhost:8080", "m")
