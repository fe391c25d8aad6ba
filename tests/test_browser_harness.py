"""The browser-test harness (tests/browser.py) on a tiny FastAPI app: one HTML page whose inline ES
module fetches a JSON endpoint and writes the answer into the page.

The first test is the pattern every explorer browser test follows (serve, load, wait for the DOM,
no console errors, no request off the machine); the second shows that the two logs do catch
what they are there to catch. Skipped without Playwright or Debian's chromium.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from browser import ConsoleLog, RequestLog, is_loopback, launch_chromium, serve_app, skip_without_browser

# rel="icon" href="data:,": no favicon request, so no 404 in the console
GOOD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>harness</title></head>
<body>
<p id="out">loading</p>
<script type="module">
  const response = await fetch("/api/hello");
  const data = await response.json();
  document.getElementById("out").textContent = `${data.message} (${data.n})`;
</script>
</body></html>
"""

BAD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>bad</title></head>
<body>
<img src="https://cdn.example.com/logo.png">
<script type="module">
  console.error("something went wrong");
  throw new Error("boom");
</script>
</body></html>
"""


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return GOOD_PAGE

    @app.get("/bad", response_class=HTMLResponse)
    def bad() -> str:
        return BAD_PAGE

    @app.get("/api/hello")
    def hello() -> dict:
        return {"message": "hello from the API", "n": 42}

    return app


@pytest.fixture(scope="module")
def browser():
    skip_without_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def test_page_fetches_json_and_renders_it(browser):
    from playwright.sync_api import expect

    with serve_app(make_app()) as url:
        page = browser.new_page()
        requests, console = RequestLog(page), ConsoleLog(page)
        page.goto(url)
        expect(page.locator("#out")).to_have_text("hello from the API (42)")
        page.close()
    assert console.errors == []
    assert requests.outside_loopback() == []
    assert f"{url}/api/hello" in requests.urls


def test_logs_catch_errors_and_outside_requests(browser):
    with serve_app(make_app()) as url:
        page = browser.new_page()
        requests, console = RequestLog(page), ConsoleLog(page)
        # fail requests that leave the machine at once rather than wait on the network
        page.route(lambda u: not is_loopback(u), lambda route: route.abort())
        page.goto(f"{url}/bad", wait_until="load")
        page.evaluate("1")  # a round trip: events the page sent before it have been handled
        page.close()
    assert requests.outside_loopback() == ["https://cdn.example.com/logo.png"]
    assert any("something went wrong" in e for e in console.errors), console.errors
    assert any("uncaught: " in e and "boom" in e for e in console.errors), console.errors


def test_is_loopback():
    assert is_loopback("http://127.0.0.1:8000/static/app.js")
    assert is_loopback("http://localhost/x")
    assert is_loopback("data:image/png;base64,AAAA")
    assert is_loopback("blob:http://127.0.0.1:8000/3f2a")
    assert not is_loopback("https://cdn.jsdelivr.net/npm/uplot")
    assert not is_loopback("http://127.0.0.2/")
