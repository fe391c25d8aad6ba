"""The Explorer's views inline in a Jupyter notebook, offline: attention, the logit lens, tokens.

    import torch, lucidlm
    from lucidlm.inspection import Trace
    from lucidlm.explorer import show_attention, show_logit_lens, show_tokens

    model, tok = lucidlm.load_model("smollm2-135m-instruct")
    ids = tok.encode("The capital of France is")
    trace = Trace()
    model(torch.tensor([ids]), trace=trace)
    show_attention(trace, [tok.decode([i]) for i in ids])   # every head; click one to open it
    show_logit_lens(trace, model, tok, ids)
    show_tokens(tok, "The capital of France is")

Each ``show_*`` returns a ``Widget``: a cell's last value (or ``IPython.display.display(w)``)
draws it through ``_repr_html_``; ``w.save("attention.html")`` writes it as a page of its own.
IPython is not needed to build one. The numbers are computed by the functions the Explorer's
HTTP API answers with (``forward.attention_grid``, ``forward.attention_head``,
``forward.logit_lens``, ``tokens.token_spans``), so a widget and ``lucidlm explore`` agree.

How the JavaScript gets into the output, without a server or a CDN: the drawing code is the
Explorer's own ES modules (``static/lib/widget.js`` and what it imports: ``heatmap.js``,
``colors.js``, ``tensor.js``, ``spans.js``, ...). A notebook output cannot import a module by URL
(there is nothing to serve it), so ``bundle`` inlines them: each module's source (whole-line
comments dropped, for size) is wrapped in a function scope, run in dependency order, and its
exports kept in a table; ``import {a, b} from "./x.js"`` becomes
``const {a, b} = modules["lib/x.js"]`` and ``export`` is dropped from each declaration. The result
is one classic ``<script>``: no ``type="module"``, no ``blob:`` or ``data:`` URL, so it runs
wherever a notebook runs an output's scripts (JupyterLab, Notebook 7, VS Code, an exported HTML
file) whatever the page's content-security policy says about blobs. The bundler reads only the two
forms the Explorer's modules use (named or namespace imports of relative paths; ``export`` before
``function``, ``class``, ``const``, ``let``) and raises on anything else rather than guess.

Several widgets in one notebook: each output gets its own element id (a fresh one per render,
so one widget displayed twice is two independent copies), its code runs in its own function
scope, and every CSS rule is scoped under ``.lucidlm-widget``; nothing is global. Where scripts do
not run (an untrusted notebook, GitHub's viewer) the output says so instead of staying blank.

Size (everything is embedded, so it is bounded): the code and style are ~40 KB per widget; the
attention weights at most ``MAX_CELLS`` (1,000,000) float16 numbers, ~2.7 MB of base64: all heads
of all layers when they fit, else those of one layer (``layer=``, the thumbnails still show every
head), and a clear ``ValueError`` when one layer alone is too long (about 330 tokens for 9 heads).
The thumbnails shrink (max-pooled) to stay within ``MAX_CELLS`` bytes too; the lens shows at most
64 positions; the token view refuses texts of more than ``MAX_TOKENS`` tokens.
"""

from __future__ import annotations

import html
import json
import math
import posixpath
import re
import uuid
from pathlib import Path

import torch

from lucidlm.explorer.forward import THUMB, TraceRecord, attention_grid, attention_head, logit_lens, trace_id
from lucidlm.explorer.tokens import token_spans
from lucidlm.inspection.trace import Trace
from lucidlm.inspection.walkthrough import model_kind, resolve_indices, token_labels

STATIC = Path(__file__).parent / "static"
ENTRY = "lib/widget.js"  # the module whose mountWidget draws every widget
MAX_CELLS = 1_000_000  # attention weights embedded at most (float16: 2 MB, ~2.7 MB as base64)
MAX_TOKENS = 20_000  # tokens a token view draws at most (one element each)
REGISTRY = "__lucidlmModules"  # the name of the bundle's module table, inside its function scope


