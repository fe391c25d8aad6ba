"""Attention: every position looks at the others and takes a weighted average of what it finds.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(hs) + M) V          (Vaswani et al. 2017, eq. 1)

Notation: B batch, T query positions, S key positions (S = T without a cache; S = past + T with
one), C = n_embd, nh query heads, nkv key/value heads, hs = C / nh head size.
- Multi-head: the C channels are split into nh heads that attend independently.
- Grouped-query (Ainslie et al. 2023): nkv < nh; each key/value head serves nh / nkv query heads,
  which shrinks the KV cache by that factor (SmolLM2-135M: 9 query heads, 3 kv heads).
- Causal: position t may only look at positions <= t. Padding: keys that are padding are hidden.
  M is 0 where attending is allowed and -inf where not.
- Cross-attention (encoder-decoder): queries from the decoder, keys and values from the encoder.
- KV cache: when generating, the keys and values of earlier positions never change, so they are
  kept and only the new position's are computed.

Two paths, proven equal in tests/test_nn.py:
- ``attention_reference``: the equation, step by step, returning the weights (for the trace,
  the explorer and anyone reading);
- ``attention_fast``: PyTorch's fused ``scaled_dot_product_attention``, which never builds the
  (T, S) weight matrix in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lucidlm.nn.embeddings import RotaryEmbedding


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, dropout_p: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q: (B, nh, T, hs); k, v: (B, nh, S, hs); mask: bool, broadcastable to (B, nh, T, S), True =
    may attend. Returns (output (B, nh, T, hs), scores before the mask and softmax, weights).
    ``dropout_p`` > 0 (training) zeroes attention weights at random, as in Vaswani et al. and
    GPT-2; the returned weights are the ones before dropout."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, S)
    masked = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(masked.float(), dim=-1).to(q.dtype)  # each row sums to 1
    used = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return used @ v, scores, weights  # (B, nh, T, hs)


# scaled_dot_product_attention(enable_gqa=...) exists from torch 2.5 on.
_SDPA_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


def attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                   is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
    """The same output as ``attention_reference`` (``is_causal`` stands for a causal mask when
    T == S, letting the kernel skip the masked half)."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # Under CPU bf16 autocast the matmuls around attention run 2x faster, but the bf16
        # flash-attention backward kernel is ~5x slower than the fp32 one (measured, torch 2.13,
        # 12x4x64x32): attention itself stays in fp32.
        with torch.autocast("cpu", enabled=False):
            out = attention_fast(q.float(), k.float(), v.float(), mask, is_causal, dropout_p)
        return out
    if k.shape[1] != q.shape[1]:  # grouped-query: the kernel shares kv heads without copying them
        if _SDPA_GQA:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p,
                                                  enable_gqa=True)
        n_rep = q.shape[1] // k.shape[1]
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, nkv, S, hs) -> (B, nkv * n_rep, S, hs): each key/value head serves n_rep query heads."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def build_mask(
    T: int, S: int, *, causal: bool, key_padding: torch.Tensor | None = None, device=None
) -> torch.Tensor | None:
    """Bool mask (B or 1, 1, T, S), True = may attend, or None when everything may attend.

    Causal with S > T (a cache holds S - T earlier positions): query t sits at position
    S - T + t, so it may see keys 0 .. S - T + t. ``key_padding``: (B, S) bool, True = real token.
    A query row with nothing to attend to (a padding position) is allowed everything instead,
    so the softmax stays finite; its output is never used.
    """
    mask = None
    if causal and T > 1:
        mask = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)[None, None]
    if key_padding is not None:
        pad = key_padding[:, None, None, :].to(torch.bool)  # (B, 1, 1, S)
        mask = pad if mask is None else (mask & pad)
    if mask is not None:
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask


@dataclass
class LayerCache:
    """Preallocated keys and values of one layer: (B, nkv, max_len, hs) each, filled up to ``length``."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0
    # Cross-attention of an encoder-decoder: the encoder output's keys and values, computed at the
    # first decoding step and reused at every later one (the source does not change meanwhile).
    memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: (B, nkv, T, hs) of the new positions -> all cached keys, values (B, nkv, length, hs)."""
        T = k.shape[2]
        if k.shape[:2] != self.k.shape[:2]:
            raise ValueError(f"KV cache was made for (batch, kv heads) = {tuple(self.k.shape[:2])}, "
                             f"got keys for {tuple(k.shape[:2])}; make a new cache for this batch")
        if self.length + T > self.k.shape[2]:
            raise ValueError(f"KV cache full: {self.length} cached + {T} new positions > its size {self.k.shape[2]}; "
                             "make the cache with a larger max_len")
        self.k[:, :, self.length : self.length + T] = k
        self.v[:, :, self.length : self.length + T] = v
        self.length += T
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class KVCache:
    """One ``LayerCache`` per layer. Writing in place avoids a torch.cat (a copy of the whole
    cache) at every generated token."""

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_len: int, head_size: int,
                 dtype: torch.dtype = torch.float32, device=None) -> None:
        shape = (batch, n_kv_head, max_len, head_size)
        self.layers = [LayerCache(torch.zeros(shape, dtype=dtype, device=device),
                                  torch.zeros(shape, dtype=dtype, device=device)) for _ in range(n_layer)]
        self.max_len = max_len

    @classmethod
    def from_tensors(cls, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], length: int) -> KVCache:
        """A cache over key/value tensors someone else allocated, one (B, nkv, max_len, hs) pair per
        layer, ``length`` positions already filled. The tensors may be views (a server's slots of
        one big batch store): the model writes the new positions into them in place."""
        if len(keys) != len(values) or not keys:
            raise ValueError(f"need one key and one value tensor per layer, got {len(keys)} and {len(values)}")
        cache = cls.__new__(cls)  # skip __init__: nothing to allocate
        cache.layers = [LayerCache(k, v, length) for k, v in zip(keys, values)]
        cache.max_len = keys[0].shape[2]
        return cache

    @property
    def length(self) -> int:
        """Positions already cached (the position of the next token)."""
        return self.layers[0].length

    def reorder(self, index: torch.Tensor) -> None:
        """Row b of the cache becomes what row ``index[b]`` was, in every layer (beam search: each
        surviving hypothesis continues from its parent's keys and values). Written in place, so a
        cache over someone else's tensors (``from_tensors``) stays valid; the encoder's keys and
        values of cross-attention (``memory_kv``) move with their rows."""
        for layer in self.layers:
            n = layer.length
            layer.k[:, :, :n] = layer.k[index, :, :n]  # the right side is a copy: no row is overwritten early
            layer.v[:, :, :n] = layer.v[index, :, :n]
            if layer.memory_kv is not None:
                layer.memory_kv = tuple(t.index_select(0, index) for t in layer.memory_kv)


