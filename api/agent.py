"""Qwen-Agent integration: the ``kb_answer`` tool and an ``Assistant`` that calls it.

The tool answers from the knowledge base through the same ``answer()`` the HTTP API and the CLI
use, in one of two modes chosen by the tool config:

- in process: ``{"name": "kb_answer", "engine": engine}`` (or no config: the process-wide engine
  from :func:`api.state.get_engine`);
- against a running server: ``{"name": "kb_answer", "base_url": "http://host:8000"}`` posts to
  ``/api/ask`` with httpx (API key from the config or ``KB_CHAT_API_KEY``).

qwen-agent is an optional extra (``pip install 'kb-assistant[agent]'``): it is imported only when a
function here needs it, and the tool class is defined and registered on first use, so importing
``api`` or this module never requires it.

Example::

    from api.agent import make_assistant, openai_llm_cfg
    bot = make_assistant(openai_llm_cfg("http://127.0.0.1:8080/v1", "qwen2.5-7b-instruct"))
    *_, reply = bot.run([{"role": "user", "content": "AM是什么意思？"}])
    print(reply[-1]["content"])
"""

from __future__ import annotations

import json
import os
from typing import Any

from knowledge.core.errors import ConfigError, KBError, MissingExtraError, ValidationError
from api.state import answer
from config import get_settings
import httpx

TOOL_NAME = "kb_answer"
TOOL_DESCRIPTION = (
    "Answers questions about company policies and rules, abbreviations and terminology, and numbers "
    "(amounts, limits, days, percentages) from the company knowledge base; returns the answer with its "
    "route, source citations and number-verification status. "
    "根据公司知识库回答关于公司制度与规定、缩略语与术语、数字（金额、标准、天数、比例）的问题，"
    "返回答案、路由、引用来源和数字核验状态。"
)
TOOL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {
            "type": "string",
            "description": "The user's question, in the user's own words and language. 用户的原始问题。",
        }
    },
    "required": ["question"],
}
SYSTEM_MESSAGE = (
    "You are the company knowledge assistant. For any question about company policies, abbreviations "
    "or numbers, call the kb_answer tool and answer only from its result, keeping its citations; "
    "if it says the knowledge base does not contain the answer, say so instead of guessing.\n"
    "你是公司知识助手。凡是关于公司制度、缩略语或数字的问题，先调用 kb_answer 工具，只依据其结果作答并保留引用；"
    "若工具表示知识库中没有答案，如实告知，不要猜测。"
)
CHAT_KEY_ENV = "KB_CHAT_API_KEY"

_TOOL_CLASS: type | None = None


def tool_result(answer: dict[str, Any]) -> str:
    """The tool's JSON text for one answer object: what an agent LLM needs, nothing more.

    >>> tool_result({"answer": "AM 指 客户经理。", "route": "glossary", "confidence": 0.9,
    ...              "citations": [], "verification": {"status": "not_applicable", "numbers": []},
    ...              "timings_ms": {"total": 3.0}})
    '{"answer": "AM 指 客户经理。", "route": "glossary", "confidence": 0.9, "citations": [], "verification": "not_applicable"}'
    """
    verification = answer.get("verification") or {}
    out = {
        "answer": answer.get("answer", ""),
        "route": answer.get("route", ""),
        "confidence": answer.get("confidence"),
        "citations": answer.get("citations", []),
        "verification": verification.get("status", "not_applicable"),
    }
    if answer.get("standalone_question"):
        out["standalone_question"] = answer["standalone_question"]
    unsupported = [n.get("text") for n in verification.get("numbers", []) if not n.get("supported", True)]
    if unsupported:
        out["unsupported_numbers"] = unsupported
    return json.dumps(out, ensure_ascii=False)


