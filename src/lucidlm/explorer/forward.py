"""One traced forward pass of a prompt, and the views the Explorer reads from it.

``run_trace`` runs the model once with a ``Trace`` and keeps what the panels need: the attention
weights of every layer and head (float16: half the memory, 3 significant digits on hover), the
residual stream after each attention and each MLP (for the logit lens), and the last position's
logits. The views:
- ``attention_grid``: every layer x head as a small thumbnail (max-pooled, so a sharp diagonal
  survives the shrinking), bytes 0..255 for weights 0..1;
- ``attention_head``: one head's full (T, S) weights;
- ``logit_lens``: the top token read from the residual stream through the final norm and the
  output head (nostalgebraist 2020), after attention and after the MLP of every layer;
- ``next_token``: the last position's logits, sent whole so the page re-applies temperature,
  top-k, top-p and min-p with no new forward pass;
- ``walkthrough``: every stage of one layer (see ``equations.py`` and ``sources.py``).
Notation: L layers, nh heads, T tokens, S keys (= T here), C width, V vocabulary.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from lucidlm.explorer.equations import equations_for
from lucidlm.explorer.sources import source_of
from lucidlm.inspection.interventions import Edit, ablation_scan, build_edits, next_token_logits
from lucidlm.inspection.trace import Trace
from lucidlm.inspection.walkthrough import model_kind, resolve_indices, token_labels

THUMB = 32  # a thumbnail is at most THUMB x THUMB cells
TOP_LABELS = 100  # the next-token view names this many most likely tokens (filters only remove, so enough)


# the dtypes a tensor travels in: name -> (torch dtype, numpy little-endian code)
WIRE_DTYPES = {"float32": (torch.float32, "<f4"), "float16": (torch.float16, "<f2"), "uint8": (torch.uint8, "u1"),
               "int32": (torch.int32, "<i4")}


def tensor_json(t: torch.Tensor, dtype: str = "float32") -> dict:
    """A tensor as JSON: ``{"dtype", "shape", "b64"}``, its little-endian bytes in C order,
    base64 (``static/lib/tensor.js`` decodes it). 4x smaller and ~50x faster than a list of floats."""
    torch_dtype, code = WIRE_DTYPES[dtype]
    data = t.detach().to("cpu", torch_dtype).contiguous().numpy().astype(code, copy=False)
    return {"dtype": dtype, "shape": list(t.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}


@dataclass
class TraceRecord:
    """What the panels read of one forward pass (kept in the workspace's small cache)."""

    id: str
    model: str
    kind: str  # "decoder" (causal, next-token logits) or "encoder" (bidirectional, hidden states)
    ids: list[int]
    labels: list[str]  # each token as text, for axis labels
    weights: list[torch.Tensor]  # per layer (nh, T, S) float16
    after_attn: torch.Tensor | None  # (L, T, C) residual stream after each attention (decoders)
    after_mlp: torch.Tensor | None  # (L, T, C) after each MLP (decoders)
    last_logits: torch.Tensor | None  # (V,) float32 (decoders)
    lens_cache: dict = field(default_factory=dict)  # positions -> logit_lens answer

    def meta(self, model) -> dict:
        cfg = model.cfg
        return {"trace": self.id, "model": self.model, "kind": self.kind, "ids": self.ids, "labels": self.labels,
                "n_layer": len(model.layers), "n_head": cfg.n_head, "kv_heads": cfg.kv_heads,
                "causal": self.kind == "decoder", "positions": cfg.positions, "norm": cfg.norm, "mlp": cfg.mlp,
                "width": cfg.n_embd, "vocab_size": cfg.vocab_size}


def trace_id(model_name: str, ids: list[int], edits: list[Edit] = ()) -> str:
    return hashlib.sha256(f"{model_name}\0{ids}\0{list(edits)}".encode()).hexdigest()[:16]


def run_trace(model, tokenizer, model_name: str, ids: list[int], edits: list[Edit] = ()) -> TraceRecord:
    """One forward pass over ``ids``, recording attention weights and the residual stream; with
    ``edits`` (no patches: they need a second prompt), the pass of the edited model."""
    kind = model_kind(model)
    trace = Trace(keep=["attn.weights", "attn.resid", "mlp.resid"],
                  edits=build_edits(model, ids, list(edits)) if edits else None)
    with torch.inference_mode():
        out = model(torch.tensor([ids]), trace=trace)  # (1, T, V) logits or (1, T, C) hidden
    L = len(model.layers)
    weights = [trace[f"layers.{i}.attn.weights"][0].to(torch.float16) for i in range(L)]  # (nh, T, S) each
    after_attn = after_mlp = last = None
    if kind == "decoder":
        after_attn = torch.stack([trace[f"layers.{i}.attn.resid"][0] for i in range(L)])  # (L, T, C)
        after_mlp = torch.stack([trace[f"layers.{i}.mlp.resid"][0] for i in range(L)])
        last = out[0, -1].float()  # (V,)
    return TraceRecord(trace_id(model_name, ids, edits), model_name, kind, list(ids), token_labels(tokenizer, ids),
                       weights, after_attn, after_mlp, last)


# -- attention ---------------------------------------------------------------------------------

def attention_grid(rec: TraceRecord, size: int = THUMB) -> dict:
    """Every layer's heads as thumbnails: (L, nh, n, n) bytes, n = min(T, size). Each cell is the
    largest weight in its block of the full matrix (adaptive max pooling), as 0..255."""
    T = len(rec.ids)
    n = min(T, size)
    thumbs = torch.stack([F.adaptive_max_pool2d(w.float(), n) for w in rec.weights])  # (L, nh, n, n)
    return {"size": n, "tokens": T, "thumbs": tensor_json((thumbs * 255).round().clamp(0, 255), "uint8")}


def attention_head(rec: TraceRecord, layer: int, head: int) -> dict:
    """One head's full weights (T, S) as float16 (each row sums to 1: a softmax)."""
    layer = resolve_indices([layer], len(rec.weights), "layer")[0]
    head = resolve_indices([head], rec.weights[0].shape[0], "head")[0]
    w = rec.weights[layer][head]  # (T, S)
    return {"layer": layer, "head": head, "weights": tensor_json(w, "float16")}


# -- the logit lens ------------------------------------------------------------------------------

def _readings(rec: TraceRecord, last: int) -> torch.Tensor:
    """The residual stream at the last ``last`` positions, after every attention and every MLP, in
    depth order (layer 0 attn, layer 0 mlp, layer 1 attn, ...): (2L, last, C)."""
    T, L = len(rec.ids), rec.after_mlp.shape[0]
    return torch.stack([rec.after_attn[:, T - last:], rec.after_mlp[:, T - last:]], 1).reshape(2 * L, last, -1)


def logit_lens(model, tokenizer, rec: TraceRecord, last: int = 16) -> dict:
    """The top token at each of the last ``last`` positions (1..64), read after every attention and
    every MLP: rows in depth order (``_readings``). Each cell: the top token, its probability, and
    the probability of the model's own final prediction there. Kept on the record: the panels
    ask again when they are switched, and the answer does not change."""
    if rec.kind != "decoder":
        raise ValueError("the logit lens reads the residual stream through a language model's output head; an "
                         "encoder (BERT, MiniLM) has none. Pick a decoder model (SmolLM2, GPT-2, the demo's GPT)")
    T = len(rec.ids)
    last = max(1, min(int(last), T, 64))
    if last not in rec.lens_cache:
        rec.lens_cache[last] = _logit_lens(model, tokenizer, rec, last)
    return rec.lens_cache[last]


def _logit_lens(model, tokenizer, rec: TraceRecord, last: int) -> dict:
    T, L = len(rec.ids), rec.after_mlp.shape[0]
    x = _readings(rec, last)  # (2L, last, C)
    with torch.inference_mode():
        # one matmul for many readings reads the (V, C) head once; chunks bound the (N, V) probabilities
        flat = x.reshape(2 * L * last, -1)
        best_p, best_id, probs_rows = [], [], []
        final_ids = _probs(model, rec.after_mlp[-1, T - last:]).argmax(-1)  # (last,) the model's own answer
        target = final_ids.repeat(2 * L)  # (2L * last,)
        for start in range(0, flat.shape[0], 256):
            probs = _probs(model, flat[start:start + 256])  # (n, V)
            p, top = probs.max(-1)
            best_p.append(p)
            best_id.append(top)
            probs_rows.append(probs.gather(-1, target[start:start + 256, None])[:, 0])
        p, top, p_final = (torch.cat(v).view(2 * L, last) for v in (best_p, best_id, probs_rows))
    rows = [{"layer": r // 2, "after": ("attn", "mlp")[r % 2], "ids": top[r].tolist(), "p": p[r].tolist(),
             "p_final": p_final[r].tolist()} for r in range(2 * L)]
    positions = list(range(T - last, T))
    ids = {i for r in rows for i in r["ids"]} | set(final_ids.tolist())
    return {"positions": positions, "rows": rows, "final_ids": final_ids.tolist(),
            "labels": {str(i): s for i, s in zip(sorted(ids), token_labels(tokenizer, sorted(ids)))}}


def _probs(model, x: torch.Tensor) -> torch.Tensor:
    """Residual stream (N, C) -> next-token probabilities (N, V) through the final norm and head."""
    if model.norm is not None:
        x = model.norm(x)
    return torch.softmax(model.lm_head(x).float(), -1)


# -- the next token ------------------------------------------------------------------------------

def next_token(logits: torch.Tensor, tokenizer) -> dict:
    """The logits of the next token (V,) as float32, and the text of the TOP_LABELS most likely."""
    top = torch.topk(logits, min(TOP_LABELS, logits.numel())).indices.tolist()
    return {"logits": tensor_json(logits, "float32"),
            "labels": {str(i): s for i, s in zip(top, token_labels(tokenizer, top))}}


def step_logits(model, ids: list[int]) -> torch.Tensor:
    """The next-token logits (V,) after ``ids``: one plain forward pass (no trace)."""
    with torch.inference_mode():
        return model(torch.tensor([ids]), last_only=True)[0, -1].float()


# -- the walkthrough -----------------------------------------------------------------------------

SLICE = 12  # rows and columns of each stage's numbers sent to the page


def walkthrough(model, tokenizer, ids: list[int], layer: int = 0, head: int = 0) -> dict:
    """Every stage of the forward pass that reaches block ``layer``: the embeddings, that block's
    attention and MLP, the final norm and the logits (or an encoder's hidden states). For each:
    name, shape, equation (MathML), a SLICE x SLICE window of its numbers (head ``head`` of the
    per-head stages), summary statistics, and the source lines that computed it."""
    kind = model_kind(model)
    layer = resolve_indices([layer], len(model.layers), "layer")[0]
    head = resolve_indices([head], model.cfg.n_head, "head")[0]
    prefix = f"layers.{layer}."
    trace = Trace(keep=["embed.", prefix, "final_norm", "logits", "hidden"])
    with torch.inference_mode():
        model(torch.tensor([ids]), trace=trace)
    equations = equations_for(model.cfg)
    labels = token_labels(tokenizer, ids)
    stages = []
    for name in trace:
        recorded = trace[name]
        # drop the batch: (T, C), (nh, T, x) or (T, V); learned positions are recorded as (T, C)
        t = (recorded[0] if recorded.dim() >= 3 else recorded).float()
        stage = name[len(prefix):] if name.startswith(prefix) else name
        per_head = t.dim() == 3
        window = t[head] if per_head else t  # (T, x)
        if window.dim() == 1:
            window = window[None]
        # rows: the first SLICE tokens; for the logits the last ones, where the prediction is
        rows = list(range(window.shape[0]))
        rows = rows[-SLICE:] if stage == "logits" else rows[:SLICE]
        cols = _columns(stage, window)
        shown = window[rows][:, cols]
        stages.append({
            "name": name, "stage": stage, "shape": list(recorded.shape), "per_head": per_head,
            "equation": equations.get(stage, ""),
            # 5 significant digits; -inf (a masked score) travels as null: JSON has no infinity
            "values": [[float(f"{v:.5g}") if math.isfinite(v) else None for v in row] for row in shown.tolist()],
            "rows": rows, "cols": cols,
            "col_labels": token_labels(tokenizer, cols) if stage == "logits" else None,
            "stats": _stats(t),
            "source": source_of(model, stage),
        })
    return {"layer": layer, "head": head, "kind": kind, "labels": labels, "stages": stages}


def _stats(t: torch.Tensor) -> dict:
    """min, max, mean, std of the finite values (a masked score is -inf), and how many are masked."""
    finite = t[torch.isfinite(t)]
    if finite.numel() == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "masked": t.numel()}
    return {"min": finite.min().item(), "max": finite.max().item(), "mean": finite.mean().item(),
            "std": finite.std().item() if finite.numel() > 1 else 0.0, "masked": t.numel() - finite.numel()}


