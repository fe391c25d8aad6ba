"""The trace: a model's forward pass explains itself.

Pass ``trace=Trace()`` to a model's ``forward`` and every stage records its tensor under a
dotted name ("embed.tokens", "layers.0.attn.weights", "layers.0.mlp.act", "logits", ...).
Without a trace nothing is recorded and nothing is computed for it: each recording site is a
single ``if trace is not None`` check. With a trace, attention runs its reference path, because
the fast fused kernel never materialises the attention weights.

Notation in names: ``layers.{i}.`` prefixes everything inside block ``i``; an encoder-decoder
prefixes its two halves with ``encoder.`` and ``decoder.``. Each name holds the tensor of the last
forward pass that recorded it: a trace reused across steps of cached decoding keeps the last step.

Names, in the order a decoder-only model records them (shapes with B batch, T time, C width,
nh heads, hs head size, S keys, H MLP hidden width, V vocabulary):
    embed.tokens, embed.positions (learned/sinusoidal only), embed.token_types (BERT), embed.out  (B, T, C)
    layers.{i}.attn.norm (pre-norm only)                                     (B, T, C)
    layers.{i}.attn.q                                                        (B, nh, T, hs), after RoPE
    layers.{i}.attn.k, .v (repeated to nh heads under GQA; with a cache S)   (B, nh, S, hs)
    layers.{i}.attn.scores, .scores_masked, .weights                         (B, nh, T, S)
    layers.{i}.attn.heads_out (heads concatenated, before the output proj)   (B, T, C)
    layers.{i}.attn.out (what attention adds), .resid (stream after it)     (B, T, C)
    layers.{i}.mlp.norm, .pre_act, .act, .out, .resid                        (B, T, C) / (B, T, H)
    final_norm (B, T, C), logits (B, T, V)
An encoder stops at ``hidden`` (B, T, C); a decoder block of an encoder-decoder records
``cross_attn.*`` (keys from the encoder, S = source length) between ``attn.*`` and ``mlp.*``.

Interventions (activation patching, ablation): ``Trace(edits={name: fn})`` replaces the tensor at
``name`` by ``fn(tensor)`` before the forward pass goes on, so everything after it sees the
edit; the trace records the edited tensor. Only the stages the model goes on from can be edited
(EDITABLE: a stage such as ``attn.weights`` is computed from and into others, so editing its
record would change nothing). The model's weights are never touched, so the next forward pass,
without edits, is the plain model again. ``lucidlm.inspection.interventions`` builds the usual
edits (zero or scale a head, an MLP, patch the residual stream from another prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

# The stages whose recorded tensor the forward pass continues from (suffixes of trace names).
EDITABLE = ("embed.out", "attn.heads_out", "attn.out", "attn.resid", "cross_attn.heads_out", "cross_attn.out",
            "cross_attn.resid", "mlp.act", "mlp.out", "mlp.resid")


class Trace:
    """Ordered name -> tensor record of one forward pass (tensors detached, on the CPU by default).

    Args:
        keep: record only names containing one of these substrings (None: everything). Tracing a
            long prompt through a large model holds every intermediate tensor, so narrow it down
            when memory matters, e.g. ``Trace(keep=["attn.weights"])``.
        to_cpu: move recorded tensors to the CPU (so a GPU run can be inspected afterwards).
    """

    def __init__(self, keep: list[str] | None = None, to_cpu: bool = True,
                 edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:
        self.keep = keep
        self.to_cpu = to_cpu
        self.tensors: dict[str, torch.Tensor] = {}
        self.edits = dict(edits or {})
        for name in self.edits:
            if not name.endswith(EDITABLE):
                raise ValueError(f"{name!r} cannot be edited: the forward pass goes on from these stages only: "
                                 f"{', '.join(EDITABLE)} (e.g. 'layers.3.attn.heads_out')")
        self.applied: set[str] = set()  # the edits the last forward pass reached

    def wants(self, name: str) -> bool:
        return self.keep is None or any(k in name for k in self.keep)

    def record(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Keep ``tensor`` under ``name`` (if wanted) and return what the forward pass goes on with:
        the tensor itself, or its edit when ``edits`` names this stage."""
        edit = self.edits.get(name)
        if edit is not None:
            edited = edit(tensor)
            if not isinstance(edited, torch.Tensor) or edited.shape != tensor.shape:
                raise ValueError(f"the edit of {name!r} must return a tensor of shape {tuple(tensor.shape)}")
            tensor = edited
            self.applied.add(name)
        if self.wants(name):
            # a copy, not a view: some stages are views of buffers that change later (a KV cache)
            t = tensor.detach()
            self.tensors[name] = t.to("cpu", copy=True) if self.to_cpu else t.clone()
        return tensor

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            close = [n for n in self.tensors if name.split(".")[-1] in n][:5]
            raise KeyError(f"{name!r} was not recorded; similar names: {close or list(self.tensors)[:5]}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def names(self, pattern: str = "") -> list[str]:
        return [n for n in self.tensors if pattern in n]

    def __repr__(self) -> str:
        return f"Trace({len(self.tensors)} tensors)"
