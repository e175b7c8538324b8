"""Ask the knowledge base one question through a Qwen-Agent ``Assistant`` that calls ``kb_answer``.

The agent's LLM is either DashScope Qwen (default; needs DASHSCOPE_API_KEY) or any
OpenAI-compatible server (``--model-server http://127.0.0.1:8080/v1``, e.g. vLLM, Ollama or
``python -m llama_cpp.server``). The tool answers in this process from the published index
(KB_HOME), or from a running ``kb serve`` when ``--kb-server`` is given.

    python examples/qwen_agent_assistant.py "AM是什么意思？"
    python examples/qwen_agent_assistant.py --model-server http://127.0.0.1:8080/v1 --model qwen2.5-7b-instruct \
        --kb-server http://127.0.0.1:8000 "出差住宿标准是多少？"
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("question", nargs="?", default="AM是什么意思？", help="the question to ask")
    p.add_argument("--model-server", default="",
                   help="OpenAI-compatible base URL ending in /v1; default: DashScope (DASHSCOPE_API_KEY)")
    p.add_argument("--model", default="", help="model name (default qwen-plus on DashScope; the server's model otherwise)")
    p.add_argument("--api-key", default="EMPTY", help="API key of the OpenAI-compatible server")
    p.add_argument("--kb-server", default="", help="base URL of a running kb server; default: answer in this process")
    p.add_argument("--max-tokens", type=int, default=512, help="max tokens per LLM reply")
    p.add_argument("--show-tool", action="store_true", help="also print the tool calls and results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from api.agent import dashscope_llm_cfg, make_assistant, openai_llm_cfg

    args = parse_args(argv)
    generate_cfg = {"max_tokens": args.max_tokens, "temperature": 0.1}
    if args.model_server:
        llm_cfg = openai_llm_cfg(args.model_server, args.model or "default", args.api_key, generate_cfg)
    else:
        llm_cfg = dashscope_llm_cfg(args.model or "qwen-plus", generate_cfg=generate_cfg)
    bot = make_assistant(llm_cfg, base_url=args.kb_server or None)

    messages = bot.run_nonstream([{"role": "user", "content": args.question}])
    if args.show_tool:
        for msg in messages:
            if msg.get("function_call"):
                print("tool call:", json.dumps(msg["function_call"], ensure_ascii=False))
            elif msg.get("role") == "function":
                print("tool result:", msg.get("content"))
    replies = [m for m in messages if m.get("role") == "assistant" and m.get("content")]
    print(replies[-1]["content"] if replies else "(the agent gave no text reply)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
