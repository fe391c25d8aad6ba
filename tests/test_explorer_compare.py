"""The Explorer's Compare panel in a real browser, against the API's numbers.

- A plain prompt vs the same prompt with layer 10's head 3 zeroed: every head of layers 0..10 is
  drawn "identical" (its weights are computed before the edit acts), some later head is not, and
  the KL shown is the API's.
- A == B: every cell identical, KL 0.
- Two prompts: the changed tokens shown are the API's (ids and probabilities).
- SmolLM2 vs MiniLM: the API's 400 message in the page, and a good comparison afterwards works.

One workspace, server and browser for the module; a fresh page per test that checks nothing left
the machine and the console stayed clean. The screenshot goes to $LUCIDLM_ARTIFACTS (default
test-artifacts/explorer) as compare.png.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import urlencode

import httpx2
import numpy as np
import pytest

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser

DECODER = "smollm2-135m-instruct"
ENCODER = "all-minilm-l6-v2"
FRANCE = "The capital of France is"
ITALY = "The capital of Italy is"
ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))


@pytest.fixture(scope="module")
def server():
    skip_without_browser()
    from lucidlm.explorer.app import create_app
    from lucidlm.explorer.workspace import Workspace

    ws = Workspace([DECODER, ENCODER])
    with serve_app(create_app(ws)) as base:
        yield base


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    """A fresh page; after the test, nothing left the machine and the console stayed clean (a test
    that provokes an API error on purpose drops the browser's 'status of 400' line)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.requests, page.console = RequestLog(page), ConsoleLog(page)
    yield page
    assert page.requests.outside_loopback() == []
    assert page.console.errors == []
    page.close()


def open_compare(page, server, **keys) -> dict:
    """Open the panel with URL keys (amodel, atext, aedit, ...); return /api/compare's answer once drawn."""
    with page.expect_response(lambda r: "/api/compare" in r.url) as answer:
        page.goto(f"{server}/?panel=compare&{urlencode(keys)}")
    page.locator(".cmp-grid .cmp-cell").first.wait_for()
    return answer.value.json()


def api_compare(server, a: dict, b: dict) -> dict:
    """/api/compare of two traces made directly through the API (the page is not involved)."""
    ta, tb = (httpx2.post(f"{server}/api/trace", json=x, timeout=60).json()["trace"] for x in (a, b))
    return httpx2.post(f"{server}/api/compare", json={"a": ta, "b": tb}, timeout=60).json()


def shown_cells(page) -> dict[tuple[int, int], tuple[float, bool]]:
    """(layer, head) -> (the cell's value, whether it is drawn 'identical')."""
    cells = page.locator(".cmp-grid .cmp-cell").evaluate_all(
        "cs => cs.map(c => [+c.dataset.layer, +c.dataset.head, +c.dataset.value, c.classList.contains('cmp-zero')])")
    return {(r, c): (v, z) for r, c, v, z in cells}


def decode(tensor: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(tensor["b64"]), dtype="<f4").reshape(tensor["shape"])


def test_a_zeroed_head_leaves_the_layers_before_it_identical(page, server):
    answer = open_compare(page, server, atext=FRANCE, btext=FRANCE, bedit="zero:head:10:3")
    api = api_compare(server, {"model": DECODER, "text": FRANCE},
                      {"model": DECODER, "text": FRANCE, "edits": [{"kind": "zero", "site": "head", "layer": 10, "head": 3}]})
    want = decode(api["attention"])  # (L, nh)
    assert np.array_equal(want, decode(answer["attention"]))  # the page asked for the same edit
    cells = shown_cells(page)
    L, nh = want.shape
    assert len(cells) == L * nh
    for (layer, head), (value, identical) in cells.items():
        assert value == pytest.approx(float(want[layer, head]), rel=1e-6)
        assert identical == (want[layer, head] == 0)
        if layer <= 10:
            assert identical, (layer, head)
    assert any(not identical for (layer, _), (_, identical) in cells.items() if layer > 10)
    assert float(page.locator(".cmp").get_attribute("data-kl")) == pytest.approx(api["next"]["kl"], rel=1e-5)
    assert api["next"]["kl"] > 0

    # clicking the head that changed most shows both heads' weights and their difference
    top = page.locator("#cmp-top button").first
    layer, head = int(top.get_attribute("data-layer")), int(top.get_attribute("data-head"))
    assert want[layer, head] == want.max()
    top.click()
    page.locator(".cmp-headview canvas.cmp-matrix").nth(2).wait_for()
    assert page.locator(".cmp-headview").get_attribute("data-layer") == str(layer)
    assert page.locator(".cmp-headview").get_attribute("data-head") == str(head)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.add_style_tag(content="header { position: static }")  # the sticky header would cover the panel's top
    page.locator(".cmp").screenshot(path=str(ARTIFACTS / "compare.png"))


def test_the_same_version_twice_is_identical_everywhere(page, server):
    answer = open_compare(page, server, atext=FRANCE, btext=FRANCE)
    cells = shown_cells(page)
    assert cells and all(identical and value == 0 for value, identical in cells.values())
    assert answer["next"]["kl"] == 0
    assert float(page.locator(".cmp").get_attribute("data-kl")) == 0
    assert "0 nats" in page.locator("#cmp-kl").inner_text()
    assert "none: every head is identical" in page.locator("#cmp-top").inner_text()


def test_two_prompts_show_the_api_changes(page, server):
    open_compare(page, server, atext=FRANCE, btext=ITALY)
    api = api_compare(server, {"model": DECODER, "text": FRANCE}, {"model": DECODER, "text": ITALY})
    shown = page.locator("#cmp-bars .cmp-bar[data-token]").evaluate_all(
        "rows => rows.map(r => [+r.dataset.token, +r.dataset.pa, +r.dataset.pb])")
    want = [[c["id"], c["p_a"], c["p_b"]] for c in api["next"]["changes"]]
    assert [row[0] for row in shown] == [row[0] for row in want]
    assert np.allclose(np.array(shown)[:, 1:], np.array(want)[:, 1:], rtol=1e-6)
    assert float(page.locator(".cmp").get_attribute("data-kl")) == pytest.approx(api["next"]["kl"], rel=1e-5)
    # the answers: «Paris» for A and «Rome» for B, each at the layer the API says
    for side in "ab":
        item = page.locator(f".cmp-answers li[data-side={side}]")
        assert item.get_attribute("data-layer") == str(api["answer"][side]["layer"])
        assert item.get_attribute("data-after") == api["answer"][side]["after"]


def test_two_architectures_show_the_api_error_then_work_again(page, server):
    a, b = {"model": DECODER, "text": FRANCE}, {"model": ENCODER, "text": FRANCE}
    ta, tb = (httpx2.post(f"{server}/api/trace", json=x, timeout=60).json()["trace"] for x in (a, b))
    bad = httpx2.post(f"{server}/api/compare", json={"a": ta, "b": tb}, timeout=60)
    assert bad.status_code == 400
    page.goto(f"{server}/?panel=compare&{urlencode({'atext': FRANCE, 'btext': FRANCE, 'bmodel': ENCODER})}")
    error = page.locator("#cmp-message .error")
    error.wait_for()
    assert error.inner_text() == bad.json()["error"]["message"]
    page.console.errors = [e for e in page.console.errors if "status of 400" not in e]

    # a good comparison afterwards: B back on the decoder
    page.select_option("#cmp-b-model", DECODER)
    with page.expect_response(lambda r: "/api/compare" in r.url) as answer:
        page.click("#cmp-run")
    assert answer.value.status == 200
    page.locator(".cmp-grid .cmp-cell").first.wait_for()
    assert page.locator("#cmp-message .error").count() == 0
    assert "bmodel=" + DECODER in page.url
