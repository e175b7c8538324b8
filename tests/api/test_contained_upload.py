"""A hostile spreadsheet uploaded to a running server: the upload answers promptly, /healthz
answers in under 2 s all the while, and the server is healthy afterwards.

The server (uvicorn on 127.0.0.1) reads uploads in a limited child process only; the second
test switches the sheet budget off, so the file really is slow to read, and shows that the
wall-clock limit (``ingest.parse_timeout_s``) is what ends it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.hostile_files import hostile_xlsx
from fakes.servers import AppServer

KEY = "admin-contained-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
HEALTH_S = 2.0


def _app(home: Path, **ingest: object):
    from api.main import create_app
    from config.settings import IngestSettings, Settings
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    settings = Settings(home=home, ingest=IngestSettings(**ingest))
    engine = Engine(settings, IndexStore(home, settings).load(), generator=ExtractiveGenerator())
    return create_app(settings, engine=engine)


def _upload_while_probing(url: str, route: str, name: str, data: bytes) -> tuple[httpx.Response, float, list[float]]:
    """POST the file in a thread and time /healthz until it answers: ``(response, seconds, probes)``."""
    box: dict[str, Any] = {}

    def post() -> None:
        started = time.monotonic()
        try:
            box["response"] = httpx.post(f"{url}{route}", headers=AUTH, files=[("files", (name, data))], timeout=120)
        finally:
            box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=post)
    thread.start()
    probes: list[float] = []
    while thread.is_alive() and len(probes) < 600:
        started = time.monotonic()
        health = httpx.get(f"{url}/healthz", timeout=30)
        probes.append(time.monotonic() - started)
        assert health.status_code == 200
        time.sleep(0.2)
    thread.join(timeout=130)
    return box["response"], box["seconds"], probes


@pytest.fixture()
def admin_env(monkeypatch):
    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)


def test_hostile_spreadsheet_upload_answers_and_health_stays_fast(copy_home, admin_env, tmp_path):
    data = hostile_xlsx(tmp_path / "wide.xlsx").read_bytes()     # 20,000 one-cell rows under A1:XFD20000
    with AppServer(_app(copy_home)) as url:
        response, seconds, probes = _upload_while_probing(url, "/admin/documents", "wide.xlsx", data)
        assert response.status_code == 201, response.text
        assert seconds < 45 and probes and max(probes) < HEALTH_S, (seconds, probes)
        item = response.json()["stored"][0]
        assert item["status"] == "stored" and any("declares 327680000 cells" in w for w in item["warnings"]), item

        response, seconds, probes = _upload_while_probing(url, "/admin/glossary", "wide.xlsx", data)
        assert response.status_code == 422 and "no glossary entries" in response.text, response.text
        assert seconds < 45 and max(probes, default=0) < HEALTH_S, (seconds, probes)

        health = httpx.get(f"{url}/healthz", timeout=HEALTH_S).json()
        assert health["status"] == "ok"
        assert httpx.post(f"{url}/api/ask", json={"question": "出差住宿标准是多少？"}, timeout=60).status_code == 200
    assert (copy_home / "documents" / "wide.xlsx").is_file()


def test_a_file_slow_to_read_is_cut_by_the_wall_clock_limit(copy_home, admin_env, tmp_path):
    # One cell in the last column of every row: 327 million cells once padded, and no budget.
    data = hostile_xlsx(tmp_path / "far.xlsx", column="XFD").read_bytes()
    with AppServer(_app(copy_home, max_sheet_cells=10**12, parse_timeout_s=3)) as url:
        response, seconds, probes = _upload_while_probing(url, "/admin/documents", "far.xlsx", data)
        assert response.status_code == 201, response.text
        assert seconds < 20 and max(probes, default=0) < HEALTH_S, (seconds, probes)
        warnings = response.json()["stored"][0]["warnings"]
        assert any("not previewed" in w and "ingest.parse_timeout_s" in w for w in warnings), warnings

        response, seconds, probes = _upload_while_probing(url, "/admin/glossary", "far.xlsx", data)
        assert response.status_code == 422 and "ingest.parse_timeout_s" in response.text, response.text
        assert seconds < 20 and max(probes, default=0) < HEALTH_S, (seconds, probes)
        assert httpx.get(f"{url}/healthz", timeout=HEALTH_S).json()["status"] == "ok"
