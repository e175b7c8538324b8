"""The endpoints behind the web console, over a real uvicorn server on 127.0.0.1: the static
page and its security headers, passage lookup, the document list, index and adapter versions
with publish and rollback (and the hot swap), the editable glossary, the latest eval report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.eval_report import write_eval_report
from fakes.servers import AppServer

KEY = "console-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PARKING_DOC = ("# 停车管理规定\n\n第一条 员工在公司地下停车场停车的，停车费为每月150元，由财务部从当月工资中扣除。\n").encode()
PARKING_Q = "员工停车费每月多少钱？"
STATIC = Path(__file__).resolve().parents[2] / "api" / "console" / "static"


def _app(home: Path) -> Any:
    from api.main import create_app
    from config.settings import Settings
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    settings = Settings(home=home)
    return create_app(settings, engine=Engine(settings, IndexStore(home, settings).load(), generator=ExtractiveGenerator()))


@pytest.fixture()
def admin_url(copy_home, monkeypatch):
    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)
    with AppServer(_app(copy_home)) as url:
        yield url


def _scanned_pdf(pages_with_text: int, blank_pages: int) -> bytes:
    """A PDF whose blank pages have no text layer, as a scan without OCR has none."""
    import pymupdf

    doc = pymupdf.open()
    for _ in range(pages_with_text):
        doc.new_page().insert_text((72, 72), "Parking rules: visitors park free for 4 hours.")
    for _ in range(blank_pages):
        doc.new_page()
    data = doc.tobytes()
    doc.close()
    return data


def _reindex(url: str) -> dict[str, Any]:
    import time

    job = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={"full": False}).json()
    deadline = time.time() + 60
    while job["state"] in ("queued", "running"):
        assert time.time() < deadline, job
        time.sleep(0.2)
        job = httpx.get(f"{url}/admin/jobs/{job['id']}", headers=AUTH).json()
    assert job["state"] == "succeeded", job
    return job


# --- the page itself ------------------------------------------------------------------------------
def test_console_page_is_served_with_a_same_origin_policy(demo_settings, extractive_engine):
    from api.main import create_app

    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        root = httpx.get(f"{url}/")
        assert root.status_code in (302, 307) and root.headers["location"] == "/ui/"
        page = httpx.get(f"{url}/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
        for name in ("app.js", "chat.js", "admin.js", "i18n.js", "util.js", "passage.js", "app.css"):
            r = httpx.get(f"{url}/ui/{name}")
            assert r.status_code == 200 and r.headers["content-security-policy"] == csp, name
        assert httpx.get(f"{url}/ui/../../pyproject.toml").status_code == 404
        assert httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60).json()["standalone_question"] == ""


def test_static_files_reference_no_other_address():
    """Nothing in the console names another host: no CDN, font, or script from the network."""
    files = sorted(p for p in STATIC.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css", "i18n.js"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text and "<script>" not in text, path.name  # no inline or imported code
    assert sum(p.stat().st_size for p in files) < 120_000  # the whole console, no dependency


def test_static_files_ship_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    conf = tomllib.loads((STATIC.parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "console/static/*" in conf["tool"]["setuptools"]["package-data"]["api"]
    assert (STATIC.parent / "__init__.py").is_file()  # a package, so setuptools finds it


def test_passage_lookup(demo_settings, extractive_engine, demo_index):
    from api.main import create_app

    chunk = next(c for c in demo_index.chunks if c.page)
    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        body = httpx.get(f"{url}/api/chunks/{chunk.chunk_id}").json()
        assert body == {"chunk_id": chunk.chunk_id, "kind": "chunk", "source": chunk.source, "page": chunk.page,
                        "heading_path": chunk.heading_path, "text": chunk.text, "index_version": demo_index.version}
        gloss = httpx.get(f"{url}/api/chunks/glossary:PM").json()
        assert gloss["kind"] == "glossary" and "产品经理" in gloss["text"] and "项目经理" in gloss["text"]
        assert httpx.get(f"{url}/api/chunks/nosuchchunk-0001").status_code == 404
        assert httpx.get(f"{url}/api/chunks/glossary:NOSUCH").status_code == 404


# --- documents, uploads, index versions ---------------------------------------------------------
def test_documents_uploads_and_index_rollback(admin_url, copy_home):
    url = admin_url
    assert httpx.get(f"{url}/admin/documents").status_code == 401
    listed = httpx.get(f"{url}/admin/documents", headers=AUTH).json()
    v0 = listed["index_version"]
    rows = {d["name"]: d for d in listed["documents"]}
    assert len(rows) == 6 and all(d["state"] == "indexed" and d["since"] == v0 for d in rows.values())
    assert rows["差旅费管理办法.pdf"]["chunks"] > 0 and rows["差旅费管理办法.pdf"]["facts"] > 0

    def upload(name: str, data: bytes) -> dict[str, Any]:
        r = httpx.post(f"{url}/admin/documents", headers=AUTH, files=[("files", (name, data))])
        assert r.status_code == 201, r.text
        return r.json()["stored"][0]

    assert upload("停车管理规定.md", PARKING_DOC)["status"] == "stored"
    assert upload("停车管理规定.md", PARKING_DOC)["status"] == "unchanged"
    again = upload("差旅费管理办法.pdf", (copy_home / "documents" / "差旅费管理办法.pdf").read_bytes())
    assert again["status"] == "unchanged" and again["warnings"] == []
    half = upload("访客须知.pdf", _scanned_pdf(1, 1))
    assert half["status"] == "stored" and any("page(s) 2" in w and "scanned" in w for w in half["warnings"]), half
    scan = upload("扫描件.pdf", _scanned_pdf(0, 2))
    assert any(w.startswith("will not be indexed") and "no text layer" in w for w in scan["warnings"]), scan
    states = {d["name"]: d["state"] for d in httpx.get(f"{url}/admin/documents", headers=AUTH).json()["documents"]}
    assert states["停车管理规定.md"] == "new" and states["差旅费管理办法.pdf"] == "indexed"

    v1 = _reindex(url)["result"]["version"]
    docs = {d["name"]: d for d in httpx.get(f"{url}/admin/documents", headers=AUTH).json()["documents"]}
    assert docs["停车管理规定.md"]["state"] == "indexed" and docs["停车管理规定.md"]["since"] == v1
    assert docs["差旅费管理办法.pdf"]["since"] == v0  # unchanged content: served since the first version
    assert docs["扫描件.pdf"]["state"] == "failed" and "no text layer" in docs["扫描件.pdf"]["error"]
    assert any("scanned" in w for w in docs["访客须知.pdf"]["warnings"])

    versions = httpx.get(f"{url}/admin/indexes", headers=AUTH).json()
    assert versions["current"] == v1 and [v["version"] for v in versions["versions"]] == [v1, v0]
    assert versions["versions"][0]["previous"] == v0 and versions["versions"][0]["documents"] == 8

    assert "150" in httpx.post(f"{url}/api/ask", json={"question": PARKING_Q}, timeout=60).json()["answer"]
    back = httpx.post(f"{url}/admin/indexes/rollback", headers=AUTH)
    assert back.status_code == 200 and back.json() == {"artifact": "index", "version": v0, "previous": v1, "serving": v0}
    assert httpx.get(f"{url}/healthz").json()["index_version"] == v0
    assert "150" not in httpx.post(f"{url}/api/ask", json={"question": PARKING_Q}, timeout=60).json()["answer"]
    assert httpx.get(f"{url}/admin/documents", headers=AUTH).json()["documents"][0]["state"] in ("indexed", "new")
    nothing = httpx.post(f"{url}/admin/indexes/rollback", headers=AUTH)
    assert nothing.status_code == 400 and "no earlier version" in nothing.json()["detail"]

    forward = httpx.post(f"{url}/admin/indexes/{v1}/publish", headers=AUTH).json()
    assert forward["serving"] == v1 and httpx.get(f"{url}/healthz").json()["index_version"] == v1
    assert httpx.post(f"{url}/admin/indexes/nosuch/publish", headers=AUTH).status_code == 404
    assert httpx.post(f"{url}/admin/indexes/..%2F..%2Fjobs.sqlite3/publish", headers=AUTH).status_code == 404


def test_adapter_versions_publish_and_rollback(admin_url, copy_home, tmp_path):
    from router.adapters import AdapterStore

    url = admin_url
    assert httpx.get(f"{url}/admin/adapters", headers=AUTH).json() == {"current": None, "serving_router": "signals",
                                                                       "versions": []}
    store = AdapterStore(copy_home)
    candidate = tmp_path / "out"
    candidate.mkdir()
    (candidate / "adapter_config.json").write_text('{"r": 8}', encoding="utf-8")
    first = store.add(candidate, {"route_accuracy": 0.8}, status="published")
    store.publish(first)
    second = store.add(candidate, {"route_accuracy": 0.7}, status="rejected")
    listed = httpx.get(f"{url}/admin/adapters", headers=AUTH).json()
    assert [v["version"] for v in listed["versions"]] == [second, first] and listed["current"] == first
    assert listed["versions"][0]["metrics"]["route_accuracy"] == 0.7 and listed["versions"][0]["status"] == "rejected"

    forced = httpx.post(f"{url}/admin/adapters/{second}/publish", headers=AUTH).json()
    assert forced == {"artifact": "adapter", "version": second, "previous": first, "serving": None}
    assert store.current() == second
    back = httpx.post(f"{url}/admin/adapters/rollback", headers=AUTH).json()
    assert back["version"] == first and store.current() == first
    assert httpx.post(f"{url}/admin/adapters/v9999/publish", headers=AUTH).status_code == 400


# --- glossary -------------------------------------------------------------------------------------
def test_glossary_edit_saves_a_new_version_through_the_import_path(admin_url, copy_home):
    url = admin_url
    table = httpx.get(f"{url}/admin/glossary", headers=AUTH).json()
    assert table["published"] is True and table["versions"] == []
    assert [f["name"] for f in table["files"]] == ["缩略语表.xlsx"]
    entries = {e["term"]: e for e in table["entries"]}
    assert {m["chinese"] for m in entries["PO"]["meanings"]} == {"采购订单", "产品负责人"}

    entries.pop("KPI")                                                     # delete a term
    entries["PO"]["meanings"] = [m for m in entries["PO"]["meanings"] if m["chinese"] == "采购订单"]  # delete a meaning
    entries["AM"]["meanings"][0]["chinese"] = "客户经理（销售）"                # edit a meaning
    entries["ZQX"] = {"term": "ZQX", "meanings": [{"english": "Zebra Quality eXchange", "chinese": "斑马质量交换"}]}
    body = {"entries": list(entries.values()), "base_revision": table["revision"], "comment": "console test"}
    saved = httpx.put(f"{url}/admin/glossary", headers=AUTH, json=body)
    assert saved.status_code == 200, saved.text
    version = saved.json()
    assert version["version"] == "v0001" and version["terms"] == len(entries) and version["replaced"] == ["缩略语表.xlsx"]
    assert sorted(p.name for p in (copy_home / "glossary").iterdir()) == ["glossary.json"]
    assert (copy_home / "glossary_versions" / "v0001" / "replaced" / "缩略语表.xlsx").is_file()

    stale = httpx.put(f"{url}/admin/glossary", headers=AUTH, json=body)
    assert stale.status_code == 409 and "changed since" in stale.json()["detail"]
    bad = httpx.put(f"{url}/admin/glossary", headers=AUTH, json={"entries": [{"term": "X", "meanings": [{}]}]})
    assert bad.status_code == 422 and "no meaning" in bad.json()["detail"]
    assert httpx.put(f"{url}/admin/glossary", headers=AUTH, json={"entries": [{"term": "X", "meanings": []}]}).status_code == 422

    after = httpx.get(f"{url}/admin/glossary", headers=AUTH).json()
    assert after["published"] is False and after["revision"] == version["revision"] and len(after["versions"]) == 1
    assert "ZQX" in {e["term"] for e in after["entries"]} and "KPI" not in {e["term"] for e in after["entries"]}
    assert httpx.get(f"{url}/api/glossary/ZQX").status_code == 404  # serving index unchanged until a reindex

    _reindex(url)
    assert httpx.get(f"{url}/admin/glossary", headers=AUTH).json()["published"] is True
    assert httpx.get(f"{url}/api/glossary/ZQX").json()["meanings"][0]["chinese"] == "斑马质量交换"
    assert httpx.get(f"{url}/api/glossary/KPI").status_code == 404
    assert [m["chinese"] for m in httpx.get(f"{url}/api/glossary/PO").json()["meanings"]] == ["采购订单"]
    assert httpx.get(f"{url}/api/glossary/AM").json()["meanings"][0]["chinese"] == "客户经理（销售）"


# --- evaluation report ------------------------------------------------------------------------------
def test_latest_eval_report(admin_url, copy_home, extractive_engine):
    url = admin_url
    missing = httpx.get(f"{url}/admin/eval", headers=AUTH)
    assert missing.status_code == 404 and "kb eval" in missing.json()["detail"]
    folder = write_eval_report(copy_home, extractive_engine)
    report = httpx.get(f"{url}/admin/eval", headers=AUTH).json()
    assert report["report_dir"] == str(folder.resolve()) and report["has_html"] and report["written_at"]
    rows = {r["metric"]: r for r in report["summary"]}
    assert 0 <= rows["overall accuracy"]["values"]["ours"] <= 1 and rows["latency p50 ms (all)"]["kind"] == "ms"
    html = httpx.get(f"{url}/admin/eval/report.html", headers=AUTH)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    assert httpx.get(f"{url}/admin/eval/report.html").status_code == 401