def history_from_messages(messages: Any) -> list[dict[str, str]]:
    """The conversation before the agent's current turn, as the engine's ``history``: the text of the
    user and assistant messages up to (not including) the last user message; tool calls and their
    results are left out.

    >>> history_from_messages([{"role": "user", "content": "一类城市住宿多少？"},
    ...                        {"role": "assistant", "content": "480元。"}, {"role": "user", "content": "那二类呢？"}])
    [{'role': 'user', 'content': '一类城市住宿多少？'}, {'role': 'assistant', 'content': '480元。'}]
    """
    turns: list[dict[str, str]] = []
    for m in messages or []:
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if role not in ("user", "assistant"):
            continue
        if isinstance(content, list):  # qwen-agent ContentItem lists
            content = "".join(str(c.get("text", "") if isinstance(c, dict) else getattr(c, "text", "") or "")
                              for c in content)
        if isinstance(content, str) and content.strip():
            turns.append({"role": role, "content": content.strip()})
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    return turns[:last_user] if last_user is not None else turns


def ask_in_process(question: str, engine: Any = None, history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Answer with ``engine`` (an :class:`router.engine.Engine`), or the process-wide engine."""
    if engine is None:
        return answer(question, history or None)
    return engine.answer(question, history or None).to_dict()


def ask_http(question: str, base_url: str, api_key: str | None = None, timeout: float = 120.0,
             history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """POST ``question`` (and the conversation so far) to a running server's ``/api/ask`` and return
    its answer object.

    ``api_key`` defaults to ``KB_CHAT_API_KEY``; failures raise ``KBError`` naming the URL and status.
    """

    url = base_url.rstrip("/") + "/api/ask"
    key = api_key if api_key is not None else os.environ.get(CHAT_KEY_ENV)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.post(url, json={"question": question, "history": history or []}, headers=headers,
                          timeout=timeout)
    except httpx.HTTPError as exc:
        raise KBError(f"cannot reach the knowledge-base server at {url}: {exc}") from exc
    if resp.status_code != 200:
        raise KBError(f"knowledge-base server {url} answered HTTP {resp.status_code}: {_detail(resp)}")
    return resp.json()


def _detail(resp: Any) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:300]
    except ValueError:
        return resp.text[:300]


def _import_qwen_agent() -> Any:
    # qwen-agent writes its workspace (doc-parser caches) under the current directory unless told
    # otherwise; keep it in the project's cache instead. Must be set before its settings import.
    if "QWEN_AGENT_DEFAULT_WORKSPACE" not in os.environ:
        os.environ["QWEN_AGENT_DEFAULT_WORKSPACE"] = str(get_settings().cache_dir / "qwen_agent")
    try:
        import qwen_agent.tools.base as tools_base  # deferred: optional extra [agent]
    except ImportError as exc:  # also missing undeclared deps: soundfile, python-dateutil
        raise MissingExtraError(f"qwen-agent ({exc.name or exc})", "agent") from exc
    return tools_base


def kb_tool_class() -> type:
    """The ``kb_answer`` tool class, defined and registered with qwen-agent on first call."""
    global _TOOL_CLASS
    if _TOOL_CLASS is not None:
        return _TOOL_CLASS
    tools_base = _import_qwen_agent()
    existing = tools_base.TOOL_REGISTRY.get(TOOL_NAME)
    if existing is not None:
        # Registered by an earlier import of this module (e.g. a reload): reuse it; a foreign
        # tool of the same name is an error rather than a silent swap.
        if existing.__module__ != __name__:
            raise KBError(f"another qwen-agent tool is already registered as {TOOL_NAME!r}: {existing!r}")
        _TOOL_CLASS = existing
        return existing

    @tools_base.register_tool(TOOL_NAME)
    class KBAnswerTool(tools_base.BaseTool):
        """qwen-agent tool: answer a question from the knowledge base (cfg: engine | base_url, api_key, timeout)."""

        description = TOOL_DESCRIPTION
        parameters = TOOL_PARAMETERS

        def call(self, params: str | dict, **kwargs: Any) -> str:
            args = self._verify_json_format_args(params)
            question = args.get("question")
            if not isinstance(question, str) or not question.strip():
                raise ValidationError(f"kb_answer needs a non-empty 'question' string, got {question!r}")
            # qwen-agent passes the conversation to tools: a follow-up the agent forwards verbatim
            # ("那二类城市呢？") is resolved against it like on every other interface.
            history = history_from_messages(kwargs.get("messages"))
            base_url = self.cfg.get("base_url")
            if base_url:
                answer = ask_http(question, base_url, self.cfg.get("api_key"), self.cfg.get("timeout", 120.0),
                                  history=history)
            else:
                answer = ask_in_process(question, self.cfg.get("engine"), history=history)
            return tool_result(answer)

    _TOOL_CLASS = KBAnswerTool
    return KBAnswerTool


def __getattr__(name: str) -> Any:
    # ``from api.agent import KBAnswerTool`` works, importing qwen-agent only then.
    if name == "KBAnswerTool":
        return kb_tool_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tool_config(engine: Any = None, base_url: str | None = None, api_key: str | None = None,
                timeout: float = 120.0) -> dict[str, Any]:
    """The ``function_list`` entry for the tool: in process (``engine``) or HTTP (``base_url``).

    >>> tool_config(base_url="http://127.0.0.1:8000")
    {'name': 'kb_answer', 'base_url': 'http://127.0.0.1:8000', 'timeout': 120.0}
    """
    if engine is not None and base_url:
        raise ConfigError("kb_answer takes an engine (in process) or a base_url (HTTP), not both")
    cfg: dict[str, Any] = {"name": TOOL_NAME}
    if engine is not None:
        cfg["engine"] = engine
    if base_url:
        cfg["base_url"] = base_url
        cfg["timeout"] = timeout
        if api_key:
            cfg["api_key"] = api_key
    return cfg


def dashscope_llm_cfg(model: str = "qwen-plus", api_key: str | None = None,
                      generate_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """qwen-agent LLM config for DashScope Qwen; the key comes from ``DASHSCOPE_API_KEY`` by default."""
    if api_key is None:
        secret = get_settings().dashscope_api_key
        api_key = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    if not api_key:
        raise ConfigError("DashScope needs an API key: set DASHSCOPE_API_KEY")
    cfg: dict[str, Any] = {"model": model, "model_type": "qwen_dashscope", "api_key": api_key}
    if generate_cfg:
        cfg["generate_cfg"] = dict(generate_cfg)
    return cfg


def openai_llm_cfg(model_server: str, model: str, api_key: str = "EMPTY",
                   generate_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """qwen-agent LLM config for any OpenAI-compatible server (vLLM, llama.cpp, Ollama, ...).

    >>> openai_llm_cfg("http://127.0.0.1:8080/v1", "qwen2.5")
    {'model': 'qwen2.5', 'model_server': 'http://127.0.0.1:8080/v1', 'api_key': 'EMPTY'}
    """
    if not model_server.startswith(("http://", "https://")):
        raise ConfigError(f"model_server must be an http(s) URL ending in /v1, got {model_server!r}")
    cfg: dict[str, Any] = {"model": model, "model_server": model_server, "api_key": api_key}
    if generate_cfg:
        cfg["generate_cfg"] = dict(generate_cfg)
    return cfg


def make_assistant(llm_cfg: dict[str, Any] | Any, *, engine: Any = None, base_url: str | None = None,
                   api_key: str | None = None, system_message: str = SYSTEM_MESSAGE, **kwargs: Any) -> Any:
    """A qwen-agent ``Assistant`` whose only tool is ``kb_answer``.

    ``llm_cfg`` is a qwen-agent LLM config (:func:`dashscope_llm_cfg`, :func:`openai_llm_cfg`) or
    LLM object. The tool answers in process (``engine``, default the process-wide engine) or from
    the server at ``base_url``. Extra keyword arguments go to ``Assistant``.
    """
    kb_tool_class()  # registers the tool before the Assistant looks it up by name
    from qwen_agent.agents import Assistant  # deferred: optional extra [agent]

    cfg = tool_config(engine=engine, base_url=base_url, api_key=api_key)
    function_list: list[Any] = [cfg] if len(cfg) > 1 else [TOOL_NAME]
    return Assistant(function_list=function_list, llm=llm_cfg, system_message=system_message, **kwargs)
