"""The Explorer's Attention and Walkthrough panels in a real browser, against the API's numbers.

Attention: the grid has one thumbnail per layer x head of the API's grid; clicking one fetches
that head, and the value under the pointer is the API's float16 weight for that cell (decoded here
with numpy); masked cells say so; click locks, Esc unlocks, the arrow keys move between heads; a
512-token SmolLM2 prompt draws the grid and a head within 2 s of the trace's answer; an encoder
shows no mask. Walkthrough: a card per stage of the API's answer, each with its MathML equation;
the notes on the skipped layers; a "source" link shows the file's lines with the recording line
marked, equal to that line of src/lucidlm. Both: a bad prompt shows the API's message, and the
panel then works on a good one.

One workspace, server and browser for the module; a fresh page per test. Screenshots go to
$LUCIDLM_ARTIFACTS (default test-artifacts/explorer) as attention.png and walkthrough.png.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser

DECODER = "smollm2-135m-instruct"  # 30 layers x 9 heads, 3 KV heads (grouped-query attention)
ENCODER = "all-minilm-l6-v2"  # 6 layers x 12 heads, bidirectional
PROMPT = "The capital of France is"
ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))
SRC = Path(__file__).resolve().parent.parent / "src" / "lucidlm"


@pytest.fixture(scope="module")
def workspace():
    skip_without_browser()
    from lucidlm.explorer.workspace import Workspace

    return Workspace([DECODER, ENCODER])


@pytest.fixture(scope="module")
def server(workspace):
    from lucidlm.explorer.app import create_app

    with serve_app(create_app(workspace)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b

@pytest.fixture
def page(browser):
    """A fresh page; after the test, nothing left the machine and the console stayed clean."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.requests, page.console = RequestLog(page), ConsoleLog(page)
    yield page
    assert page.requests.outside_loopback() == []
    assert page.console.errors == []
    page.close()


def api(server: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON) of one API call made from Python, beside the page's own."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server}/api/{path}", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def float16_weights(tensor: dict) -> np.ndarray:
    """An API tensor of dtype float16, decoded independently of the page: base64 -> numpy."""
    assert tensor["dtype"] == "float16"
    return np.frombuffer(base64.b64decode(tensor["b64"]), dtype="<f2").reshape(tensor["shape"])


def panel_url(panel: str, model: str, text: str, **keys) -> str:
    extra = "".join(f"&{k}={v}" for k, v in keys.items())
    return f"/?panel={panel}&model={model}&text={quote(text)}{extra}"


def open_attention(page, server, model: str = DECODER, text: str = PROMPT, **keys) -> dict:
    """Open the Attention panel on a prompt; return /api/trace's answer once the grid and the
    selected head are drawn."""
    with page.expect_response(lambda r: "/api/trace" in r.url) as trace:
        page.goto(server + panel_url("attention", model, text, **keys))
    meta = trace.value.json()
    page.wait_for_function(f"document.querySelector('.attn-headbox h3')?.textContent.includes('{len(meta['ids'])} ×')")
    page.wait_for_selector(".attn[data-draw-ms]")
    return meta


def hover_cell(page, row: int, col: int, click: bool = False) -> dict:
    """Move the pointer to the centre of cell (row, col) of the big heatmap; return the readout."""
    overlay = page.locator(".attn-overlay")
    overlay.scroll_into_view_if_needed()
    plot = json.loads(overlay.get_attribute("data-plot"))
    box = overlay.bounding_box()
    x = box["x"] + plot["left"] + (col + 0.5) * plot["width"] / plot["cols"]
    y = box["y"] + plot["top"] + (row + 0.5) * plot["height"] / plot["rows"]
    if click:
        page.mouse.click(x, y)
    else:
        page.mouse.move(x, y)
    readout = page.locator(".attn-readout")
    return {"text": readout.text_content(), "value": readout.get_attribute("data-value"),
            "row": readout.get_attribute("data-row"), "col": readout.get_attribute("data-col")}


def drop_failed_loads(page) -> None:
    """A request answered 400 on purpose makes Chromium log 'Failed to load resource'; forget it."""
    page.console.errors = [e for e in page.console.errors if "Failed to load resource" not in e]


