"""The Training runs panel's "Watch it learn" in a real browser (Debian's chromium via Playwright).

A real tiny run is trained here with keep_every, so the page has kept models to step through.
What the page shows is checked against the API's own answers, asked here over HTTP: the kept
steps, the sample each step's model writes (same prompt, temperature and seed), that model's
attention weights and next-token top 5. Also: a late answer for an old step never replaces the
current one, play walks through every step, a run that kept nothing says how to keep some, and
the page logged no error and asked nothing outside 127.0.0.1. Screenshot: $LUCIDLM_ARTIFACTS/learn.png.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from browser import ConsoleLog, RequestLog, chromium, serve_app, skip_without_browser

SMOL = "smollm2-135m-instruct"
ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))
RUN, PLAIN = "runs/tiny", "runs/plain"
PROMPT, TEMP, TOKENS = "ROMEO:\n", 0.8, 120  # the panel's defaults
NO_CHECKPOINTS = "This run kept no checkpoints: train with keep_every = N (make demo does) to watch it learn here."


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """runs/tiny: a real 60-step character-level run that kept its model at 0, 20, 40, 60;
    runs/plain: a run with metrics and no kept models."""
    from lucidlm.data import prepare_dataset
    from lucidlm.train import TrainConfig, train

    root = tmp_path_factory.mktemp("learn")
    (root / "t.txt").write_text("ROMEO:\nTo be or not to be, that is the question.\n" * 300)
    prepare_dataset(str(root / "t.txt"), root / "data", tokenizer="char")
    cfg = TrainConfig(data=str(root / "data"), out_dir=str(root / "runs" / "tiny"), max_steps=60, keep_every=20,
                      batch_size=8, block_size=32, lr=1e-2, warmup_steps=5, eval_interval=20, eval_iters=1,
                      progress=False, log_interval=10,
                      model={"n_layer": 2, "n_head": 2, "n_embd": 32, "max_seq_len": 160})
    train(cfg)
    plain = root / "runs" / "plain" / "metrics.jsonl"
    plain.parent.mkdir(parents=True)
    plain.write_text("".join(json.dumps({"step": s, "split": "train", "loss": 4.0 / s}) + "\n" for s in (1, 2, 3)))
    return root / "runs"


@pytest.fixture(scope="module")
def server(smollm2_path, runs_root):
    skip_without_browser()
    pytest.importorskip("fastapi")
    from lucidlm.explorer.app import create_app
    from lucidlm.explorer.workspace import Workspace

    ws = Workspace([SMOL], runs=[str(runs_root)])  # SmolLM2 loads only if asked: nothing here asks
    with serve_app(create_app(ws)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b

@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)
    page.requests, page.console = RequestLog(page), ConsoleLog(page)
    yield page
    page.close()


def api(server: str, path: str, body: dict | None = None, **params) -> dict:
    """Ask the explorer's API directly (not through the page)."""
    url = f"{server}/api/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def tensor(obj: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(obj["b64"]), dtype=obj["dtype"]).reshape(obj["shape"])


def assert_clean(page) -> None:
    assert page.requests.outside_loopback() == []
    assert page.console.errors == []


def open_learn(page, server: str, run: str = RUN, **params) -> None:
    page.goto(f"{server}/?" + urllib.parse.urlencode({"panel": "runs", "run": run, **params}))


def wait_shown(page, step: int) -> None:
    """Until the sample and the head of `step` are drawn."""
    page.wait_for_function(f"""() => {{
      const d = document.querySelector('.runs-panel .learn')?.dataset;
      return d && d.sampleStep === '{step}' && d.headStep === '{step}';
    }}""")


def move_slider(page, index: int) -> None:
    page.eval_on_selector("#lstep", "(el, i) => { el.value = i; el.dispatchEvent(new Event('input')); }", index)


