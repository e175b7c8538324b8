"""The web console in a real browser: headless Chromium over the DevTools protocol against the
real app on 127.0.0.1 (demo knowledge base, extractive generator). Screenshots of every view go
to ``reports/screenshots/``. Every test also checks that the page asked no other address.

Skipped only when no Chromium binary exists (install Debian's ``chromium`` package).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from fakes.browser import Browser, find_chromium
from fakes.eval_report import write_eval_report
from fakes.servers import AppServer

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary on PATH (install Debian's `chromium` package, or set "
                             "KB_CHROMIUM): the browser tests of the web console were not run")

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "reports" / "screenshots"
KEY = "browser-admin-key-0123456789"
PARKING_DOC = ("# 停车管理规定\n\n"
               "第一条 员工在公司地下停车场停车的，停车费为每月150元，由财务部从当月工资中扣除。\n\n"
               "第二条 访客车辆停车免费，每次最长停放4小时。\n")
PARKING_Q = "员工停车费每月多少钱？"


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(CHROMIUM) as b:  # type: ignore[arg-type]
        yield b


@pytest.fixture(scope="module")
def chat_url(demo_settings, extractive_engine) -> Iterator[str]:
    from api.main import create_app

    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        yield url


@pytest.fixture(scope="module")
def admin_url(demo_home, tmp_path_factory) -> Iterator[str]:
    """A server over a private copy of the demo KB with the admin API on (and an eval report)."""
    from api.main import create_app
    from config.settings import Settings
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    home = tmp_path_factory.mktemp("console") / "home"
    shutil.copytree(demo_home, home, symlinks=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("KB_ADMIN_API_KEY", KEY)
    settings = Settings(home=home)
    engine = Engine(settings, IndexStore(home, settings).load(), generator=ExtractiveGenerator())
    write_eval_report(home, engine)
    try:
        with AppServer(create_app(settings, engine=engine)) as url:
            yield url
    finally:
        mp.undo()


def open_console(b: Browser, url: str, lang: str = "zh") -> None:
    """A fresh page for ``url``: empty tab session, language chosen, requests recorded from here."""
    b.goto(f"{url}/ui/")
    b.js(f"sessionStorage.clear(); localStorage.setItem('kb.lang', {json.dumps(lang)})")
    b.requests.clear()
    b.sent.clear()
    b.responses.clear()
    b.goto(f"{url}/ui/")


def assert_only_this_server(b: Browser, url: str) -> None:
    """The page asked nothing of any address but the server that served it."""
    b.drain()
    others = sorted({u for u in b.requests if not u.startswith(url + "/") and not u.startswith(("data:", "blob:"))})
    assert not others, f"the page contacted other addresses: {others}"
    assert any(u.startswith(url) for u in b.requests)


def ask(b: Browser, question: str, timeout: float = 90) -> dict[str, Any]:
    """Type a question, press Enter, wait for the streamed answer; returns what the page shows."""
    before = b.js("document.querySelectorAll('#messages [data-testid=answer], #messages [data-testid=error]').length")
    b.type("#question", question)
    b.press_enter()
    b.wait(f"document.querySelectorAll('#messages [data-testid=answer], #messages [data-testid=error]').length > {before}",
           timeout, what=f"an answer to {question!r}")
    return b.js("""(() => {
      const a = [...document.querySelectorAll('#messages [data-testid=answer], #messages [data-testid=error]')].pop();
      const all = (sel) => [...a.querySelectorAll(sel)];
      return {
        error: a.dataset.testid === 'error' ? a.textContent : null,
        route: a.dataset.route, deltas: Number(a.dataset.deltas || 0), verification: a.dataset.verification,
        text: a.querySelector('[data-testid=answer-text]')?.textContent || '',
        standalone: a.querySelector('[data-testid=standalone]')?.textContent || '',
        citations: all('[data-testid=citation]').map((c) => c.textContent),
        numbers: all('mark.num').map((m) => ({text: m.textContent, supported: m.dataset.supported === 'true', title: m.title})),
        chips: all('[data-testid=number-chip]').map((c) => ({text: c.textContent, supported: c.dataset.supported === 'true'})),
        terms: Object.fromEntries(all('[data-testid=term]').map((t) => [t.dataset.term, t.dataset.meaning])),
        termText: all('[data-testid=term]').map((t) => t.textContent),
      };
    })()""")


def chat_bodies(b: Browser) -> list[dict[str, Any]]:
    b.drain()
    return [json.loads(r["postData"]) for r in b.sent if r["url"].endswith("/v1/chat/completions") and r.get("postData")]


# --- chat -----------------------------------------------------------------------------------------
def test_chat_streams_a_cited_answer_with_verified_numbers(browser, chat_url):
    b = browser
    open_console(b, chat_url)
    ans = ask(b, "AM出差住宿标准是多少？")
    assert ans["error"] is None and ans["route"] == "fact", ans
    assert ans["deltas"] >= 1  # the text arrived as server-sent events
    stream = [r for r in b.responses if r["url"].endswith("/v1/chat/completions")]
    assert stream and stream[-1]["mimeType"] == "text/event-stream" and stream[-1]["status"] == 200
    assert "480元" in ans["text"] and ans["verification"] == "verified"
    assert any(c.startswith("[1] 差旅费管理办法.pdf") and "第2页" in c for c in ans["citations"]), ans["citations"]
    marked = {n["text"]: n for n in ans["numbers"]}
    assert marked["480元"]["supported"] and "差旅费管理办法.pdf" in marked["480元"]["title"]  # evidence on hover
    assert ans["chips"] and all(c["supported"] and c["text"].startswith("✓") for c in ans["chips"])
    assert ans["terms"]["AM"] == "客户经理" and "资产管理" in ans["termText"][0]  # the chosen meaning and the other one

    b.click("#messages mark.num.supported")  # evidence on click: the passage, its source and page
    b.wait("!document.getElementById('passage').classList.contains('hidden') && "
           "!!document.querySelector('#passage-text mark.hl-number')", 15, what="the evidence passage")
    meta = b.js("document.querySelector('[data-testid=passage-meta]').textContent")
    assert "差旅费管理办法.pdf" in meta and "第2页" in meta
    assert b.js("document.querySelector('#passage-text mark.hl-number').textContent") == "480元"
    quoted = b.js("[...document.querySelectorAll('#passage-text mark')].map((m) => m.textContent).join('')")
    assert "一类城市每晚不超过480元、在二类城市" in quoted  # the cited quote, the number inside it
    b.screenshot(SHOTS / "chat_evidence.png", full_page=False)
    b.click("#passage-close")

    b.grant_clipboard(chat_url)
    b.click("#messages [data-testid=copy]")
    b.wait("document.querySelector('#messages [data-testid=copy]').textContent === '已复制'", 10)
    copied = b.js("navigator.clipboard.readText()")
    assert copied.startswith(ans["text"]) and "[1] 差旅费管理办法.pdf" in copied
    assert_only_this_server(b, chat_url)


def test_follow_up_is_answered_with_the_conversation_history(browser, chat_url):
    b = browser
    open_console(b, chat_url)
    first = ask(b, "采购订单由谁审批？")
    assert first["error"] is None and first["citations"], first
    assert first["route"] != "rag" or first["deltas"] >= 2, first  # generated answers arrive sentence by sentence
    follow = ask(b, "PO是什么意思？")
    # The procurement question before it makes PO the purchase order, not the product owner.
    assert follow["terms"]["PO"] == "采购订单", follow
    assert follow["route"] == "glossary" and "采购订单" in follow["text"]
    bodies = chat_bodies(b)
    assert [m["role"] for m in bodies[-1]["messages"]] == ["user", "assistant", "user"]
    assert bodies[-1]["messages"][0]["content"] == "采购订单由谁审批？" and bodies[-1]["stream"] is True
    kb = b.js("JSON.parse(sessionStorage.getItem('kb.chat.v1')).pop().kb")
    if kb.get("standalone_question"):  # shown when the engine rewrote the follow-up
        assert kb["standalone_question"] in follow["standalone"]
    else:
        assert follow["standalone"] == ""

    b.goto(f"{chat_url}/ui/")  # the conversation is kept per tab
    assert b.js("document.querySelectorAll('#messages [data-testid=answer]').length") == 2
    b.screenshot(SHOTS / "chat.png")

    b.click("#new-chat")
    alone = ask(b, "PO是什么意思？")
    assert alone["terms"]["PO"] != "采购订单", alone  # without the history the other meaning wins
    assert [m["role"] for m in chat_bodies(b)[-1]["messages"]] == ["user"]

    b.click("#lang")  # English labels, same conversation
    b.wait("document.querySelector('#tab-chat').textContent === 'Ask'", 5)
    assert b.js("document.querySelector('[data-testid=route]').textContent") == "glossary"
    b.screenshot(SHOTS / "chat_en.png")
    b.click("#lang")

    error = ask(b, "报" * 4100)  # the server refuses it: a message, not a blank page
    assert error["error"] and "4000" in error["error"], error
    assert b.js("document.querySelectorAll('#messages [data-testid=answer]').length") == 1
    assert_only_this_server(b, chat_url)


def test_chat_key_is_asked_for_when_the_server_requires_one(browser, demo_home, extractive_engine, monkeypatch):
    from api.main import create_app
    from config.settings import Settings

    monkeypatch.setenv("KB_CHAT_API_KEY", "chat-key-0123456789")
    with AppServer(create_app(Settings(home=demo_home), engine=extractive_engine)) as url:
        b = browser
        open_console(b, url)
        b.type("#question", "AM是什么意思？")
        b.press_enter()
        b.wait("!!document.querySelector('.key-prompt input')", 30, what="the key prompt")
        b.type(".key-prompt input", "chat-key-0123456789")
        b.press_enter()
        b.wait("document.querySelectorAll('#messages [data-testid=answer]').length === 1", 30, what="the answer")
        assert "客户经理" in b.js("document.querySelector('[data-testid=answer-text]').textContent")
        b.drain()
        statuses = [r["status"] for r in b.responses if r["url"].endswith("/v1/chat/completions")]
        assert statuses == [401, 200]
        assert_only_this_server(b, url)


# --- administration ----------------------------------------------------------------------------------
def test_wrong_admin_key_is_refused(browser, admin_url):
    b = browser
    open_console(b, admin_url)
    b.click("#tab-admin")
    b.type("#admin-key", "not-the-key")
    b.press_enter()
    b.wait("!document.getElementById('login-error').classList.contains('hidden')", 10, what="the refusal")
    assert "管理密钥错误" in b.js("document.getElementById('login-error').textContent")
    assert b.js("document.getElementById('admin').classList.contains('hidden')")
    assert b.js("sessionStorage.getItem('kb.adminKey')") is None
    assert b.js("document.getElementById('admin-key').value") == ""
    b.drain()
    assert [r["status"] for r in b.responses if "/admin/" in r["url"]] == [401]
    b.screenshot(SHOTS / "admin_login_refused.png", full_page=False)
    assert_only_this_server(b, admin_url)


def _scanned_pdf(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Visitors: parking is free for up to 4 hours.")
    doc.new_page()  # no text layer, as a scanned page without OCR
    doc.save(path)
    doc.close()
    return path


def test_admin_uploads_reindexes_and_the_new_document_answers(browser, admin_url, tmp_path):
    b = browser
    open_console(b, admin_url)
    b.click("#tab-admin")
    b.type("#admin-key", KEY)
    b.press_enter()
    b.wait("document.querySelectorAll('[data-testid=document]').length === 6", 15, what="the document list")
    assert KEY not in b.js("document.documentElement.outerHTML")  # kept in the tab's session, not in the page

    doc = tmp_path / "停车管理规定.md"
    doc.write_text(PARKING_DOC, encoding="utf-8")
    b.drop_files("#dropzone", [doc, _scanned_pdf(tmp_path / "访客须知.pdf")])
    b.wait("document.querySelectorAll('[data-testid=upload-result][data-status]').length === 2", 30, what="upload results")
    results = b.js("Object.fromEntries([...document.querySelectorAll('[data-testid=upload-result]')]"
                   ".map((r) => [r.dataset.name, {status: r.dataset.status, text: r.textContent}]))")
    assert results["停车管理规定.md"]["status"] == "stored" and "已保存" in results["停车管理规定.md"]["text"]
    assert results["访客须知.pdf"]["status"] == "stored" and "scanned" in results["访客须知.pdf"]["text"]
    b.wait("document.querySelector('[data-testid=document][data-name=\"停车管理规定.md\"]')?.dataset.state === 'new'", 10)

    b.click("#job-reindex")
    b.wait("document.querySelector('[data-testid=job-state]')?.dataset.state === 'succeeded'", 90, what="the reindex")
    assert "serving" in b.js("document.querySelector('[data-testid=job-log]').textContent")
    assert b.js("document.querySelector('[data-testid=job-progress]').value") == 100
    b.wait("document.querySelector('[data-testid=document][data-name=\"停车管理规定.md\"]')?.dataset.state === 'indexed'", 10)
    b.screenshot(SHOTS / "admin_documents.png")

    b.click("[data-admin-section=versions]")
    b.wait("document.querySelectorAll('[data-testid=index-version]').length === 2", 10)
    assert b.js("document.querySelector('[data-testid=index-version]').dataset.current") == "true"
    b.screenshot(SHOTS / "admin_versions.png", full_page=False)

    b.click("[data-admin-section=glossary]")
    b.wait("document.querySelectorAll('[data-testid=glossary-row]').length > 40", 10, what="the glossary table")
    b.type("#gl-new-term", "ZQX")
    b.type("#gl-new-english", "Zebra Quality eXchange")
    b.type("#gl-new-chinese", "斑马质量交换")
    b.press_enter()
    assert b.js("document.querySelector('[data-testid=glossary-row]').dataset.term") == "ZQX"
    b.screenshot(SHOTS / "admin_glossary.png", full_page=False)
    b.click("#gl-save")
    b.wait("!!document.querySelector('[data-testid=glossary-saved]')", 15, what="the saved glossary version")
    assert "v0001" in b.js("document.querySelector('[data-testid=glossary-saved]').textContent")
    assert b.js("document.querySelector('[data-testid=glossary-published]').dataset.published") == "false"

    b.click("[data-admin-section=eval]")
    b.wait("!!document.querySelector('[data-testid=eval-summary]')", 10, what="the eval summary")
    assert b.js("document.querySelector('[data-testid=eval-summary]').textContent").count("overall accuracy") == 1
    b.click("#ev-open")
    b.wait("document.getElementById('ev-frame').dataset.loaded === '1'", 10, what="the report in its frame")
    assert "<svg" in b.js("document.getElementById('ev-frame').srcdoc")
    time.sleep(1.5)  # the sandboxed frame paints on its own (an out-of-process frame): let it, for the picture
    b.screenshot(SHOTS / "admin_eval.png", full_page=False)

    b.click("#tab-chat")
    ans = ask(b, PARKING_Q)
    assert ans["error"] is None and "150元" in ans["text"], ans
    assert any("停车管理规定.md" in c for c in ans["citations"])
    assert any(n["text"] == "150元" and n["supported"] for n in ans["numbers"])
    b.screenshot(SHOTS / "chat_new_document.png", full_page=False)
    assert_only_this_server(b, admin_url)
