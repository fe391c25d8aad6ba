"""The Explorer's Intervene panel in a real browser, against the API's numbers and plain PyTorch.

- Zeroing layer 20 head 4 in the page shows the probability a plain PyTorch forward gives with a
  forward_pre_hook on ``layers[20].attn.proj`` zeroing that head's columns (independent of the
  explorer's own edit machinery), and a reload of the page's URL shows the same edit again.
- No edit (and after removing one): the edited bars are the plain ones exactly and KL is 0.
- The head scan draws layers x heads cells; hovering one shows the API's p_ablated, clicking it
  adds "zero that head" and applies it.
- A bad layer shows the API's message, and a good edit afterwards works.
- An encoder: the cosine the API gives, and no head scan.

One workspace, server and browser for the module; a fresh page per test that checks nothing left
the machine and the console stayed clean. The screenshot goes to $LUCIDLM_ARTIFACTS (default
test-artifacts/explorer) as intervene.png.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch

import lucidlm
from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser

DECODER = "smollm2-135m-instruct"
ENCODER = "all-minilm-l6-v2"
PROMPT = "The capital of France is"
ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))


def url(model: str = DECODER, text: str = PROMPT, extra: str = "") -> str:
    return f"/?panel=intervene&model={model}&text={quote(text)}{extra}"


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

@pytest.fixture(scope="module")
def model():
    """The decoder loaded on its own, for a reference forward pass outside the explorer."""
    model, _ = lucidlm.load_model(DECODER)
    return model.eval()


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


def decode(tensor: dict) -> torch.Tensor:
    assert tensor["dtype"] == "float32"
    data = np.frombuffer(base64.b64decode(tensor["b64"]), dtype="<f4").copy()
    return torch.from_numpy(data).view(tensor["shape"])


def open_panel(page, server, **kw) -> dict:
    """Open the panel; return /api/trace's answer once the bars are drawn."""
    with page.expect_response(lambda r: "/api/trace" in r.url) as trace:
        page.goto(server + url(**kw))
    page.locator(".iv[data-edits]").wait_for(state="attached")
    return trace.value.json()


def data(page) -> dict:
    return page.locator(".iv").evaluate("el => ({...el.dataset})")


def bars(page) -> list[dict]:
    return page.locator(".iv-bar[data-token]").evaluate_all(
        "rows => rows.map(r => ({token: +r.dataset.token, plain: r.dataset.plain, edited: r.dataset.edited}))")


def apply_edit(page, *, layer: int, head: int | None = None, site: str = "head", kind: str = "zero") -> None:
    page.select_option("#iv-kind", kind)
    page.select_option("#iv-site", site)
    page.fill("#iv-layer", str(layer))
    if head is not None:
        page.fill("#iv-head", str(head))
    page.click("#iv-apply")


def shown_after(text: str) -> tuple[float, int]:
    """'P(«·Paris») 77.25% → 77.33%, KL ...' -> (77.33, 2 decimals)."""
    after = re.search(r"→ ([\d.]+)%", text).group(1)
    return float(after), len(after.split(".")[1]) if "." in after else 0


def reference_zero_head(model, ids: list[int], layer: int, head: int) -> torch.Tensor:
    """Next-token probabilities (V,) with one head zeroed by a plain PyTorch hook: the output
    projection's input holds the heads side by side, head h in columns h*hs .. (h+1)*hs."""
    hs = model.cfg.n_embd // model.cfg.n_head

    def zero(module, args):
        x = args[0].clone()  # (B, T, nh * hs)
        x[..., head * hs:(head + 1) * hs] = 0.0
        return (x,)

    handle = model.layers[layer].attn.proj.register_forward_pre_hook(zero)
    try:
        with torch.inference_mode():
            logits = model(torch.tensor([ids]))  # (1, T, V)
    finally:
        handle.remove()
    return torch.softmax(logits[0, -1].float(), -1)


def test_zeroing_a_head_matches_a_pytorch_hook(page, server, model):
    meta = open_panel(page, server)
    plain = torch.softmax(decode(meta["next"]["logits"]), -1)  # (V,)
    target = int(plain.argmax())
    want = reference_zero_head(model, meta["ids"], 20, 4)  # (V,)

    apply_edit(page, layer=20, head=4)
    page.wait_for_function("document.querySelector('.iv')?.dataset.edits === 'zero:head:20:4'")
    d = data(page)
    assert int(d["target"]) == target
    assert float(d["pEdited"]) == pytest.approx(float(want[target]), rel=1e-5, abs=1e-7)
    assert float(d["pBase"]) == pytest.approx(float(plain[target]), rel=1e-6)
    kl = float(torch.sum(plain * (plain.log() - want.log())))
    assert float(d["kl"]) == pytest.approx(kl, rel=1e-2, abs=1e-6)
    summary = page.locator("#iv-summary").text_content()
    assert summary.startswith("Zeroing layer 20 head 4: P(«·Paris»)")
    shown, decimals = shown_after(summary)
    assert abs(shown - 100 * float(want[target])) <= 0.5 * 10 ** -decimals + 1e-9, "the number as printed"
    for b in bars(page):  # every bar: the plain and the edited probability of its token
        assert float(b["plain"]) == pytest.approx(float(plain[b["token"]]), rel=1e-4, abs=1e-7)
        assert float(b["edited"]) == pytest.approx(float(want[b["token"]]), rel=1e-4, abs=1e-7)
    assert "edits=zero%3Ahead%3A20%3A4" in page.url

    # the link alone brings the edit back
    link = page.url
    page.goto(link)
    page.wait_for_function("document.querySelector('.iv')?.dataset.edits === 'zero:head:20:4'")
    assert data(page)["pEdited"] == d["pEdited"]
    assert page.locator(".iv-chip").count() == 1


