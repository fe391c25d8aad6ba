"""The notebook widgets (lucidlm/explorer/notebook.py): the Explorer's views inline in Jupyter, offline.

1. A notebook that traces a prompt through a tiny random GPT (the GPT-2 tokenizer) and shows the
   three widgets runs headless under nbclient; each output is self-contained HTML: the widget,
   the static modules' code inlined, and no URL that would leave the machine.
2. Those outputs, put in one page, in a real chromium: no console error, the heatmap drawn, a
   click on a thumbnail opens that head (in its own widget only), and the weight shown under the
   pointer is the trace's weight, read by the notebook itself with numpy; the lens's output row
   is the logits' argmax; the token spans spell the text.
3. The Python side without a kernel: the size limits, bad input, the bundler on odd modules.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lucidlm.explorer import notebook
from lucidlm.explorer.notebook import bundle, show_attention, show_logit_lens, show_tokens
from lucidlm.inspection import Trace

sys.path.insert(0, str(Path(__file__).parent))
from browser import ConsoleLog, RequestLog, chromium  # noqa: E402

STATIC = Path(notebook.__file__).parent / "static"
TEXT = "The cat sat on the mat."
TOKENS_TEXT = "Hello world!\nA second line, with  two spaces."

SETUP = f"""
import json
import numpy as np
import torch
from IPython.display import display
from lucidlm.explorer import show_attention, show_logit_lens, show_tokens
from lucidlm.inspection import Trace
from lucidlm.models import DecoderLM, ModelConfig
from lucidlm.tokenizers import load_tokenizer

tok = load_tokenizer("gpt2")
torch.manual_seed(0)
cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_embd=32, max_seq_len=64)
model = DecoderLM(cfg).eval()
ids = tok.encode({TEXT!r})
trace = Trace()
with torch.inference_mode():
    model(torch.tensor([ids]), trace=trace)
labels = [tok.decode([i]) for i in ids]
# the reference the browser test compares with: the trace's own tensors, read here
np.save("weights.npy", torch.stack([trace[f"layers.{{i}}.attn.weights"][0] for i in range(2)]).numpy())
np.save("argmax.npy", trace["logits"][0].argmax(-1).numpy())
"""
CELLS = [
    SETUP,
    "show_attention(trace, labels, layer=1, head=2)",  # a cell's last value: _repr_html_
    "show_logit_lens(trace, model, tok, ids)",
    f"show_tokens(tok, {TOKENS_TEXT!r})",
    "w = show_attention(trace, labels)\ndisplay(w)\ndisplay(w)",  # one widget shown twice: two copies
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The notebook executed headless: (the HTML of each widget output, in order, the folder)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    folder = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    # jupyter_client starts the "python3" kernel with this interpreter (the kernelspec's "python")
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(nb, folder / "widgets.ipynb")
    html = [out["data"]["text/html"] for cell in nb.cells for out in cell.outputs if "text/html" in out.get("data", {})]
    return html, folder


def test_notebook_outputs_hold_the_widgets_with_their_code_and_no_url(outputs):
    html, _ = outputs
    kinds = [re.search(r'data-kind="(\w+)"', h)[1] for h in html]
    assert kinds == ["attention", "lens", "tokens", "attention", "attention"]
    ids = [re.search(r'class="lucidlm-widget" id="([\w-]+)"', h)[1] for h in html]
    assert len(set(ids)) == len(ids), "every output needs its own element id"
    # every function of the modules the widgets draw with, inlined verbatim (less "export ")
    for module in ["widget.js", "heatmap.js", "colors.js", "tensor.js", "spans.js", "text.js"]:
        source = (STATIC / "lib" / module).read_text(encoding="utf-8")
        functions = [line.replace("export ", "", 1) for line in source.splitlines()
                     if re.match(r"(export )?function \w+\(", line)]
        assert functions, module
        for h in html:
            missing = [f for f in functions if f not in h]
            assert not missing, f"{module} not inlined: {missing[:3]}"
    for h in html:
        assert not re.search(r"https?:|//cdn|\bsrc\s*=|url\(|@import|\bimport\s*\(|type=\"module\"", h, re.I)
        assert len(h) < 300_000


def _cell_point(page, widget, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of the centre of cell (row, col) of a widget's heatmap (its data-plot box)."""
    overlay = page.locator(f"#{widget} .lw-overlay")
    plot = json.loads(overlay.get_attribute("data-plot"))
    box = overlay.bounding_box()
    x = box["x"] + plot["left"] + (col + 0.5) * plot["width"] / plot["cols"]
    y = box["y"] + plot["top"] + (row + 0.5) * plot["height"] / plot["rows"]
    return x, y