class Widget:
    """One view of the Explorer for a notebook: ``_repr_html_`` gives its self-contained HTML."""

    def __init__(self, kind: str, data: dict, title: str) -> None:
        self.kind = kind  # "attention", "lens" or "tokens": which view widget.js draws
        self.data = data  # the JSON it draws, computed by the Explorer API's own functions
        self.title = title  # a one-line summary, shown above the view (and without JavaScript)

    def _repr_html_(self) -> str:
        return widget_html(self.kind, self.data, self.title)

    def save(self, path: str | Path) -> Path:
        """Write the widget as a page of its own (opens offline in any browser)."""
        path = Path(path)
        page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title></head>\n<body>\n{self._repr_html_()}\n</body></html>\n")
        path.write_text(page, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return f"<lucidlm widget: {self.title} (drawn in a notebook; .save('page.html') writes a page)>"


# -- the bundler -----------------------------------------------------------------------------------

# import {a, b as c} from "./x.js";   import * as api from "../lib/api.js";   (may span lines)
_IMPORT = re.compile(r'^import\s*(?:\{(?P<names>[^}]*)\}|\*\s*as\s+(?P<star>\w+))\s*from\s*"(?P<spec>[^"]+)";?[ \t]*$',
                     re.M)
_EXPORT = re.compile(r"^export\s+(?=(?:async\s+)?function\b|class\b|const\b|let\b)", re.M)
_EXPORT_NAME = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|class|const|let)\s+(\w+)", re.M)
_LEFTOVER = re.compile(r"^\s*(?:import|export)\b.*$", re.M)


def strip_comments(source: str) -> str:
    """``source`` without its whole-line comments (``// ...`` lines, ``/* ... */`` blocks that
    start a line) and blank lines. Comments after code on the same line stay: telling them from a
    ``//`` inside a string would need a JavaScript tokenizer.

    >>> strip_comments('// top\\n/** doc\\n * more */\\nconst a = 1; // kept\\n\\nlet b;')
    'const a = 1; // kept\\nlet b;'
    """
    out: list[str] = []
    in_block = False
    for line in source.splitlines():
        if in_block:
            end = line.find("*/")
            if end < 0:
                continue
            in_block, line = False, line[end + 2:]
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        if stripped.startswith("/*"):
            end = stripped.find("*/", 2)
            if end < 0:
                in_block = True
                continue
            line = stripped[end + 2:]
        if line.strip():
            out.append(line)
    return "\n".join(out)


def _resolve(importer: str, spec: str) -> str:
    """A relative import specifier as a path under static/: ("lib/a.js", "./b.js") -> "lib/b.js"."""
    if not spec.startswith(("./", "../")):
        raise RuntimeError(f"{importer} imports {spec!r}: the notebook bundler inlines relative imports only")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec))
    if path.startswith("..") or not (STATIC / path).is_file():
        raise RuntimeError(f"{importer} imports {spec!r}, which is not a file under {STATIC}")
    return path


def _convert(path: str) -> tuple[str, list[str]]:
    """One module as a function body that returns its exports, and the modules it imports."""
    source = strip_comments((STATIC / path).read_text(encoding="utf-8"))
    deps: list[str] = []

    def to_const(m: re.Match) -> str:
        target = _resolve(path, m["spec"])
        deps.append(target)
        if m["star"]:
            return f'const {m["star"]} = {REGISTRY}["{target}"];'
        names = [re.sub(r"\s+as\s+", ": ", n.strip()) for n in m["names"].split(",") if n.strip()]
        return f'const {{ {", ".join(names)} }} = {REGISTRY}["{target}"];'

    source = _IMPORT.sub(to_const, source)
    exports = _EXPORT_NAME.findall(source)
    source = _EXPORT.sub("", source)
    leftover = _LEFTOVER.search(source)
    if leftover:
        raise RuntimeError(f"{path}: the notebook bundler does not read {leftover[0].strip()!r} (it reads "
                           "'import {...} from \"./x.js\"', 'import * as x from ...' and 'export' before a "
                           "function, class, const or let)")
    body = f'"use strict";\n{source}\nreturn {{ {", ".join(exports)} }};'
    return body, deps


def bundle(entry: str = ENTRY) -> str:
    """``entry`` and every module it imports, in dependency order, as statements that fill
    ``__lucidlmModules[path]`` with each module's exports (see the module docstring)."""
    done: dict[str, str] = {}  # path -> its wrapped code, in the order they must run

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in done:
            return
        if path in chain:
            raise RuntimeError(f"import cycle: {' -> '.join(chain + (path,))}")
        body, deps = _convert(path)
        for dep in deps:
            visit(dep, chain + (path,))
        done[path] = f'{REGISTRY}["{path}"] = (() => {{\n{body}\n}})();'

    visit(entry, ())
    code = f"const {REGISTRY} = {{}};\n" + "\n".join(done.values())
    # the code sits in a <script> element, which ends at the first "</script" whatever the JS means
    assert "</script" not in code.lower() and "<!--" not in code, "inlined code would end its <script> early"
    return code