def _columns(stage: str, window: torch.Tensor) -> list[int]:
    """Which columns of a stage to show: the first SLICE, except for the logits, where the
    columns worth seeing are the most likely tokens at the last position."""
    if stage == "logits":
        return torch.topk(window[-1], min(SLICE, window.shape[-1])).indices.tolist()
    return list(range(min(SLICE, window.shape[-1])))


# -- interventions -------------------------------------------------------------------------------

def _kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> float:
    """KL(p || q) in nats of two next-token distributions given by their logits (V,) (>= 0; the
    clamp only removes float rounding below 0)."""
    lp, lq = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return float(torch.sum(lp.exp() * (lp - lq)).clamp(min=0))


def intervene(model, tokenizer, rec: TraceRecord, edits: list[Edit], source_ids: list[int] | None,
              target: int | None) -> dict:
    """The prompt run again with ``edits`` (inspection.interventions). A decoder: the edited
    next-token logits (the page has the plain ones), the KL divergence plain -> edited, and the
    probability of ``target`` (default: the plain top token) both ways. An encoder: the cosine
    between its plain and edited hidden state at the last position."""
    edit_fns = build_edits(model, rec.ids, edits, source_ids)
    edited = next_token_logits(model, rec.ids, edit_fns)
    if rec.kind != "decoder":
        plain = next_token_logits(model, rec.ids)
        return {"kind": "encoder", "cosine_last": F.cosine_similarity(plain, edited, dim=0).item()}
    base = rec.last_logits
    p, q = torch.softmax(base, -1), torch.softmax(edited, -1)
    target = int(p.argmax()) if target is None else int(target)
    if not 0 <= target < p.numel():
        raise ValueError(f"target token {target} is not in the vocabulary (0..{p.numel() - 1})")
    out = next_token(edited, tokenizer)
    out["labels"].update({str(target): token_labels(tokenizer, [target])[0]})
    return {"kind": "decoder", "next": out, "kl": _kl(base, edited), "target": target,
            "p_base": p[target].item(), "p_edited": q[target].item()}