def _readout(page, widget: str, row: int, col: int) -> tuple[float, str]:
    page.mouse.move(*_cell_point(page, widget, row, col))
    readout = page.locator(f"#{widget} .lw-readout")
    assert readout.get_attribute("data-row") == str(row) and readout.get_attribute("data-col") == str(col)
    return float(readout.get_attribute("data-value")), readout.inner_text()


def test_widgets_draw_in_chromium_and_show_the_traces_numbers(outputs):
    html, folder = outputs
    weights = np.load(folder / "weights.npy")  # (L, nh, T, T) float32, as the model computed them
    argmax = np.load(folder / "argmax.npy")  # (T,)
    expected = weights.astype(np.float16).astype(np.float32)  # the widget embeds float16, as the Explorer does
    T = weights.shape[-1]
    ids = [re.search(r'class="lucidlm-widget" id="([\w-]+)"', h)[1] for h in html]
    page_html = "<!doctype html><html><head><meta charset='utf-8'></head><body>" + "\n".join(html) + "</body></html>"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        console, requests = ConsoleLog(page), RequestLog(page)
        page.set_content(page_html)
        page.wait_for_function("document.querySelectorAll('.lw-body[data-ready]').length === 5", timeout=10_000)
        assert console.errors == []
        assert requests.outside_loopback() == []

        first, copy_a, copy_b = ids[0], ids[3], ids[4]
        # the heatmap is drawn: many coloured pixels, not a blank canvas
        coloured = page.eval_on_selector(f"#{first} .lw-heatmap", """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240)) n++;
            return n / (c.width * c.height);
        }""")
        assert coloured > 0.3
        assert page.locator(f"#{first} .lw-thumb").count() == 2 * 4
        head = page.locator(f"#{first} .lw-headbox")
        assert (head.get_attribute("data-layer"), head.get_attribute("data-head")) == ("1", "2")
        for row, col in [(T - 1, 0), (T - 1, T - 1), (3, 2), (0, 0)]:
            value, text = _readout(page, first, row, col)
            assert value == pytest.approx(float(expected[1, 2, row, col]), abs=1e-7)
            assert f"{weights[1, 2, row, col]:.3f}" in text
        _, text = _readout(page, first, 1, 4)  # a future token of a causal model
        assert "masked" in text

        # a click on a thumbnail opens that head, in that widget only (the other copy stays)
        page.locator(f"#{copy_a} .lw-thumb[data-layer='0'][data-head='3']").click()
        head_a, head_b = page.locator(f"#{copy_a} .lw-headbox"), page.locator(f"#{copy_b} .lw-headbox")
        assert (head_a.get_attribute("data-layer"), head_a.get_attribute("data-head")) == ("0", "3")
        assert "Layer 0, head 3" in head_a.inner_text()
        assert (head_b.get_attribute("data-layer"), head_b.get_attribute("data-head")) == ("0", "0")
        assert head.get_attribute("data-head") == "2"
        for row, col in [(T - 1, 2), (4, 1)]:
            value, _ = _readout(page, copy_a, row, col)
            assert value == pytest.approx(float(expected[0, 3, row, col]), abs=1e-7)
            assert value != pytest.approx(float(expected[0, 0, row, col]), abs=1e-7)  # not head 0's number

        # the lens: one row per attention and MLP (+ the header); its output row is the model's argmax
        lens = page.locator(f"#{ids[1]} table.lw-lens")
        assert lens.locator("tbody tr").count() == 2 * 2
        tokens = [int(t) for t in lens.locator("tbody tr:last-child td").evaluate_all("tds => tds.map(td => td.dataset.token)")]
        assert tokens == argmax[-len(tokens):].tolist()

        # the tokens: with whitespace shown as itself, the spans spell the text
        spans = page.locator(f"#{ids[2]} .lw-tok")
        page.locator(f"#{ids[2]} input[type=checkbox]").uncheck()
        assert "".join(spans.all_inner_texts()) == TOKENS_TEXT
        spans.nth(1).hover()
        assert "token 1 · id" in page.locator(f"#{ids[2]} .lw-info").inner_text()
        assert console.errors == []


# -- the Python side, without a kernel ------------------------------------------------------------

def _trace(n_layer: int, n_head: int, T: int, causal: bool) -> Trace:
    """A hand-filled trace: softmax weights, masked above the diagonal when ``causal``."""
    trace = Trace()
    torch.manual_seed(0)
    for i in range(n_layer):
        scores = torch.randn(1, n_head, T, T)  # (1, nh, T, T)
        if causal:
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        trace.record(f"layers.{i}.attn.weights", torch.softmax(scores, -1))
    return trace