class Attention(nn.Module):
    """Multi-head / grouped-query self- or cross-attention with optional RoPE and KV cache.

    Self-attention keeps q, k and v projections in one matrix ``qkv`` (one matmul instead of three);
    cross-attention has ``q`` (from the decoder) and ``kv`` (from the encoder's output).
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int | None = None, *, bias: bool = True,
                 out_bias: bool | None = None, causal: bool = True, rope: RotaryEmbedding | None = None,
                 cross: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if n_embd % n_head or n_head % n_kv_head:
            raise ValueError(f"n_embd={n_embd}, n_head={n_head}, n_kv_head={n_kv_head}: need n_head | n_embd "
                             "and n_kv_head | n_head")
        self.n_head, self.n_kv_head, self.head_size = n_head, n_kv_head, n_embd // n_head
        self.causal, self.rope, self.cross = causal, rope, cross
        self.dropout = dropout  # on the attention weights, in training only
        kv_dim = 2 * n_kv_head * self.head_size
        if cross:
            self.q = nn.Linear(n_embd, n_embd, bias=bias)
            self.kv = nn.Linear(n_embd, kv_dim, bias=bias)
        else:
            self.qkv = nn.Linear(n_embd, n_embd + kv_dim, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias if out_bias is None else out_bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
        cache: LayerCache | None = None,
        memory: torch.Tensor | None = None,
        trace=None,
        name: str = "attn",
    ) -> torch.Tensor:
        B, T, C = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_size
        # 1. project to queries, keys, values and split into heads
        if self.cross:
            if memory is None:
                raise ValueError("cross-attention needs the encoder output (memory=)")
            q = self.q(x)
            if cache is not None and cache.memory_kv is not None:
                k, v = cache.memory_kv
            else:
                k, v = self.kv(memory).split(nkv * hs, dim=-1)  # (B, S, nkv * hs) each
                if cache is not None:
                    cache.memory_kv = (k, v)
        else:
            q, k, v = self.qkv(x).split([C, nkv * hs, nkv * hs], dim=-1)
        S_new = k.shape[1]
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, S_new, nkv, hs).transpose(1, 2)  # (B, nkv, S_new, hs)
        v = v.view(B, S_new, nkv, hs).transpose(1, 2)
        # 2. rotate queries and keys by their positions (RoPE)
        if self.rope is not None:
            if positions is None:
                start = cache.length if cache is not None else 0
                positions = torch.arange(start, start + T, device=x.device)
            q, k = self.rope(q, k, positions)
        # 3. with a cache: append the new keys/values, attend over all of them
        if cache is not None and not self.cross:
            k, v = cache.append(k, v)
        S = k.shape[2]
        if key_padding is not None and tuple(key_padding.shape) != (B, S):
            raise ValueError(f"padding mask has shape {tuple(key_padding.shape)}, expected (batch, keys) = {(B, S)}"
                             " (with a KV cache it covers the cached positions too)")
        causal = self.causal and not self.cross
        p = self.dropout if self.training else 0.0
        # 4. attend: the reference path when tracing (it has the weights), else the fused kernel
        if trace is not None:
            k_all, v_all = repeat_kv(k, nh // nkv), repeat_kv(v, nh // nkv)  # (B, nh, S, hs)
            trace.record(f"{name}.q", q)
            trace.record(f"{name}.k", k_all)
            trace.record(f"{name}.v", v_all)
            mask = build_mask(T, S, causal=causal, key_padding=key_padding, device=x.device)
            out, scores, weights = attention_reference(q, k_all, v_all, mask, dropout_p=p)
            trace.record(f"{name}.scores", scores)
            # recorded even without a mask (then equal to scores) so every layer has the same names
            masked = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
            trace.record(f"{name}.scores_masked", masked)
            trace.record(f"{name}.weights", weights)
        elif key_padding is None and causal and T == S:
            out = attention_fast(q, k, v, is_causal=True, dropout_p=p)
        else:
            mask = build_mask(T, S, causal=causal, key_padding=key_padding, device=x.device)
            out = attention_fast(q, k, v, mask, dropout_p=p)
        # 5. concatenate the heads and mix them
        out = out.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        if trace is not None:
            out = trace.record(f"{name}.heads_out", out)  # an intervention may edit it: one head's columns
        return self.proj(out)
