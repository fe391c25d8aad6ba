"""Interventions: change one part of a forward pass and see what the model predicts then.

An intervention is an edit of one recorded stage (``Trace(edits={name: fn})``, see ``trace.py``):
the forward pass goes on from the edited tensor, the model's code and weights stay as they are.
The usual ones, for GPT-2-, Llama- and BERT-style models alike:

- a head, zeroed or scaled: its slice of ``attn.heads_out`` (B, T, nh * hs), the heads side by
  side before the output projection mixes them, so head h is columns h*hs .. (h+1)*hs;
- an MLP (or a whole attention sub-block), zeroed or scaled: what it adds, ``mlp.out`` (B, T, C);
- the residual stream after a block, at one position, patched with its value from another
  prompt's run (activation patching: which layer and position carry the information that
  changes the answer; Meng et al. 2022, Wang et al. 2022).

``ablation_scan`` zeroes every head in turn and measures how much the probability of one token
changes: a first map of which heads matter for an answer. Notation: L layers, nh heads, hs head
size, T tokens, C width, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lucidlm.inspection.trace import Trace
from lucidlm.inspection.walkthrough import resolve_indices
from lucidlm.models.transformer import DecoderLM

KINDS = ("zero", "scale", "patch")
SITES = ("head", "attn", "mlp", "resid")


@dataclass(frozen=True)
class Edit:
    """One intervention. ``site``: "head" (one head of ``layer``), "attn" / "mlp" (what that
    sub-block adds), "resid" (the stream after block ``layer``). ``kind``: "zero", "scale" (by
    ``factor``) or "patch" (resid only: take the value at ``position`` from a source run).
    ``position``: one token (None: every position; negative counts from the end)."""

    kind: str
    site: str
    layer: int
    head: int | None = None
    position: int | None = None
    factor: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"intervention kind {self.kind!r}: choose from {', '.join(KINDS)}")
        if self.site not in SITES:
            raise ValueError(f"intervention site {self.site!r}: choose from {', '.join(SITES)}")
        if (self.site == "head") != (self.head is not None):
            raise ValueError("a head is named exactly when the site is 'head'")
        if self.kind == "patch" and (self.site != "resid" or self.position is None):
            raise ValueError("a patch replaces the residual stream at one position: site 'resid' and a position")

    @property
    def stage(self) -> str:
        """The trace name this edit changes."""
        part = {"head": "attn.heads_out", "attn": "attn.out", "mlp": "mlp.out", "resid": "mlp.resid"}[self.site]
        return f"layers.{self.layer}.{part}"


def _edit_fn(edit: Edit, model, source: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    hs = model.cfg.n_embd // model.cfg.n_head
    cols = slice(edit.head * hs, (edit.head + 1) * hs) if edit.site == "head" else slice(None)

    def apply(x: torch.Tensor) -> torch.Tensor:  # x: (B, T, C)
        x = x.clone()  # never write into a tensor the model may still hold
        where = (slice(None), slice(None) if edit.position is None else edit.position, cols)
        if edit.kind == "patch":
            x[where] = source.to(x.dtype)
        else:
            x[where] = x[where] * edit.factor if edit.kind == "scale" else 0.0
        return x

    return apply


def build_edits(model, ids: list[int], edits: list[Edit], source_ids: list[int] | None = None) -> dict:
    """``Trace(edits=...)`` for these interventions on a run over ``ids``. Indices are checked
    against the model (negative ones count from the end); a patch reads its values from one
    plain run over ``source_ids``. Several edits of one stage apply in order."""
    L, nh, T = len(model.layers), model.cfg.n_head, len(ids)
    fns: dict[str, list[Callable]] = {}
    sources = None
    for e in edits:
        layer = resolve_indices([e.layer], L, "layer")[0]
        head = resolve_indices([e.head], nh, "head")[0] if e.head is not None else None
        position = (resolve_indices([e.position], T, "position", "the prompt")[0] if e.position is not None
                    else None)
        e = Edit(e.kind, e.site, layer, head, position, e.factor)
        source = None
        if e.kind == "patch":
            if not source_ids:
                raise ValueError("a patch needs a source prompt (source_ids) to take the values from")
            if position >= len(source_ids):
                raise ValueError(f"position {position} is past the source prompt's {len(source_ids)} tokens")
            if sources is None:
                sources = Trace(keep=["mlp.resid"])
                with torch.inference_mode():
                    model(torch.tensor([source_ids]), trace=sources)
            source = sources[e.stage][0, position]  # (C,)
        fns.setdefault(e.stage, []).append(_edit_fn(e, model, source))

    def chain(fs):
        def apply(x):
            for f in fs:
                x = f(x)
            return x
        return apply

    return {stage: chain(fs) for stage, fs in fns.items()}


def next_token_logits(model, ids: list[int], edits: dict | None = None) -> torch.Tensor:
    """The next-token logits (V,) after ``ids`` with the edits applied (None: the plain model).
    An encoder's answer is its last hidden state (C,) instead."""
    trace = Trace(keep=[], edits=edits)
    last = {"last_only": True} if isinstance(model, DecoderLM) else {}  # the head on one position, not T
    with torch.inference_mode():
        out = model(torch.tensor([ids]), trace=trace, **last)
    return out[0, -1].float()


def ablation_scan(model, ids: list[int], target: int, max_cells: int = 40_000_000) -> dict:
    """Zero each head in turn: the probability of ``target`` as the next token, base and with
    each head zeroed (L, nh). The L * nh runs go as batches (a row per head), sized so that one
    batch's attention weights (rows x nh x T x T) stay under ``max_cells`` numbers."""
    L, nh, T = len(model.layers), model.cfg.n_head, len(ids)
    V = model.cfg.vocab_size
    if not isinstance(model, DecoderLM):
        raise ValueError("the head scan measures a next token's probability; an encoder (BERT, MiniLM) predicts none")
    if not 0 <= target < V:
        raise ValueError(f"target token {target} is not in the vocabulary (0..{V - 1})")
    hs = model.cfg.n_embd // nh
    base = torch.softmax(next_token_logits(model, ids), -1)[target].item()
    cells = [(layer, head) for layer in range(L) for head in range(nh)]
    rows = max(1, min(len(cells), max_cells // (nh * T * T)))
    probs = torch.empty(L * nh)
    for start in range(0, len(cells), rows):
        chunk = cells[start:start + rows]
        edits = {}
        for layer in {c[0] for c in chunk}:
            which = [(b, head) for b, (lay, head) in enumerate(chunk) if lay == layer]

            def zero(x, which=which):  # x: (rows, T, C), one row per ablated head
                x = x.clone()
                for b, head in which:
                    x[b, :, head * hs:(head + 1) * hs] = 0.0
                return x

            edits[f"layers.{layer}.attn.heads_out"] = zero
        trace = Trace(keep=[], edits=edits)
        with torch.inference_mode():
            logits = model(torch.tensor([ids] * len(chunk)), trace=trace, last_only=True)[:, -1].float()  # (rows, V)
        probs[start:start + len(chunk)] = torch.softmax(logits, -1)[:, target]
    return {"target": target, "p_base": base, "p_ablated": probs.view(L, nh)}