# -- attention --------------------------------------------------------------------------------------

def test_attention_grid_click_hover_lock_and_keys(page, server):
    meta = open_attention(page, server)
    L, nh, kv = meta["n_layer"], meta["n_head"], meta["kv_heads"]
    _, grid = api(server, f"attention/grid?trace={meta['trace']}")
    assert grid["thumbs"]["shape"][:2] == [L, nh]
    assert page.locator(".attn-thumb").count() == L * nh == 270
    # grouped-query attention: 9 query heads over 3 KV heads, named in the headers and grouped
    heads = page.locator(".attn-colhead").all_text_contents()
    assert heads[4] == "head 4 · kv 1" and heads[8] == "head 8 · kv 2"
    assert page.locator(".attn-kvgroup").all_text_contents() == [f"KV head {g}" for g in range(kv)]
    assert "grey = masked: a token may not look ahead" in page.locator(".attn-legend").text_content()
    assert "attention weight 0 → 1" in page.locator(".attn-legend").text_content()

    # a click on a thumbnail fetches that layer and head
    with page.expect_request(lambda r: "/api/attention/head" in r.url) as request:
        page.locator('.attn-thumb[data-layer="3"][data-head="4"]').click()
    query = parse_qs(urlsplit(request.value.url).query)
    assert query == {"trace": [meta["trace"]], "layer": ["3"], "head": ["4"]}
    page.wait_for_function("document.querySelector('.attn').dataset.head === '4'")
    assert "layer=3" in page.url and "head=4" in page.url
    _, answer = api(server, f"attention/head?trace={meta['trace']}&layer=3&head=4")
    weights = float16_weights(answer["weights"])  # (T, S)
    T = len(meta["ids"])
    assert weights.shape == (T, T)

    # the value under the pointer is the API's weight for that cell
    labels = meta["labels"]
    for row, col in [(T - 1, 1), (2, 0), (T - 1, T - 1)]:
        got = hover_cell(page, row, col)
        want = float(weights[row, col])
        assert (got["row"], got["col"]) == (str(row), str(col))
        assert float(got["value"]) == want, f"cell ({row}, {col})"
        shown = f"query '{labels[row].replace(' ', '·')}' → key '{labels[col].replace(' ', '·')}': {want:.3f}"
        assert got["text"].startswith(shown)
    assert page.locator(".attn-bars").is_visible()
    assert "Where '·is' looks" in page.locator(".attn-headbox .hint").last.text_content()
    masked = hover_cell(page, 0, 2)  # the first token may not look at the third
    assert "masked" in masked["text"] and float(masked["value"]) == float(weights[0, 2]) == 0.0

    # click locks the selection: moving away keeps it; Esc lets go
    locked = hover_cell(page, T - 1, 1, click=True)
    assert "kept" in locked["text"]
    hover_cell(page, 1, 0)
    assert page.locator(".attn-readout").get_attribute("data-col") == "1"
    page.keyboard.press("Escape")
    assert page.locator(".attn-readout").get_attribute("data-col") is None

    hover_cell(page, T - 1, 2)  # leave a row marked for the screenshot
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "attention.png"))

    # arrow keys move between heads (→ next head) and layers (↓ next layer)
    with page.expect_request(lambda r: "/api/attention/head" in r.url and "head=5" in r.url):
        page.keyboard.press("ArrowRight")
    with page.expect_request(lambda r: "/api/attention/head" in r.url and "layer=4" in r.url):
        page.keyboard.press("ArrowDown")
    page.wait_for_function("document.querySelector('.attn').dataset.layer === '4'")
    assert "layer=4" in page.url and "head=5" in page.url
    assert page.locator(".attn-thumb.attn-selected").get_attribute("aria-label") == "layer 4, head 5"


