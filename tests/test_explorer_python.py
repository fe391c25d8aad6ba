"""The "copy as Python" button: the dialog shows the code /api/python gives for the open view, and
that code, run, computes the numbers the view shows."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser

SMOL = "smollm2-135m-instruct"
ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))


@pytest.fixture(scope="module")
def server(smollm2_path):
    skip_without_browser()
    from lucidlm.explorer.app import create_app
    from lucidlm.explorer.workspace import Workspace

    with serve_app(create_app(Workspace([SMOL]))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def test_copy_as_python_shows_code_that_computes_the_attention_head(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    requests, console = RequestLog(page), ConsoleLog(page)
    query = urllib.parse.urlencode({"panel": "attention", "model": SMOL, "text": "The capital of France is",
                                    "layer": 3, "head": 4})
    page.goto(f"{server}/?{query}")
    page.wait_for_selector(".attn[data-draw-ms]", timeout=60_000)
    page.click("#py-open")
    page.wait_for_function("document.querySelector('#py-code').textContent.includes('attn.weights')")
    code = page.inner_text("#py-code")
    assert "trace['layers.3.attn.weights'][0, 4]" in code and "The capital of France is" in code
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "python.png")
    namespace: dict = {}
    exec(compile(code, "<copied>", "exec"), namespace)  # noqa: S102 - the code our own server wrote
    assert namespace["weights"].shape == (5, 5)  # the 5 x 5 head the panel draws
    # the same dialog links the tensors of the prompt's run, which download as .npz
    href = page.get_attribute("#py-downloads a:has-text('.npz')", "href")
    assert href.startswith("/api/export?trace=") and href.endswith("format=npz")
    size = page.evaluate("async (href) => (await (await fetch(href)).arrayBuffer()).byteLength", href)
    assert size > 1000
    page.click("text=Close")
    assert requests.outside_loopback() == [] and console.errors == []
    page.close()