def widget_html(kind: str, data: dict, title: str) -> str:
    """The self-contained HTML of one widget: its style, its data as JSON, the bundled code."""
    uid = f"lucidlm-{uuid.uuid4().hex[:12]}"
    # "<" escaped as \u003c (the same string to JSON.parse): no "</script>" inside the data
    payload = json.dumps({"kind": kind, **data}, ensure_ascii=False, allow_nan=False,
                         separators=(",", ":")).replace("<", "\\u003c")
    css = (STATIC / "lib" / "widget.css").read_text(encoding="utf-8")
    fallback = ("This lucidlm widget draws with JavaScript, which did not run here: in Jupyter, trust the "
                "notebook (or run the cell again); GitHub's notebook viewer never runs an output's scripts.")
    return f"""<div class="lucidlm-widget" id="{uid}" data-kind="{kind}">
<style>{css}</style>
<div class="lw-header">lucidlm · {html.escape(title)}</div>
<div class="lw-body"><p class="lw-message">{fallback}</p></div>
<script type="application/json" class="lw-data">{payload}</script>
<script>
(() => {{
"use strict";
// the script's own widget: currentScript where the front end sets it, else the widget's unique id
const root = (document.currentScript && document.currentScript.closest(".lucidlm-widget")) ||
  document.getElementById("{uid}");
if (!root) {{ console.error("lucidlm widget {uid}: its element is not in the page"); return; }}
const body = root.querySelector(".lw-body");
try {{
{bundle()}
{REGISTRY}["{ENTRY}"].mountWidget(body, JSON.parse(root.querySelector("script.lw-data").textContent));
}} catch (error) {{
  const box = document.createElement("div");
  box.className = "lw-error";
  box.textContent = `The widget failed: ${{error && error.stack || error}}`;
  body.replaceChildren(box);
  console.error(error);
}}
}})();
</script>
</div>"""


# -- from a trace to the Explorer's record ---------------------------------------------------------

def _record(trace: Trace | TraceRecord, labels: list[str] | None = None, ids: list[int] | None = None,
            model=None) -> TraceRecord:
    """A ``Trace`` (batch item 0) as the ``TraceRecord`` the Explorer's view functions read:
    the attention weights of every layer (float16, as ``run_trace`` keeps them), the residual
    stream after each attention and MLP and the last logits when the trace recorded them. A
    ``TraceRecord`` (``forward.run_trace``) is returned as it is."""
    if isinstance(trace, TraceRecord):
        return trace
    if not isinstance(trace, Trace):
        raise ValueError(f"expected a lucidlm.inspection.Trace filled by a forward pass (model(ids, trace=trace)), "
                         f"got {type(trace).__name__}")
    L = 0
    while f"layers.{L}.attn.weights" in trace:
        L += 1
    if L == 0:
        hint = (" (an encoder-decoder's trace: its halves are not drawn here)" if trace.names("coder.layers.")
                else "")
        raise ValueError("this trace holds no attention weights ('layers.0.attn.weights'): run the model with "
                         f"trace=Trace() or Trace(keep=['attn.weights']) first{hint}")
    weights = [trace[f"layers.{i}.attn.weights"][0].to(torch.float16) for i in range(L)]  # (nh, T, S) each
    T, S = weights[0].shape[-2:]
    for given, noun in ((labels, "token labels"), (ids, "ids")):
        if given is not None and len(given) != T:
            raise ValueError(f"{len(given)} {noun} for a trace of {T} tokens: give one per token the model read")
    if model is not None:
        kind = model_kind(model)
    else:  # a causal model's weights are exactly 0 where a token would look ahead (softmax of -inf)
        future = torch.ones(T, S, dtype=torch.bool).triu(S - T + 1)  # (T, S) True where j > i + (S - T)
        causal = T > 1 and all(bool((w[:, future] == 0).all()) for w in weights)
        kind = "decoder" if causal else "encoder"
    after_attn = after_mlp = last = None
    if all(f"layers.{i}.attn.resid" in trace and f"layers.{i}.mlp.resid" in trace for i in range(L)):
        after_attn = torch.stack([trace[f"layers.{i}.attn.resid"][0] for i in range(L)])  # (L, T, C)
        after_mlp = torch.stack([trace[f"layers.{i}.mlp.resid"][0] for i in range(L)])  # (L, T, C)
    if "logits" in trace:
        last = trace["logits"][0, -1].float()  # (V,)
    ids = list(ids) if ids is not None else list(range(T))  # without ids: positions (only the count is read)
    labels = list(labels) if labels is not None else [str(i) for i in range(T)]
    return TraceRecord(trace_id("notebook", ids), "notebook", kind, ids, labels, weights, after_attn, after_mlp, last)


def _check_labels(tokens) -> list[str] | None:
    if tokens is None:
        return None
    tokens = list(tokens)
    if not all(isinstance(t, str) for t in tokens):
        raise ValueError("tokens are the labels to write on the axes, one string per token: e.g. "
                         "[tok.decode([i]) for i in ids]")
    return tokens


# -- the widgets ---------------------------------------------------------------------------------

