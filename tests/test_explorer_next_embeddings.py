"""The Explorer's Next-token and Embeddings panels in a real browser, against the API's numbers.

Next token: the sampling sliders re-draw the bars from the cached logits with no request, and the
bars agree with Python's ``sampling_probs``; "greedy next" appends the argmax of the logits it was
drawn from; clicking another token branches (the tree then has two leaves); the logit lens table
has a row per attention and per MLP, and its last row ends in the model's own prediction.
Embeddings: the heatmap's cells are the API's cosines, the PCA map has a point per sentence, and
an empty list shows the API's message and the panel keeps working.

One workspace, server and browser for the module; a fresh page per test. Screenshots go to
$LUCIDLM_ARTIFACTS (default test-artifacts/explorer) as next.png and embeddings.png.
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

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser
from lucidlm.generate.sampling import SamplingParams, sampling_probs

DECODER = "smollm2-135m-instruct"
ENCODER = "all-minilm-l6-v2"
PROMPT = "The capital of France is"
NEXT_URL = f"/?panel=next&model={DECODER}&text={quote(PROMPT)}"
ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))


@pytest.fixture(scope="module")
def server():
    skip_without_browser()
    from lucidlm.explorer.app import create_app
    from lucidlm.explorer.workspace import Workspace

    ws = Workspace([DECODER, ENCODER])
    with serve_app(create_app(ws)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b

@pytest.fixture
def page(browser):
    """A fresh page; after the test, nothing left the machine and the console stayed clean
    (a test that provokes an API error on purpose clears the browser's 'Failed to load' line)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.requests, page.console = RequestLog(page), ConsoleLog(page)
    yield page
    assert page.requests.outside_loopback() == []
    assert page.console.errors == []
    page.close()


def decode(tensor: dict) -> torch.Tensor:
    assert tensor["dtype"] == "float32"
    return torch.from_numpy(np.frombuffer(base64.b64decode(tensor["b64"]), dtype="<f4").copy())  # (V,)


def open_next(page, server, lens: int = 12) -> dict:
    """Open the Next-token panel on PROMPT; return /api/trace's answer once the bars and the lens
    are drawn (so no request of the page's start is still under way). ``lens``: its positions
    (1 is quickest, for the tests that do not look at it)."""
    with page.expect_response(lambda r: "/api/trace" in r.url) as trace:
        page.goto(server + NEXT_URL + f"&lens={lens}")
    page.locator(".next-bar").first.wait_for()
    page.locator("#next-lens tbody tr").first.wait_for()
    return trace.value.json()


def bars(page) -> list[dict]:
    """The bars on screen: token id, the probability after the controls, the model's, and the text shown."""
    return page.locator(".next-bar").evaluate_all(
        "rows => rows.map(r => ({token: +r.dataset.token, p: +r.dataset.p, raw: +r.dataset.raw, "
        "shown: r.querySelector('.next-bar-p').textContent}))")


def test_sliders_redraw_the_bars_from_cached_logits(page, server):
    meta = open_next(page, server, lens=1)
    logits = decode(meta["next"]["logits"])  # (V,)
    before = bars(page)
    api_calls = []
    page.on("request", lambda r: "/api/" in r.url and api_calls.append(r.url))

    page.locator("#next-temp").fill("0.7")
    page.locator("#next-topk").fill("20")
    page.locator("#next-topp").fill("0.9")
    page.wait_for_function("document.querySelector('#next-topp + output').textContent === '0.90'")
    after = bars(page)

    assert api_calls == [], "moving a slider must not ask the server"
    assert [b["p"] for b in after] != [b["p"] for b in before]
    want = sampling_probs(logits, SamplingParams(temperature=0.7, top_k=20, top_p=0.9))  # (V,)
    assert after[0]["token"] == int(want.argmax())
    for b in after:
        assert b["p"] == pytest.approx(float(want[b["token"]]), rel=1e-3, abs=1e-6)
        assert b["raw"] == pytest.approx(float(torch.softmax(logits, -1)[b["token"]]), rel=1e-3, abs=1e-6)
    shown = float(after[0]["shown"].rstrip("%"))
    assert abs(shown - 100 * float(want.max())) <= 0.051, "the top probability as printed"
    kept = int((want > 0).sum())
    assert page.locator(".next-note").text_content().startswith(f"{kept:,} of {logits.numel():,} tokens can be sampled")
    assert "temp=0.7" in page.url and "topk=20" in page.url and "topp=0.9" in page.url


def test_greedy_steps_and_branching(page, server):
    meta = open_next(page, server)
    steps = {}  # tuple(ids) -> /api/step's answer

    def record(response):
        if "/api/step" in response.url and response.ok:
            steps[tuple(response.request.post_data_json["ids"])] = response.json()

    page.on("response", record)
    generated = page.locator("#next-text .next-token")
    greedy = page.locator("#next-greedy")

    greedy.click()
    generated.nth(0).wait_for()
    first = int(generated.nth(0).get_attribute("data-token"))
    assert first == int(decode(meta["next"]["logits"]).argmax()), "the prompt's logits come with the trace"
    page.wait_for_function("!document.querySelector('#next-greedy').disabled")
    greedy.click()
    generated.nth(1).wait_for()
    second = int(generated.nth(1).get_attribute("data-token"))
    step = steps[tuple(meta["ids"] + [first])]
    assert second == int(decode(step["logits"]).argmax())

    # the first generated token's distribution; another token there starts a second branch
    page.wait_for_function("!document.querySelector('#next-greedy').disabled")
    generated.nth(0).click()
    assert page.locator(".next-bar.picked").get_attribute("data-token") == str(first)
    other = page.locator(".next-bar:not(.picked)").first
    alternative = int(other.get_attribute("data-token"))
    other.click()
    page.wait_for_function("!document.querySelector('#next-greedy').disabled")
    assert page.locator("#next-tree [data-leaf]").count() == 2
    assert [int(x) for x in generated.evaluate_all("els => els.map(e => e.dataset.token)")] == [alternative]
    assert f"gen={alternative}" in page.url

    page.locator("#next-lens tbody tr").first.wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "next.png", full_page=True)


