"""Helpers for the explorer's browser tests (a module, not a test file).

- ``skip_without_browser`` / ``launch_chromium``: Debian's chromium (/usr/bin/chromium, which
  ``make test`` installs as root), driven by Playwright. Playwright's own browser download is
  never used: it is large, comes from a CDN, and is not built for every distribution.
- ``serve_app``: an ASGI app (FastAPI) served by uvicorn on a free loopback port, in a thread.
- ``RequestLog`` / ``ConsoleLog``: what a page fetched and what it complained about, so a test
  can assert that the explorer works offline (no request leaves the machine) and without errors.

Usage::

    skip_without_browser()
    from playwright.sync_api import sync_playwright
    with serve_app(app) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        requests, console = RequestLog(page), ConsoleLog(page)
        page.goto(url)
        ...
        assert requests.outside_loopback() == [] and console.errors == []
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
# Headless in a container, offline: no sandbox (it needs user namespaces, often missing in a
# container), no GPU, and none of the background traffic (QUIC probes, component and sync updates).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


# One keystroke in the Explorer's Tokens panel: the ms until every column shows the new text's
# tokens, in the frame that draws them (the test and benchmarks/bench_explorer.py both time it).
TOKENS_KEYSTROKE = """() => new Promise((resolve) => {
  const panel = document.querySelector('.tokens-panel');
  const textarea = document.querySelector('#ttext');
  const gen = Number(panel.dataset.gen);
  const started = performance.now();
  textarea.value += 'x';
  textarea.dispatchEvent(new Event('input'));
  const check = () => {
    const now = panel.dataset.gen;
    if (Number(now) > gen && [...panel.querySelectorAll('.tok-col')].every((c) => c.dataset.gen === now)) {
      requestAnimationFrame(() => resolve(performance.now() - started));
    } else setTimeout(check, 0);
  };
  check();
})"""


def skip_without_browser() -> None:
    """Skip the calling test unless Playwright imports and Debian's chromium is installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (make test installs it as root: apt-get install chromium)")


def launch_chromium(playwright):
    """A headless Debian chromium; ``playwright`` is the object ``sync_playwright()`` yields."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def chromium() -> Iterator:
    """Playwright started, a headless Debian chromium launched, both closed afterwards (skips the
    test without them): what a test module's ``browser`` fixture yields."""
    skip_without_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serve_app(app, timeout: float = 10.0) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a background thread; yield its base URL.

    The socket is bound here, to port 0 (the OS picks a free one), and handed to uvicorn: asking
    for a free port first and binding it later would race with other tests doing the same.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as lucidlm.cli.serve.bind: no 40 ms delayed-ACK waits
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # timeout_graceful_shutdown: a browser's idle keep-alive connection must not hold up the exit
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    # Server.run makes its own event loop; in a thread other than the main one it leaves the
    # signal handlers alone (Ctrl-C still reaches pytest).
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn:{port}")
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:  # set once the socket listens
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped during startup (see the log above: the app's startup failed?)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start listening on port {port} within {timeout} s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def is_loopback(url: str) -> bool:
    """True for URLs that stay on this machine: loopback hosts, and data:, blob: and about: URLs."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in LOOPBACK_HOSTS


class RequestLog:
    """Every URL a page requests (documents, scripts, fetches, images, ...), in order."""

    def __init__(self, page) -> None:
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))

    def outside_loopback(self) -> list[str]:
        """The requested URLs that would leave this machine (a CDN, a font service, telemetry)."""
        return [url for url in self.urls if not is_loopback(url)]


class ConsoleLog:
    """The page's console errors and uncaught exceptions, as readable lines in ``errors``."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        # the stack starts with the message ("Error: boom") and says where it was thrown
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error.stack or error.message}"))

    def _on_console(self, message) -> None:
        if message.type == "error":
            where = message.location
            self.errors.append(f"console.error: {message.text} ({where.get('url')}:{where.get('lineNumber')})")