def lens_tops(runs_root: Path, step: int, ids: list[int]) -> list[int]:
    """The logit lens at the last position, by PyTorch hooks alone: each block's input plus its
    attention's output (the stream after attention, pre-LN blocks), and each block's output (after
    the MLP), read through the final norm and the output head; the top token of each, in depth order."""
    import torch

    from lucidlm import load_model

    model, _ = load_model(runs_root / "tiny" / "steps" / f"step_{step:06d}")
    seen, handles = [], []
    for block in model.layers:
        handles.append(block.register_forward_pre_hook(lambda m, args, kw: seen.append(("in", args[0])),
                                                       with_kwargs=True))
        handles.append(block.attn.register_forward_hook(lambda m, args, out: seen.append(("attn", out))))
        handles.append(block.register_forward_hook(lambda m, args, out: seen.append(("out", out))))
    with torch.inference_mode():
        model(torch.tensor([ids]))
    for handle in handles:
        handle.remove()
    readings = []
    for (_, x_in), (_, attn), (_, out) in zip(seen[0::3], seen[1::3], seen[2::3]):
        readings += [(x_in + attn)[0, -1], out[0, -1]]
    with torch.inference_mode():
        return [int(model.lm_head(model.norm(x)).argmax()) for x in readings]


def test_the_slider_steps_through_the_kept_models_as_the_api_gives_them(server, page, runs_root):
    steps = api(server, "runs/checkpoints", run=RUN)["steps"]
    assert steps == [0, 20, 40, 60]
    open_learn(page, server)
    wait_shown(page, steps[-1])  # opens on the run's latest model
    assert json.loads(page.get_attribute("#lstep", "data-steps")) == steps
    ticks = page.eval_on_selector_all(".learn-tick", "ts => ts.map((t) => t.textContent)")
    assert ticks == [str(s) for s in steps]
    assert page.get_attribute(".runs-plot", "data-mark-step") == str(steps[-1])  # the chart's line

    texts = {}
    for index in (0, 2):
        step = steps[index]
        move_slider(page, index)
        wait_shown(page, step)
        assert f"lstep={step}" in page.url
        assert page.get_attribute(".runs-plot", "data-mark-step") == str(step)
        want = api(server, "runs/sample", {"run": RUN, "step": step, "text": PROMPT, "max_tokens": TOKENS,
                                           "temperature": TEMP, "seed": 0})
        texts[step] = page.eval_on_selector(".learn-sample .learn-text", "e => e.textContent")
        assert texts[step] == want["text"]
        assert page.eval_on_selector(".learn-sample .learn-prompt", "e => e.textContent") == PROMPT

        # the head drawn is the API's head of RUN@STEP (the last layer, head 0 by default)
        meta = api(server, "trace", {"model": f"{RUN}@{step}", "text": PROMPT})
        layer = meta["n_layer"] - 1
        weights = tensor(api(server, "attention/head", trace=meta["trace"], layer=layer, head=0)["weights"])
        assert page.get_attribute(".learn-heat", "data-layer") == str(layer)
        assert json.loads(page.get_attribute(".learn-heat", "data-last-row")) == weights[-1].astype(float).tolist()
        plot = json.loads(page.get_attribute(".learn-heat", "data-plot"))
        row, col = len(meta["ids"]) - 1, 2  # hover a cell: the readout gives its weight
        page.hover(".learn-heat", position={"x": plot["left"] + (col + 0.5) * plot["cell"],
                                            "y": plot["top"] + (row + 0.5) * plot["cell"]})
        assert float(page.get_attribute(".learn-readout", "data-value")) == float(weights[row, col])
        # the next-token top 5, from the trace's logits
        logits = tensor(meta["next"]["logits"])
        top = sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:5]
        assert json.loads(page.get_attribute(".learn-bars", "data-top")) == top
        # the logit lens at the last token: each row's top token as a plain-PyTorch lens reads it
        tops = json.loads(page.get_attribute(".learn-lens", "data-tops"))
        assert tops == lens_tops(runs_root, step, meta["ids"])
        final = int(np.argmax(logits))
        depth = int(page.get_attribute(".learn-lens", "data-depth"))
        assert tops[depth:] == [final] * (len(tops) - depth) and (depth == 0 or tops[depth - 1] != final)
    assert texts[0] != texts[40]  # noise at step 0; 40 steps later the model writes something else

    # another head: the trace is reused, the weights are the API's for that head
    page.select_option("#llayer", "0")
    page.select_option("#lhead", "1")
    page.wait_for_function("document.querySelector('.learn-heat').dataset.head === '1'")
    meta = api(server, "trace", {"model": f"{RUN}@40", "text": PROMPT})
    weights = tensor(api(server, "attention/head", trace=meta["trace"], layer=0, head=1)["weights"])
    assert json.loads(page.get_attribute(".learn-heat", "data-last-row")) == weights[-1].astype(float).tolist()
    assert "llayer=0" in page.url and "lhead=1" in page.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "learn.png"), full_page=True)  # the whole panel, under the page's header
    assert_clean(page)


