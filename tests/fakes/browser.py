"""Headless Chromium driven over the DevTools protocol (a websocket; no driver binary, no
browser download): start it, open a page, type, click, drop files, evaluate JavaScript, record
every request the page makes, take screenshots.

Only Debian's ``chromium`` (or another Chromium/Chrome already on PATH) is used; nothing is
installed here. :func:`find_chromium` returns None when there is none, and the tests skip then.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium binary: ``$KB_CHROMIUM`` or the first candidate on PATH."""
    explicit = os.environ.get("KB_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process and one page (tab) attached over a flat CDP session."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, lang: str = "zh-CN",
                 timeout: float = 30) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="kb-chromium-")
        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--disable-features=Translate,MediaRouter,OptimizationHints", "--mute-audio", "--hide-scrollbars",
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                f"--lang={lang}", "about:blank"]
        self.log = open(Path(self.profile) / "chromium.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CDPError(f"chromium did not start: {self.log_tail()}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout)
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []                 # every URL the page asked for
        self.sent: list[dict[str, Any]] = []           # the requests (method, url, headers, postData)
        self.responses: list[dict[str, Any]] = []      # url, status, mimeType
        self.console: list[str] = []
        self.session: str | None = None
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "DOM"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False})

    # -- protocol ------------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True,
             timeout: float = 30) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"{method}: no answer in {timeout} s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        method = event.get("method", "")
        params = event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
            self.sent.append(params["request"])
        elif method == "Network.responseReceived":
            r = params["response"]
            self.responses.append({"url": r["url"], "status": r["status"], "mimeType": r.get("mimeType", "")})
        elif method == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        self.events.append(event)

    # -- page ----------------------------------------------------------------------------------
    def goto(self, url: str, ready: str = "document.body && document.body.dataset.ready === '1'",
             timeout: float = 30) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait(ready, timeout=timeout, what=f"page {url} ready")

    def js(self, expression: str, timeout: float = 30) -> Any:
        """Evaluate ``expression`` in the page (promises awaited); returns its JSON value."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True, "userGesture": True}, timeout=timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 30, what: str = "") -> Any:
        """Poll until ``expression`` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or expression}; "
                                     f"console: {self.console[-5:]}")
            time.sleep(0.1)

    def center(self, selector: str) -> tuple[float, float]:
        box = self.js(f"""(() => {{ const n = document.querySelector({json.dumps(selector)});
            if (!n) return null; n.scrollIntoView({{block: 'center'}}); const r = n.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        if not box:
            raise AssertionError(f"no element {selector!r} on the page")
        return box[0], box[1]

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre."""
        x, y = self.center(selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type(self, selector: str, text: str) -> None:
        """Focus an input and type ``text`` as keyboard input (IME-style insertText)."""
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                 "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13,
                                                 **({"text": "\r"} if kind == "keyDown" else {})})

    def drop_files(self, selector: str, paths: list[Path]) -> None:
        """Drag real files from disk onto an element (the drop zone), as a user does."""
        x, y = self.center(selector)
        data = {"items": [], "files": [str(Path(p).resolve()) for p in paths], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            self.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def grant_clipboard(self, origin: str) -> None:
        self.send("Browser.grantPermissions", {"origin": origin, "permissions": [
            "clipboardReadWrite", "clipboardSanitizedWrite"]}, session=False)

    def drain(self) -> None:
        """Process the events that arrived so far (a cheap round trip)."""
        self.send("Runtime.evaluate", {"expression": "1"})

    def log_tail(self) -> str:
        try:
            return (Path(self.profile) / "chromium.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
