"""A transformer block: attention, then an MLP, each added back to the residual stream.

    pre-norm  (GPT-2, Llama):          x = x + attn(norm1(x));   x = x + mlp(norm2(x))
    post-norm (BERT, Vaswani et al.):  x = norm1(x + attn(x));   x = norm2(x + mlp(x))
A decoder block of an encoder-decoder has a cross-attention step between the two.
"""

from __future__ import annotations

import torch
from torch import nn

from lucidlm.nn.attention import Attention, LayerCache
from lucidlm.nn.embeddings import RotaryEmbedding
from lucidlm.nn.mlp import MLP, SwiGLU
from lucidlm.nn.norms import make_norm


class Block(nn.Module):
    def __init__(self, cfg, *, causal: bool, cross: bool = False, rope: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        self.dropout = nn.Dropout(cfg.dropout)

        def norm() -> nn.Module:
            return make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, bias=cfg.norm_bias)

        self.norm_attn = norm()
        self.attn = Attention(cfg.n_embd, cfg.n_head, cfg.kv_heads, bias=cfg.bias, causal=causal, rope=rope,
                              dropout=cfg.dropout)
        self.cross_attn = None
        if cross:
            self.norm_cross = norm()
            self.cross_attn = Attention(cfg.n_embd, cfg.n_head, cfg.kv_heads, bias=cfg.bias, causal=False, cross=True,
                                        dropout=cfg.dropout)
        self.norm_mlp = norm()
        if cfg.mlp == "swiglu":
            self.mlp = SwiGLU(cfg.n_embd, cfg.hidden_size, bias=cfg.bias, activation=cfg.activation)
        else:
            self.mlp = MLP(cfg.n_embd, cfg.hidden_size, cfg.activation, bias=cfg.bias)

    def _sub(self, x, norm, fn, trace, name) -> torch.Tensor:
        """One residual sub-block, pre- or post-norm, recording its stages (what it adds, ``.out``,
        and the stream after it, ``.resid``: both may be edited by an intervention, Trace.edits)."""
        if self.pre_norm:
            h = norm(x)
            if trace is not None:
                trace.record(f"{name}.norm", h)
            out = self.dropout(fn(h))
            if trace is not None:
                out = trace.record(f"{name}.out", out)
            x = x + out
        else:
            out = self.dropout(fn(x))
            if trace is not None:
                out = trace.record(f"{name}.out", out)
            x = norm(x + out)
        if trace is not None:
            x = trace.record(f"{name}.resid", x)
        return x

    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        *,
        positions: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
        cache: LayerCache | None = None,
        memory: torch.Tensor | None = None,
        memory_padding: torch.Tensor | None = None,
        trace=None,
        name: str = "layers.0",
    ) -> torch.Tensor:
        x = self._sub(
            x, self.norm_attn,
            lambda h: self.attn(h, positions=positions, key_padding=key_padding, cache=cache, trace=trace,
                                name=f"{name}.attn"),
            trace, f"{name}.attn",
        )
        if self.cross_attn is not None:
            x = self._sub(
                x, self.norm_cross,
                lambda h: self.cross_attn(h, memory=memory, key_padding=memory_padding, cache=cache, trace=trace,
                                          name=f"{name}.cross_attn"),
                trace, f"{name}.cross_attn",
            )
        return self._sub(x, self.norm_mlp, lambda h: self.mlp(h, trace=trace, name=f"{name}.mlp"), trace, f"{name}.mlp")
