"""The Explorer's Cross-attention panel: a real (tiny) encoder-decoder trained here on the copy task
for a few seconds, asked through GET /api/seq2seq/examples and POST /api/seq2seq and in the page
(Debian's chromium via Playwright).

References, each independent of the code under test: the cross-attention weights recomputed by hand
from each block's q/kv projections (captured with PyTorch forward hooks) as softmax(q k^T / sqrt(d)),
the task's own held-out split (``make_splits``), and what copying means: a trained copy model reads
source character t while writing output character t (a diagonal).
"""

from __future__ import annotations

import json
import math
import os
import urllib.parse
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from browser import ConsoleLog, chromium, serve_app, skip_without_browser  # noqa: E402
from lucidlm.data.seq2seq_tasks import BOS, make_splits  # noqa: E402
from lucidlm.explorer.app import create_app  # noqa: E402
from lucidlm.explorer.workspace import Workspace  # noqa: E402
from lucidlm.generate.seq2seq_decode import encode_sources, translate  # noqa: E402

ARTIFACTS = Path(os.environ.get("LUCIDLM_ARTIFACTS", "test-artifacts/explorer"))


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory) -> str:
    """A 1+1-block model trained ~5 s on copying strings of 1..6 letters (held-out exact match ~1.0)."""
    from lucidlm.train.seq2seq import Seq2SeqConfig, train_seq2seq

    cfg = Seq2SeqConfig(task="copy", task_options={"symbols": "abcdefgh", "train_lengths": [1, 6],
                                                   "test_lengths": [3, 6]},
                        n_embd=32, ffn=64, n_head=2, n_layer=1, batch_size=32, lr=5e-3, warmup_steps=30, ema=0.9,
                        max_steps=300, minutes=1.0, eval_every=50, stop_at=0.98)
    out = tmp_path_factory.mktemp("s2s") / "copy"
    result = train_seq2seq(cfg, out, log=None)
    assert result.test_exact >= 0.9, result
    return str(out)


@pytest.fixture(scope="module")
def ws(copy_run):
    return Workspace([copy_run], runs=[], max_tokens=64)


@pytest.fixture(scope="module")
def client(ws):
    return TestClient(create_app(ws))


def _weights(answer: dict) -> torch.Tensor:
    import base64

    import numpy as np

    w = answer["weights"]
    return torch.from_numpy(np.frombuffer(base64.b64decode(w["b64"]), dtype="<f4").reshape(w["shape"]).copy())


def _by_hand(model, vocab, source: str, output: str) -> torch.Tensor:
    """(L, nh, T, S): each block's cross-attention from its own q and kv projections, captured by
    forward hooks on a plain forward pass (no trace): softmax(q k^T / sqrt(head size)) per head."""
    src, _ = encode_sources([source], vocab, "cpu")
    tgt = torch.tensor([[BOS] + vocab.encode(output)])
    seen = []
    hooks = [layer.cross_attn.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append((mod, args[0], kwargs["memory"])), with_kwargs=True)
        for layer in model.layers]
    try:
        with torch.no_grad():
            model(src, tgt)
    finally:
        for h in hooks:
            h.remove()
    blocks = []
    for mod, x, memory in seen:
        nh = mod.n_head
        hs = x.shape[-1] // nh
        with torch.no_grad():
            q = (x @ mod.q.weight.T + (mod.q.bias if mod.q.bias is not None else 0))[0]  # (T, C)
            kv = (memory @ mod.kv.weight.T + (mod.kv.bias if mod.kv.bias is not None else 0))[0]  # (S, 2C)
        k = kv[:, : nh * hs]
        heads = []
        for head in range(nh):
            cols = slice(head * hs, (head + 1) * hs)
            heads.append(torch.softmax(q[:, cols] @ k[:, cols].T / math.sqrt(hs), dim=-1))
        blocks.append(torch.stack(heads))
    return torch.stack(blocks)


def test_the_answer_and_its_cross_attention(copy_run, ws, client):
    info = client.get("/api/info").json()
    assert info["models"] == [{"name": copy_run, "loaded": False, "seq2seq": True}]
    model, task, vocab = ws.seq2seq(copy_run)

    ex = client.get("/api/seq2seq/examples", params={"model": copy_run}).json()
    want = make_splits(task).test[:8]  # the first examples `lucidlm seq2seq eval` scores
    assert ex["task"] == "copy" and [(e["source"], e["target"]) for e in ex["examples"]] == \
        [(e.source, e.target) for e in want]
    assert all(e["split"] == "test" for e in ex["examples"])

    for source in ["abcdef", "hgfe", "bad"]:
        r = client.post("/api/seq2seq", json={"model": copy_run, "text": source})
        assert r.status_code == 200, r.text
        a = r.json()
        assert a["output"] == translate(model, vocab, [source])[0] == source  # it learned to copy
        assert a["source_tokens"] == list(source) + ["<eos>"] and a["output_tokens"] == list(source) + ["<eos>"]
        w = _weights(a)
        assert list(w.shape) == [1, 2, len(source) + 1, len(source) + 1] == [a["n_layer"], a["n_head"], *w.shape[2:]]
        torch.testing.assert_close(w, _by_hand(model, vocab, source, a["output"]), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)
        # copying is a diagonal: output character t reads source character t most (heads averaged)
        assert w[0].mean(0).argmax(-1).tolist() == list(range(len(source) + 1))

    beam = client.post("/api/seq2seq", json={"model": copy_run, "text": "cafe", "beam": 4}).json()
    assert beam["beam"] == 4 and beam["output"] == translate(model, vocab, ["cafe"], beam=4)[0]