def test_causal_or_not_is_read_from_the_weights_and_the_embedded_head_is_the_traces(tmp_path):
    trace = _trace(2, 3, 6, causal=True)
    w = show_attention(trace, list("abcdef"), layer=-1, head=-1)
    assert w.save(tmp_path / "attention.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert w.data["meta"]["causal"] is True and w.data["selected"] == {"layer": 1, "head": 2}
    assert show_attention(_trace(1, 2, 6, causal=False)).data["meta"]["causal"] is False
    got = w.data["heads"]["1/2"]
    values = np.frombuffer(base64.b64decode(got["b64"]), dtype="<f2").reshape(got["shape"])
    np.testing.assert_array_equal(values, trace["layers.1.attn.weights"][0, 2].numpy().astype(np.float16))
    assert w.data["meta"]["labels"] == list("abcdef")


def test_size_limits_embed_one_layer_then_refuse(monkeypatch):
    trace = _trace(3, 2, 10, causal=True)  # 3 layers x 2 heads x 100 weights
    monkeypatch.setattr(notebook, "MAX_CELLS", 250)
    w = show_attention(trace, layer=2)
    assert sorted(w.data["heads"]) == ["2/0", "2/1"] and "layer 2 only" in w.data["note"]
    assert w.data["grid"]["size"] <= 6  # thumbnails within MAX_CELLS bytes: 3 * 2 * 6 * 6 = 216
    monkeypatch.setattr(notebook, "MAX_CELLS", 150)
    with pytest.raises(ValueError, match="10 tokens is too long for a notebook widget"):
        show_attention(trace)
    monkeypatch.setattr(notebook, "MAX_TOKENS", 3)
    with pytest.raises(ValueError, match="more than a notebook widget draws"):
        show_tokens(_gpt2(), "one two three four")


def _gpt2():
    from lucidlm.tokenizers import load_tokenizer

    try:
        return load_tokenizer("gpt2")
    except Exception as exc:  # not cached and offline
        pytest.skip(f"the gpt2 tokenizer asset cannot be had: {exc}")


def test_bad_input_gets_a_clear_message():
    with pytest.raises(ValueError, match="expected a lucidlm.inspection.Trace"):
        show_attention("not a trace")
    with pytest.raises(ValueError, match="holds no attention weights"):
        show_attention(Trace())
    with pytest.raises(ValueError, match="3 token labels for a trace of 6 tokens"):
        show_attention(_trace(1, 1, 6, causal=True), ["a", "b", "c"])
    with pytest.raises(ValueError, match="one string per token"):
        show_attention(_trace(1, 1, 2, causal=True), [1, 2])
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        show_attention(_trace(1, 1, 2, causal=True), layer=5)
    with pytest.raises(ValueError, match="did not record"):
        show_logit_lens(_trace(1, 1, 2, causal=True), model=None, tokenizer=None)


def test_the_bundler_rewrites_imports_and_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.js").write_text('// a comment with https://example.com\nexport const A = 2;\n'
                                           'export function twice(x) {\n  return A * x; // a trailing note\n}\n')
    (tmp_path / "lib" / "b.js").write_text('import { twice as double, A } from "./a.js";\nimport * as a from "./a.js";\n'
                                           "/** doc\n * lines */\nexport const result = [double(5), A, a.twice(1)];\n")
    monkeypatch.setattr(notebook, "STATIC", tmp_path)
    code = bundle("lib/b.js")
    assert "https" not in code and code.index('["lib/a.js"] = ') < code.index('["lib/b.js"] = ')
    if shutil.which("node"):
        run = f'{code}\nconsole.log(JSON.stringify(__lucidlmModules["lib/b.js"].result));'
        out = subprocess.run(["node", "-e", run], capture_output=True, text=True, timeout=30)
        assert json.loads(out.stdout) == [10, 2, 2], out.stderr
    (tmp_path / "lib" / "c.js").write_text('export default function f() {}\n')
    with pytest.raises(RuntimeError, match="does not read 'export default"):
        bundle("lib/c.js")
    (tmp_path / "lib" / "d.js").write_text('import { e } from "./e.js";\nexport const d = 1;\n')
    (tmp_path / "lib" / "e.js").write_text('import { d } from "./d.js";\nexport const e = 1;\n')
    with pytest.raises(RuntimeError, match="import cycle"):
        bundle("lib/d.js")
    (tmp_path / "lib" / "f.js").write_text('import { x } from "https://cdn.example.com/x.js";\n')
    with pytest.raises(RuntimeError, match="relative imports only"):
        bundle("lib/f.js")