def show_attention(trace: Trace | TraceRecord, tokens: list[str] | None = None, *, layer: int | None = None,
                   head: int | None = None, model=None) -> Widget:
    """Every layer x head of ``trace`` as a thumbnail, and one head's full weights with the
    tokens on its axes; click a thumbnail to open that head (the Explorer's Attention panel).

    ``tokens``: one label per token (default: positions); ``layer``, ``head``: the head opened
    first (default 0, 0; negative counts from the end); ``model``: names grouped-query heads and
    says whether the model is causal (otherwise read from the weights: zeros above the diagonal).
    A trace with more weights than ``MAX_CELLS`` embeds one layer's heads (``layer``) in full."""
    rec = _record(trace, _check_labels(tokens), model=model)
    L, nh = len(rec.weights), rec.weights[0].shape[0]
    T, S = rec.weights[0].shape[-2:]
    layer = resolve_indices([0 if layer is None else layer], L, "layer", "the trace")[0]
    head = resolve_indices([0 if head is None else head], nh, "head", "the trace")[0]
    per_layer = nh * T * S
    note = None
    if L * per_layer <= MAX_CELLS:
        layers = range(L)
    elif per_layer <= MAX_CELLS:
        layers = [layer]
        note = (f"Full weights of layer {layer} only: all {L} layers hold {L * per_layer:,} weights, more than a "
                f"notebook widget embeds ({MAX_CELLS:,}). The thumbnails show every head; "
                "show_attention(trace, layer=k) opens layer k.")
    else:
        longest = math.isqrt(MAX_CELLS // nh)
        raise ValueError(f"{T} tokens is too long for a notebook widget: one layer's {nh} heads hold "
                         f"{per_layer:,} weights, more than it embeds ({MAX_CELLS:,}, ~2.7 MB). Trace at most "
                         f"~{longest} tokens, or open the prompt in `lucidlm explore`, which loads each head as "
                         "it is clicked")
    size = max(1, min(THUMB, math.isqrt(MAX_CELLS // (L * nh))))  # thumbnails within MAX_CELLS bytes too
    heads = {f"{i}/{j}": attention_head(rec, i, j)["weights"] for i in layers for j in range(nh)}
    kv = model.cfg.kv_heads if model is not None else nh
    meta = {"labels": rec.labels, "n_layer": L, "n_head": nh, "kv_heads": kv, "causal": rec.kind == "decoder"}
    data = {"meta": meta, "grid": attention_grid(rec, size), "heads": heads, "note": note,
            "selected": {"layer": layer, "head": head}}
    return Widget("attention", data, f"attention: {L} layers × {nh} heads, {T} tokens")


def show_logit_lens(trace: Trace | TraceRecord, model, tokenizer, ids: list[int] | None = None, *,
                    last: int = 16) -> Widget:
    """The logit lens of a decoder's trace: the top token (and its probability) read from the
    residual stream after every attention and every MLP, through the final norm and the output
    head, at the last ``last`` positions (1..64); the bottom row is the model's own output.

    ``trace`` must hold every layer's ``attn.resid`` and ``mlp.resid`` (a plain ``Trace()``
    records them); ``ids``: the ids the model read, to label the columns (default: positions)."""
    labels = token_labels(tokenizer, list(ids)) if ids is not None else None
    rec = _record(trace, labels, ids, model)
    if rec.after_mlp is None:
        raise ValueError("the logit lens reads the residual stream, which this trace did not record: run the "
                         "model with trace=Trace() or Trace(keep=['attn.resid', 'mlp.resid'])")
    lens = logit_lens(model, tokenizer, rec, last)  # raises a clear ValueError for an encoder
    L = rec.after_mlp.shape[0]
    data = {"meta": {"labels": rec.labels}, "lens": lens}
    return Widget("lens", data, f"logit lens: {L} layers, the last {len(lens['positions'])} positions")


def show_tokens(tokenizer, text: str, *, add_special: bool = True, name: str | None = None) -> Widget:
    """``text`` as the tokenizer splits it: coloured spans, the ids below, each token's id and
    bytes on hover (the Explorer's Tokens panel). ``add_special``: add BOS (or [CLS] ... [SEP])
    as the model would read the text."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    spans = token_spans(tokenizer, text, add_special=add_special)
    if len(spans["ids"]) > MAX_TOKENS:
        raise ValueError(f"{len(spans['ids']):,} tokens is more than a notebook widget draws ({MAX_TOKENS:,}): "
                         "show a part of the text, or paste it into `lucidlm explore`'s Tokens panel")
    name = name or getattr(tokenizer, "name", None) or type(tokenizer).__name__
    count = len(spans["ids"])
    title = f"tokens: {name}, {count:,} token{'s' if count != 1 else ''} for {len(text):,} characters"
    return Widget("tokens", {"text": text, "spans": spans}, title)