@pytest.mark.parametrize("body, status, message", [
    ({"text": "abz"}, 400, "not in this task's vocabulary"),
    ({"text": ""}, 400, "type a source text"),
    ({"text": "a" * 64}, 400, "this model reads at most"),
    ({"text": "a" * 201}, 400, "text"),
    ({"text": "abc", "beam": 3}, 400, "beam=3"),
    ({"text": "abc", "beam": 9}, 400, "beam"),
])
def test_bad_requests_say_what_is_wrong(copy_run, client, body, status, message):
    r = client.post("/api/seq2seq", json={"model": copy_run, **body})
    assert r.status_code == status and message in r.json()["error"]["message"], r.text


def test_unknown_models_and_the_other_panels(copy_run, client):
    r = client.post("/api/seq2seq", json={"model": "smollm2-135m-instruct", "text": "abc"})
    assert r.status_code == 404 and "unknown seq2seq model" in r.json()["error"]["message"]
    r = client.get("/api/seq2seq/examples", params={"model": "/etc"})
    assert r.status_code == 404
    r = client.post("/api/trace", json={"model": copy_run, "text": "abc"})  # a decoder panel's request
    assert r.status_code == 400 and "Cross-attention panel" in r.json()["error"]["message"]


def test_copy_as_python_computes_the_same_weights(copy_run, client, capsys):
    r = client.get("/api/python", params={"panel": "alignment", "model": copy_run, "text": "fedcba", "beam": 2})
    assert r.status_code == 200, r.text
    namespace: dict = {}
    exec(compile(r.json()["code"], "<alignment>", "exec"), namespace)  # noqa: S102 - our own server's code
    assert capsys.readouterr().out.startswith("fedcba\n")
    answer = client.post("/api/seq2seq", json={"model": copy_run, "text": "fedcba", "beam": 2}).json()
    torch.testing.assert_close(namespace["weights"], _weights(answer))


def test_the_panel_draws_every_block_and_checks_the_answer(copy_run, client, ws):
    skip_without_browser()
    examples = client.get("/api/seq2seq/examples", params={"model": copy_run}).json()["examples"]
    with serve_app(create_app(ws)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        console = ConsoleLog(page)
        page.goto(f"{url}/?" + urllib.parse.urlencode({"panel": "alignment"}))
        page.wait_for_selector(".align-answer[data-output]", timeout=60_000)
        assert page.input_value("#align-text") == examples[0]["source"]  # opens on the first held-out example
        assert page.locator(".align-example").count() == len(examples)
        assert page.locator(".align-heatmap").count() == 1

        page.click(f".align-example[data-source='{examples[2]['source']}']")
        page.wait_for_function(f"document.querySelector('.align-answer').dataset.output === {examples[2]['target']!r}")
        assert "✓ right" in page.inner_text(".align-answer")
        n = len(examples[2]["source"]) + 1
        assert page.get_attribute(".align-heatmap", "data-strongest") == ",".join(map(str, range(n)))

        # hover the cell (output 1, source 1): the readout holds the API's weight there
        answer = client.post("/api/seq2seq", json={"model": copy_run, "text": examples[2]["source"]}).json()
        w = _weights(answer)[0].mean(0)
        box = json.loads(page.get_attribute(".align-heatmap", "data-plot"))
        cell_w, cell_h = box["width"] / box["cols"], box["height"] / box["rows"]
        page.hover(".align-overlay", position={"x": box["left"] + 1.5 * cell_w, "y": box["top"] + 1.5 * cell_h})
        assert float(page.get_attribute(".align-readout", "data-value")) == pytest.approx(w[1, 1].item(), abs=1e-6)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "alignment.png"))
        assert console.errors == []

        page.select_option("#align-head", "1")
        page.wait_for_function("document.querySelector('figcaption').textContent.includes('head 1')")
        assert "head=1" in page.url and "text=" in page.url
        page.fill("#align-text", "abz")
        page.click("#align-run")
        page.wait_for_selector(".align-message .error")
        assert "not in this task's vocabulary" in page.inner_text(".align-message")
        assert page.locator(".align-heatmap").count() == 0  # no stale picture beside the error


def test_explore_starts_on_the_panel_with_an_encoder_decoder_first(copy_run):
    """`lucidlm explore --model RUN` loads the encoder-decoder (not as a decoder) and points at its panel."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lucidlm.cli", "explore", "--model", copy_run, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "the explorer is at" in line or "error" in line:
                break
        assert "?panel=alignment" in lines[-1], "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
