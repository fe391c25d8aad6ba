"""Weight-name maps: one table per family says which tensors of another format make each lucidlm
tensor, and the same table is read forwards (load) and backwards (export).

A ``Rule`` is one row of such a table:

    Rule("layers.{i}.attn.qkv.weight", ("h.{i}.attn.c_attn.weight",), transpose=True)     GPT-2
    Rule("layers.{i}.attn.qkv.weight", ("layers.{i}.self_attn.q_proj.weight", ...k, v))   Llama
    Rule("layers.{i}.attn.qkv.weight", ("blk.{i}.attn_q.weight", ...k, v))                GGUF

Several parts are stacked along dim 0 (the output rows) in the order listed: that is how lucidlm
fuses q/k/v (and gate/up) into one matrix so that one matmul computes them, and splitting the rows
back (``part_sizes``) undoes it. ``transpose`` is for GPT-2's ``Conv1D`` weights, kept as (in, out).
Everything else is a rename.

The tables live with their families: ``loading/hf.py`` (GPT-2, Llama), ``loading/bert.py`` (BERT),
``loading/gguf.py`` (llama.cpp names).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lucidlm.models.config import ModelConfig


@dataclass(frozen=True)
class Rule:
    """lucidlm tensor ``ours`` = the tensors ``theirs`` (each transposed if ``transpose``), stacked
    along dim 0. Names may hold ``{i}``, the layer index; their names are relative to the family's
    prefix (``transformer.``, ``model.``, ``bert.``) unless they start with "/" (``/lm_head.weight``)."""

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False


@dataclass(frozen=True)
class Mapping:
    """One rule with the layer index and the prefix filled in: what the loops below walk."""

    ours: str
    theirs: tuple[str, ...]
    transpose: bool


def expand(top: list[Rule], layer: list[Rule], n_layer: int, prefix: str = "") -> list[Mapping]:
    """Every mapping of a model with ``n_layer`` blocks: the global rules, then each layer's.

    ``expand([], [Rule("layers.{i}.x", ("h.{i}.y",))], 2, "t.")``
    -> ``[Mapping("layers.0.x", ("t.h.0.y",), False), Mapping("layers.1.x", ("t.h.1.y",), False)]``
    """

    def theirs(rule: Rule, i: int | None) -> tuple[str, ...]:
        names = (t[1:] if t.startswith("/") else prefix + t for t in rule.theirs)
        return tuple(n.format(i=i) if i is not None else n for n in names)

    out = [Mapping(r.ours, theirs(r, None), r.transpose) for r in top]
    for i in range(n_layer):
        out += [Mapping(r.ours.format(i=i), theirs(r, i), r.transpose) for r in layer]
    return out


def part_sizes(ours: str, cfg: ModelConfig) -> list[int]:
    """The rows each part of a fused lucidlm tensor takes, in stacking order (from the config, so a
    part of the wrong size is caught when it is split or filled)."""
    C, kv, H = cfg.n_embd, cfg.kv_heads * cfg.head_size, cfg.hidden_size
    if ".attn.qkv." in ours:
        return [C, kv, kv]  # q: n_head * hs rows, k and v: n_kv_head * hs rows each
    if ".mlp.gate_up." in ours:
        return [H, H]
    raise AssertionError(f"{ours!r} is not a fused tensor")


def gather(tensors: dict[str, torch.Tensor], mappings: list[Mapping], source: str = "checkpoint"
           ) -> tuple[dict[str, torch.Tensor], list[str], set[str]]:
    """The table forwards: (lucidlm state dict, their names that are missing, their names used)."""
    state: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    used: set[str] = set()
    for m in mappings:
        absent = [t for t in m.theirs if t not in tensors]
        if absent:
            missing += absent
            continue
        parts = [tensors[t].t() if m.transpose else tensors[t] for t in m.theirs]
        try:
            state[m.ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        except RuntimeError:
            shapes = {t: tuple(tensors[t].shape) for t in m.theirs}
            raise ValueError(f"{source}: cannot stack {shapes} into {m.ours!r}: their shapes disagree") from None
        used.update(m.theirs)
    return state, missing, used


def scatter(state: dict[str, torch.Tensor], mappings: list[Mapping], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The table backwards: their tensors from a lucidlm state dict (fused tensors split by rows)."""
    out = {}
    for m in mappings:
        t = state[m.ours]
        parts = t.split(part_sizes(m.ours, cfg), dim=0) if len(m.theirs) > 1 else (t,)
        for name, part in zip(m.theirs, parts, strict=True):
            out[name] = (part.t() if m.transpose else part).contiguous()
    return out