def test_attention_512_tokens_draws_within_2_seconds(page, server, workspace):
    # a text of exactly 512 tokens: whole words of a repeated sentence, as many as fit
    words = ("The cat sat on the mat and watched the birds in the old tree outside. " * 60).split(" ")
    lo, hi = 1, len(words)
    while lo < hi:  # the most words whose text is <= 512 tokens
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if len(workspace.prompt_ids(DECODER, " ".join(words[:mid]))) <= 512 else (lo, mid - 1)
    text = " ".join(words[:lo])
    assert len(workspace.prompt_ids(DECODER, text)) == 512

    meta = open_attention(page, server, text=text)
    assert len(meta["ids"]) == 512
    ms = float(page.locator(".attn").get_attribute("data-draw-ms"))
    print(f"\n512-token SmolLM2 prompt: grid ({meta['n_layer']} x {meta['n_head']}) and head drawn {ms:.0f} ms "
          "after the trace's answer")
    assert ms < 2000
    assert page.locator(".attn-thumb").count() == meta["n_layer"] * meta["n_head"]
    # long prompts: 1-pixel cells, no token labels; the readout names the cell under the pointer
    # (within a pixel of the one aimed at: the browser rounds the pointer to whole pixels) and its
    # value is the API's for that cell
    _, answer = api(server, f"attention/head?trace={meta['trace']}&layer=0&head=0")
    weights = float16_weights(answer["weights"])
    got = hover_cell(page, 500, 3)
    row, col = int(got["row"]), int(got["col"])
    assert abs(row - 500) <= 1 and abs(col - 3) <= 1
    assert float(got["value"]) == float(weights[row, col])


def test_attention_bad_prompts_then_an_encoder(page, server):
    # the page opens on an empty prompt (nothing runs), then: empty, over-long, good (an encoder)
    page.goto(server + panel_url("attention", ENCODER, "", layer=2, head=7))
    message = page.locator(".promptbar-message")
    for text in ["", "word " * 1100]:  # empty; over the 1,024-token limit
        status, answer = api(server, "trace", {"model": ENCODER, "text": text})
        assert status == 400
        page.fill("#prompt", text)
        page.click("#run")
        page.wait_for_function("document.querySelector('.promptbar-message').textContent.length > 0")
        assert message.text_content() == answer["error"]["message"]
    drop_failed_loads(page)
    with page.expect_response(lambda r: "/api/trace" in r.url) as trace:
        page.fill("#prompt", "The cat sat on the mat")
        page.click("#run")
    meta = trace.value.json()
    T = len(meta["ids"])
    page.wait_for_function(f"document.querySelector('.attn-headbox h3')?.textContent.includes('{T} × {T}')")
    assert message.text_content() == ""

    # an encoder: bidirectional, so nothing is masked
    assert meta["causal"] is False
    assert page.locator(".attn-thumb").count() == meta["n_layer"] * meta["n_head"] == 6 * 12
    legend = page.locator(".attn-legend").text_content()
    assert "bidirectional: every token looks at every token" in legend and "masked" not in legend
    assert page.locator(".attn-kvgroup").count() == 0  # no grouped-query attention in MiniLM
    _, answer = api(server, f"attention/head?trace={meta['trace']}&layer=2&head=7")
    weights = float16_weights(answer["weights"])
    got = hover_cell(page, 0, 4)  # above the diagonal: an encoder's [CLS] looks ahead
    assert float(got["value"]) == float(weights[0, 4]) and "masked" not in got["text"]


# -- walkthrough ------------------------------------------------------------------------------------

def open_walkthrough(page, server, url: str) -> dict:
    """Open the Walkthrough panel; return /api/walkthrough's answer once its cards are drawn."""
    with page.expect_response(lambda r: "/api/walkthrough" in r.url) as response:
        page.goto(server + url)
    answer = response.value.json()
    page.wait_for_function(f"document.querySelectorAll('.wt-stage').length === {len(answer['stages'])}")
    return answer