def test_a_late_answer_for_an_old_step_never_replaces_the_current_one(server, page):
    open_learn(page, server, lstep=0, lprompt="To be")
    wait_shown(page, 0)
    # hold back step 20's sample by 1 s, so it arrives after step 40's
    page.evaluate("""() => {
      const fetch0 = window.fetch;
      window.fetch = async (url, opts) => {
        const response = await fetch0(url, opts);
        if (opts?.body?.includes('"step":20')) await new Promise((r) => setTimeout(r, 1000));
        return response;
      };
    }""")
    move_slider(page, 1)
    page.wait_for_timeout(150)
    move_slider(page, 2)
    wait_shown(page, 40)
    page.wait_for_timeout(1300)  # step 20's answer has come and gone
    want = api(server, "runs/sample", {"run": RUN, "step": 40, "text": "To be", "max_tokens": TOKENS,
                                       "temperature": TEMP, "seed": 0})
    assert page.eval_on_selector(".learn-sample .learn-text", "e => e.textContent") == want["text"]
    assert page.get_attribute(".runs-panel .learn", "data-sample-step") == "40"

    # a prompt the character vocabulary cannot spell: the API's message, and the page goes on
    page.fill("#lprompt", "日本")
    page.wait_for_selector(".learn-message .error")
    status = 0
    try:
        api(server, "runs/sample", {"run": RUN, "step": 40, "text": "日本"})
    except urllib.error.HTTPError as error:
        status, message = error.code, json.load(error)["error"]["message"]
    assert status == 400 and page.inner_text(".learn-message .error") == message
    assert page.eval_on_selector(".learn-sample", "e => e.textContent") == ""  # no old sample under the new prompt
    page.fill("#lprompt", "To be")
    page.wait_for_function("!document.querySelector('.learn-message .error')")
    assert page.requests.outside_loopback() == []  # the 400 above logs a console line; no other error
    assert [e for e in page.console.errors if "status of 4" not in e] == []


def test_play_walks_through_every_kept_step(server, page):
    open_learn(page, server, lstep=0)
    wait_shown(page, 0)
    page.evaluate("""() => {
      window.seen = ['0'];
      new MutationObserver(() => {
        const s = document.querySelector('.runs-panel .learn').dataset.sampleStep;
        if (window.seen.at(-1) !== s) window.seen.push(s);
      }).observe(document.querySelector('.runs-panel .learn'), {attributes: true});
    }""")
    page.click(".learn-play")
    page.wait_for_function("window.seen.at(-1) === '60' && document.querySelector('.learn-play').textContent.includes('play')",
                           timeout=15_000)
    assert page.evaluate("window.seen") == ["0", "20", "40", "60"]
    assert_clean(page)


def test_a_run_without_kept_models_says_how_to_keep_them(server, page):
    assert api(server, "runs/checkpoints", run=PLAIN)["steps"] == []
    open_learn(page, server, run=PLAIN)
    assert page.wait_for_selector(".learn-none").inner_text() == NO_CHECKPOINTS
    page.select_option("#run", RUN)  # and another run shows its steps
    wait_shown(page, 60)
    assert page.query_selector(".learn-none") is None
    assert_clean(page)