def test_logit_lens_table(page, server):
    with page.expect_response(lambda r: "/api/lens" in r.url) as lens_response:
        meta = open_next(page, server)
    lens = lens_response.value.json()
    rows = page.locator("#next-lens tbody tr")
    rows.first.wait_for()
    assert rows.count() == 2 * meta["n_layer"]
    assert page.locator("#next-lens thead tr").count() == 1
    cells = page.locator("#next-lens tbody tr").evaluate_all(
        "trs => trs.map(tr => [...tr.querySelectorAll('td')].map(td => +td.dataset.token))")
    assert cells == [row["ids"] for row in lens["rows"]]
    assert cells[-1][-1] == int(decode(meta["next"]["logits"]).argmax()), "the last reading is the model's output"
    assert "after MLP = output" in rows.last.locator("th").text_content()
    # colouring by the final answer's probability changes the colours, not the tokens
    first_cell = page.locator("#next-lens tbody tr td").first
    colour = first_cell.evaluate("td => td.style.background")
    page.locator("#next-lens-final").check()
    assert page.locator("#next-lens tbody tr td").first.evaluate("td => td.style.background") != colour \
        or lens["rows"][0]["p"][0] == lens["rows"][0]["p_final"][0]
    assert "lenscolor=final" in page.url


def test_a_step_error_is_shown_and_the_panel_goes_on(page, server):
    open_next(page, server, lens=1)
    full = "1025 tokens; the model's context here is 1024: start a shorter branch"
    page.route("**/api/step", lambda route: route.fulfill(status=400, content_type="application/json",
                                                          body=json.dumps({"error": {"message": full}})))
    page.locator("#next-generate").click()  # step 1 uses the trace's logits, step 2 asks /api/step
    alert = page.locator(".next-panel [role=alert]")
    alert.wait_for()
    assert alert.text_content() == full
    assert page.locator("#next-text .next-token").count() == 1
    assert page.locator("#next-generate").is_enabled()
    page.console.errors = [e for e in page.console.errors if "status of 400" not in e]


def test_an_encoder_predicts_no_next_token(page, server):
    page.goto(server + f"/?panel=next&model={ENCODER}&text=the+cat")
    alert = page.locator(".next-panel [role=alert]")
    alert.wait_for()
    assert f"{ENCODER} is an encoder: it predicts no next token" in alert.text_content()


def test_embeddings_heatmap_and_map(page, server):
    with page.expect_response(lambda r: "/api/embeddings" in r.url) as response:
        page.goto(server + "/?panel=embeddings")
    answer = response.value.json()
    page.locator("#emb-scatter").wait_for()
    n = len(answer["sentences"])
    assert n == 6
    cell = page.locator('#emb-heatmap rect[data-i="0"][data-j="1"]')
    assert float(cell.get_attribute("data-value")) == answer["cosine"][0][1]
    assert page.locator('#emb-heatmap text.emb-value[data-i="0"][data-j="1"]').text_content() == \
        f"{answer['cosine'][0][1]:.2f}"
    assert page.locator("#emb-heatmap rect.emb-cell").count() == n * n
    assert page.locator("#emb-scatter circle.point").count() == n
    pc1 = f"PC1 ({round(100 * answer['explained'][0])}% of variance)"
    assert page.locator("#emb-scatter").text_content().count(pc1) == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "embeddings.png", full_page=True)

    # an empty list: the API's message in the page, and the panel still works afterwards
    page.locator("#emb-sentences").fill("  \n")
    page.locator("#emb-run").click()
    alert = page.locator(".emb-panel [role=alert]")
    alert.wait_for()
    assert alert.text_content() == "no sentences: write one sentence per line"
    page.console.errors = [e for e in page.console.errors if not re.search(r"status of 400", e)]
    page.locator("#emb-sentences").fill("a cat\na dog")
    page.locator("#emb-run").click()
    page.wait_for_function("document.querySelectorAll('#emb-scatter circle.point').length === 2")
    assert page.locator(".emb-panel [role=alert]").count() == 0