def test_walkthrough_stages_equations_and_source(page, server):
    answer = open_walkthrough(page, server, f"/?panel=walkthrough&model={DECODER}&wlayer=2&whead=4")
    assert page.locator("#prompt").input_value() == "The cat sat on the"  # the panel's default prompt
    assert (answer["layer"], answer["head"]) == (2, 4)
    stages = answer["stages"]
    cards = page.locator(".wt-stage")
    assert cards.count() == len(stages)
    assert [cards.nth(i).get_attribute("data-name") for i in range(len(stages))] == [s["name"] for s in stages]
    assert page.locator("math").count() > 0
    assert page.locator("math").count() == sum(1 for s in stages if s["equation"])
    flow = page.locator(".wt-flow").text_content()
    assert "layers 0..1 repeat the same steps" in flow and "layers 3..29 repeat the same steps" in flow
    for title in ["token embedding lookup", "queries", "attention scores", "softmax: attention weights",
                  "activation", "scores for every token in the vocabulary"]:
        assert page.locator(".wt-stage h3", has_text=title).count() >= 1, title
    weights_card = page.locator('.wt-stage[data-stage="attn.weights"]')
    assert "showing head 4 of 9" in weights_card.text_content()
    assert "shape (1, 9, 5, 5): batch 1 × heads 9 × query tokens 5 × key tokens 5" in weights_card.text_content()
    # the table's numbers are the API's (exact in each cell's tooltip)
    w = next(s for s in stages if s["stage"] == "attn.weights")
    cell = weights_card.locator("tbody tr").nth(3).locator("td").nth(1)
    assert float(cell.get_attribute("data-value")) == w["values"][3][1]
    assert float(cell.get_attribute("title").rsplit(": ", 1)[1]) == w["values"][3][1]
    masked = page.locator('.wt-stage[data-stage="attn.scores_masked"] td.wt-masked')
    assert masked.count() == sum(v is None for row in next(s for s in stages if s["stage"] == "attn.scores_masked")["values"]
                                 for v in row) > 0

    page.locator('.wt-stage[data-stage="attn.scores"]').scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "walkthrough.png"))

    # the source view: the function's lines, the recording line marked and equal to the file's
    source = w["source"][0]
    weights_card.locator(".wt-srclink").first.click()
    marked = page.locator(".wt-source .wt-hl")
    marked.wait_for()
    lines = (SRC / source["file"]).read_text(encoding="utf-8").splitlines()
    assert marked.locator("code").text_content() == lines[source["highlight"] - 1]
    assert "trace.record(" in lines[source["highlight"] - 1]
    assert marked.get_attribute("data-line") == str(source["highlight"])
    assert page.locator(".wt-source .wt-line").count() == source["end"] - source["start"] + 1
    page.screenshot(path=str(ARTIFACTS / "walkthrough-source.png"))
    page.keyboard.press("Escape")
    assert page.locator(".wt-source").is_hidden()

    # another head: a new request, the URL remembers it
    with page.expect_request(lambda r: "/api/walkthrough" in r.url) as request:
        page.select_option("#wt-head", "1")
    assert parse_qs(urlsplit(request.value.url).query)["head"] == ["1"]
    page.wait_for_function("document.querySelector('.wt-flow').dataset.head === '1'")
    assert "whead=1" in page.url


def test_walkthrough_bad_prompt_then_an_encoder(page, server):
    # the page opens on an empty prompt (nothing runs), then: blank, good (an encoder, last layer)
    page.goto(server + panel_url("walkthrough", ENCODER, "", wlayer=5))
    _, answer = api(server, "trace", {"model": ENCODER, "text": "   "})
    page.fill("#prompt", "   ")
    page.click("#run")
    page.wait_for_function("document.querySelector('.promptbar-message').textContent.length > 0")
    assert page.locator(".promptbar-message").text_content() == answer["error"]["message"]
    drop_failed_loads(page)
    with page.expect_response(lambda r: "/api/walkthrough" in r.url) as response:
        page.fill("#prompt", "The cat sat on the mat")
        page.click("#run")
    answer = response.value.json()
    page.wait_for_function(f"document.querySelectorAll('.wt-stage').length === {len(answer['stages'])}")
    assert page.locator(".promptbar-message").text_content() == ""

    # an encoder: post-norm, no final norm, no logits; its output is the hidden states
    names = [s["stage"] for s in answer["stages"]]
    assert names[-1] == "hidden" and "logits" not in names and "final_norm" not in names
    assert page.locator(".wt-stage").last.get_attribute("data-stage") == "hidden"
    assert page.locator("math").count() > 0
    flow = page.locator(".wt-flow").text_content()
    assert "layers 0..4 repeat the same steps" in flow and "layers 6" not in flow  # 5 is the last layer
    assert "an encoder (bidirectional)" in page.locator(".wt-summary").text_content()
