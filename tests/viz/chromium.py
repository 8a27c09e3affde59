"""A headless Chromium driven over the DevTools protocol, for checking pages the library writes.

Why this and not Selenium or Playwright: both need a driver that is not here
offline (Selenium Manager and `playwright install` download one), while the
DevTools protocol over `--remote-debugging-pipe` needs only Debian's
`chromium` and the standard library: no websocket client, no port to pick
(so parallel test workers cannot collide).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL = "apt-get install -y chromium"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class ProtocolError(RuntimeError):
    pass


class Chromium:
    """One headless browser; `open` gives a fresh tab per page. Use as a context manager."""

    def __init__(self, executable: str, timeout: float = 30.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="detr-chromium-")
        # The protocol pipe is fd 3 (commands to the browser) and fd 4 (its replies).
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def pipes_to_3_and_4():
            # Copy above 10 first so neither dup2 can clobber the other's source.
            a, b = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [executable, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile.name}", "about:blank"]
        # --no-sandbox: CI often runs as root, where Chromium's sandbox refuses to start.
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, pass_fds=(3, 4),
                                         preexec_fn=pipes_to_3_and_4)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.version = self.send("Browser.getVersion")["product"]

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        reply = self._receive(lambda m: m.get("id") == message["id"], method)
        if "error" in reply:
            raise ProtocolError(f"{method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_for(self, event: str, session: str) -> dict:
        """The first not-yet-consumed `event` of that tab (already received or arriving)."""
        for i, m in enumerate(self.events):
            if m.get("method") == event and m.get("sessionId") == session:
                return self.events.pop(i)
        found = self._receive(lambda m: m.get("method") == event and m.get("sessionId") == session, event)
        self.events.remove(found)
        return found

    def _receive(self, wanted, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError(f"Chromium gave no answer to {what} within {self.timeout:g} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise ProtocolError(f"Chromium exited (code {self._process.poll()}) while waiting for {what}")
            self._buffer += chunk

    def open(self, url: str, width: int = 1280, height: int = 900) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        page = Page(self, target, session)
        navigation = self.send("Page.navigate", {"url": url}, session)
        if "errorText" in navigation:
            raise ProtocolError(f"could not open {url}: {navigation['errorText']}")
        self.wait_for("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self._process.wait(10)
        except Exception:
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._write)
            os.close(self._read)
            self._profile.cleanup()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Chromium, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression (awaited if it is a promise)."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            raise ProtocolError(f"script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed requests seen so far, one line each."""
        found = []
        for m in self.browser.events:
            if m.get("sessionId") != self.session:
                continue
            method, p = m["method"], m.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                found.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                found.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                          for a in p["args"]))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error" and p["entry"]["source"] != "network":
                # Network-sourced entries repeat the failed requests reported below.
                found.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
            elif method == "Network.loadingFailed":
                found.append(f"request failed: {p['errorText']} ({self._url(p['requestId'])})")
            elif method == "Network.responseReceived" and p["response"].get("status", 0) >= 400:
                found.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
        return found

    def _url(self, request_id: str) -> str:
        for m in self.browser.events:
            if m.get("method") == "Network.requestWillBeSent" and m["params"]["requestId"] == request_id:
                return m["params"]["request"]["url"]
        return "unknown url"

    def screenshot(self, path: str | Path, full_page: bool = True, scale: float = 1.0) -> Path:
        """A PNG of the page: all of it, or the viewport; `scale` < 1 shrinks it."""
        metrics = self.browser.send("Page.getLayoutMetrics", session=self.session)
        size = metrics["cssContentSize"] if full_page else metrics["cssLayoutViewport"]
        clip = {"x": 0, "y": 0, "width": size.get("width", size.get("clientWidth")),
                "height": size.get("height", size.get("clientHeight")), "scale": scale}
        data = self.browser.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                           "captureBeyondViewport": full_page}, self.session)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