def test_no_edit_means_no_difference(page, server):
    open_panel(page, server)
    assert data(page)["kl"] == "0"
    assert data(page)["pEdited"] == data(page)["pBase"]
    rows = bars(page)
    assert len(rows) == 10 and all(b["edited"] == b["plain"] for b in rows), "exactly zero where none was"
    assert page.locator(".iv-delta").all_text_contents() == ["="] * 10

    apply_edit(page, layer=3, site="mlp", kind="scale")  # factor 0.5 (the default)
    page.wait_for_function("document.querySelector('.iv')?.dataset.edits === 'scale:mlp:3::0.5'")
    assert float(data(page)["kl"]) > 0
    assert any(b["edited"] != b["plain"] for b in bars(page))

    page.locator(".iv-chip .iv-remove").click()
    page.wait_for_function("document.querySelector('.iv')?.dataset.edits === ''")
    assert data(page)["kl"] == "0"
    assert all(b["edited"] == b["plain"] for b in bars(page))
    assert "edits=" not in page.url


def test_head_scan_hover_and_click(page, server):
    meta = open_panel(page, server, text="Once upon")  # a short prompt: 270 runs of 2 tokens
    L, nh = meta["n_layer"], meta["n_head"]
    with page.expect_response(lambda r: "/api/ablation-scan" in r.url, timeout=120_000) as response:
        page.click("#iv-scan")
    scan = response.value.json()
    heatmap = page.locator("#iv-heatmap")
    heatmap.wait_for()
    p = decode(scan["p_ablated"])  # (L, nh)
    assert tuple(p.shape) == (L, nh) == (30, 9)
    assert page.locator("#iv-scanbox").get_attribute("data-cells") == str(L * nh)
    plot = json.loads(heatmap.get_attribute("data-plot"))
    assert (plot["rows"], plot["cols"]) == (L, nh)

    # the head whose loss hurts the answer most
    layer, head = divmod(int(p.argmin()), nh)
    heatmap.scroll_into_view_if_needed()
    box = heatmap.bounding_box()
    page.mouse.move(box["x"] + plot["left"] + (head + 0.5) * plot["width"] / nh,
                    box["y"] + plot["top"] + (layer + 0.5) * plot["height"] / L)
    readout = page.locator("#iv-readout")
    page.wait_for_function(f"document.querySelector('#iv-readout')?.dataset.layer === '{layer}'")
    assert readout.get_attribute("data-head") == str(head)
    assert np.float32(readout.get_attribute("data-p-ablated")) == p[layer, head].numpy()
    text = readout.text_content()
    assert text.startswith(f"layer {layer} head {head}: ")
    shown, decimals = shown_after(text)
    assert abs(shown - 100 * float(p[layer, head])) <= 0.5 * 10 ** -decimals + 1e-9

    page.mouse.click(box["x"] + plot["left"] + (head + 0.5) * plot["width"] / nh,
                     box["y"] + plot["top"] + (layer + 0.5) * plot["height"] / L)
    page.wait_for_function(f"document.querySelector('.iv')?.dataset.edits === 'zero:head:{layer}:{head}'")
    assert page.locator(f'.iv-chip[data-edit="zero:head:{layer}:{head}"]').count() == 1
    # one head zeroed alone gives what the scan's batch gave for it
    assert float(data(page)["pEdited"]) == pytest.approx(float(p[layer, head]), rel=1e-4, abs=1e-6)
    assert float(data(page)["pBase"]) == pytest.approx(scan["p_base"], rel=1e-6)

    page.evaluate("window.scrollTo(0, 0)")  # a full-page shot draws the sticky header where the view is
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "intervene.png", full_page=True)


def test_a_bad_layer_shows_the_api_message_and_the_panel_goes_on(page, server):
    open_panel(page, server)
    with page.expect_response(lambda r: "/api/intervene" in r.url) as response:
        apply_edit(page, layer=99, head=4)
    assert response.value.status == 400
    api_message = response.value.json()["error"]["message"]
    alert = page.locator(".iv-message [role=alert]")
    alert.wait_for()
    assert alert.text_content() == api_message
    assert "layer 99" in api_message
    assert data(page)["edits"] == "" and page.locator(".iv-chip").count() == 0, "the bad edit is not kept"
    page.console.errors = [e for e in page.console.errors if "status of 400" not in e]

    apply_edit(page, layer=20, head=4)
    page.wait_for_function("document.querySelector('.iv')?.dataset.edits === 'zero:head:20:4'")
    assert page.locator(".iv-message [role=alert]").count() == 0
    assert float(data(page)["kl"]) > 0


def test_an_encoder_gives_a_cosine(page, server):
    open_panel(page, server, model=ENCODER, text="the cat sat on the mat")
    assert page.locator("#iv-scan").is_disabled()
    assert page.locator("#iv-target").is_hidden()
    with page.expect_response(lambda r: "/api/intervene" in r.url) as response:
        apply_edit(page, layer=2, head=1)
    cosine = response.value.json()["cosine_last"]
    page.wait_for_function("document.querySelector('.iv')?.dataset.cosine !== undefined")
    assert float(data(page)["cosine"]) == cosine
    summary = page.locator("#iv-summary").text_content()
    assert "is an encoder: it predicts no next token" in summary
    assert f"cosine {cosine:.5f}" in summary