def head_scan(model, tokenizer, rec: TraceRecord, target: int | None) -> dict:
    """Every head zeroed in turn (interventions.ablation_scan): the probability of ``target``
    (default: the model's top next token) with each head gone, (L, nh)."""
    if rec.kind != "decoder":
        raise ValueError("the head scan measures a next token's probability; an encoder (BERT, MiniLM) predicts "
                         "none. Pick a decoder model")
    if len(rec.ids) > 256:
        raise ValueError(f"the head scan runs the prompt once per head; {len(rec.ids)} tokens is too long for it "
                         "here (at most 256)")
    target = int(rec.last_logits.argmax()) if target is None else int(target)
    scan = ablation_scan(model, rec.ids, target)
    return {"target": target, "label": token_labels(tokenizer, [target])[0], "p_base": scan["p_base"],
            "p_ablated": tensor_json(scan["p_ablated"], "float32")}


# -- comparing two traces -----------------------------------------------------------------------

def _answer_layer(model, rec: TraceRecord) -> dict | None:
    """The first reading (layer, after attn or MLP) at the last position whose top token is the
    model's final answer there: how deep the answer forms. None for an encoder."""
    if rec.kind != "decoder":
        return None
    with torch.inference_mode():
        top = _probs(model, _readings(rec, 1)[:, 0]).argmax(-1)  # (2L,) in depth order
    final = int(rec.last_logits.argmax())
    first = next(r for r in range(len(top)) if all(int(t) == final for t in top[r:]))  # stays the answer from here
    return {"answer": final, "layer": first // 2, "after": ("attn", "mlp")[first % 2]}


def compare(model_a, tok_a, rec_a: TraceRecord, model_b, tok_b, rec_b: TraceRecord, top: int = 10) -> dict:
    """Two traces side by side: base vs fine-tuned, two kept steps, a plain and an edited run, or
    two prompts through one model.

    - ``attention``: for each head, the mean absolute difference of the weights (L, nh), over the
      first ``tokens`` positions both prompts have (a causal model's first rows only see those);
      exactly 0 where the two computations were the same;
    - ``next``: KL(a || b) of the next-token distributions and the tokens whose probability changed
      most (decoders, with one vocabulary);
    - ``answer``: the first layer from which each model's final answer stays the top token."""
    La, Lb = len(rec_a.weights), len(rec_b.weights)
    if (La, rec_a.weights[0].shape[0]) != (Lb, rec_b.weights[0].shape[0]):
        raise ValueError(f"the two models differ in shape ({La} layers x {rec_a.weights[0].shape[0]} heads vs {Lb} x "
                         f"{rec_b.weights[0].shape[0]}): compare two runs of one architecture (two checkpoints, a base "
                         "and its fine-tune, two prompts)")
    T = min(len(rec_a.ids), len(rec_b.ids))
    if rec_a.kind == "encoder" and len(rec_a.ids) != len(rec_b.ids):
        raise ValueError("an encoder's tokens all see each other, so two prompts compare only at the same length "
                         f"({len(rec_a.ids)} vs {len(rec_b.ids)} tokens)")
    diff = torch.stack([(wa[:, :T, :T].float() - wb[:, :T, :T].float()).abs().mean((-1, -2))
                        for wa, wb in zip(rec_a.weights, rec_b.weights)])  # (L, nh)
    out = {"a": rec_a.id, "b": rec_b.id, "tokens": T, "same_prefix": rec_a.ids[:T] == rec_b.ids[:T],
           "attention": tensor_json(diff, "float32"), "next": None,
           "answer": {"a": _answer_layer(model_a, rec_a), "b": _answer_layer(model_b, rec_b)}}
    if rec_a.kind == "decoder" and rec_a.last_logits.shape == rec_b.last_logits.shape:
        pa, pb = torch.softmax(rec_a.last_logits, -1), torch.softmax(rec_b.last_logits, -1)
        changed = torch.topk((pb - pa).abs(), min(top, pa.numel())).indices.tolist()
        out["next"] = {"kl": _kl(rec_a.last_logits, rec_b.last_logits), "changes": [{"id": i, "label": token_labels(tok_a, [i])[0], "p_a": pa[i].item(),
                                              "p_b": pb[i].item()} for i in changed]}
    return out


# -- export --------------------------------------------------------------------------------------

def export_arrays(rec: TraceRecord) -> dict:
    """A trace's tensors as numpy arrays, by name: the ids, the attention weights of every layer
    and head (L, nh, T, T, float32 from the float16 kept), the residual stream after every
    attention and MLP (L, T, C), and the next-token logits (V,)."""
    out = {"ids": np.asarray(rec.ids, dtype=np.int64),
           "attn_weights": torch.stack(rec.weights).float().numpy()}
    if rec.kind == "decoder":
        out.update({"resid_after_attn": rec.after_attn.float().numpy(), "resid_after_mlp": rec.after_mlp.float().numpy(),
                    "next_logits": rec.last_logits.numpy()})
    return out
