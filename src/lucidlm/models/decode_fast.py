"""The fast path of one-token decoding: ``DecoderLM.forward`` at T = 1 with a KV cache, through
the C kernels of ``lucidlm/nn/_decode_kernel.c``.

It computes exactly what the reference blocks compute (nn/block.py, nn/attention.py, nn/mlp.py),
in the same order, for a pre-norm decoder (GPT-2, Llama, SmolLM2):

    x = embed(token) (+ position)                      # PyTorch, as in the reference
    for each block:
        h   = norm_attn(x)                             # K.norm
        qkv = h W_qkv^T (+ b)                          # K.linear (K.linear_q: W in quantised blocks)
        q, k = RoPE(q, k)                              # K.rope (Llama)
        a   = softmax(q K^T / sqrt(hs) + M) V          # K.attend, after appending k, v to the cache
        x   = x + a W_o^T (+ b)                        # K.linear, accumulating into x
        h   = norm_mlp(x)
        x   = x + W_down act(W_gate h) * (W_up h)      # SwiGLU: K.linear, K.gated, K.linear
          or  x + W_2 act(W_1 h + b_1) + b_2           # classic MLP: K.linear, K.act, K.linear
    logits = norm(x) W_head^T

Why it exists: at one token a step is bound by streaming the weights from memory, and the C
``linear`` streams them ~1.4x faster than ``F.linear`` on one core, and ``linear_q`` reads the
blocks of a quantised model (nn/quantized.py) without ever expanding them in memory; a block is 8 C calls here
instead of ~40 PyTorch ops; and with several threads (``torch.get_num_threads()``, the same
setting PyTorch uses) each matrix is split between them. Measured on SmolLM2-135M:
benchmarks/bench_decode.py.

``DecoderLM.use_fast_decode()`` turns it on. It is used only where it applies: a float32 model
on the CPU, in eval mode, without gradients and without a trace, one new token per row (up to
MAX_ROWS rows), a contiguous float32 cache, plain ``nn.Linear`` layers (a LoRA layer only once
merged) or QuantizedLinear layers, and the C kernel built (``setup.py``; without a compiler lucidlm installs without it). Anything else runs
the reference path, so results never depend on whether the kernel exists, only the speed does.
The kernel trusts the addresses it is given: this file checks every dtype, layout and size first.
Notation: B rows, C model width, nh / nkv query / key-value heads, hs head size, L cached positions.
"""

from __future__ import annotations

import torch
from torch import nn

from lucidlm.nn.lora import LoRALinear
from lucidlm.nn.norms import RMSNorm
from lucidlm.nn.quantized import KIND_CODES, QuantizedLinear, use_torch_threads

try:
    from lucidlm.nn import _decode_kernel as K
except ImportError:  # built without a C compiler: the reference path does all the work
    K = None

ACTIVATION_CODES = {"silu": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3, "relu2": 4}  # _decode_kernel.c
FLOAT = torch.float32
# Beyond this many rows a step is a real matrix product, and PyTorch's GEMM (which blocks for the
# caches) is as fast or faster: measured on 2 cores, the C path equals it at 16 rows.
MAX_ROWS = 16


def kernel_info() -> str:
    """What the fast path runs on, for logs: e.g. "C kernel (avx2+fma)"."""
    return f"C kernel ({K.simd()})" if K is not None else "not built (no C compiler at install): PyTorch ops"


def unsupported_reason(model) -> str | None:
    """Why the fast path can never apply to this model (None if it can)."""
    cfg = model.cfg
    if K is None:
        return "the C decode kernel is not built"
    if cfg.norm_placement != "pre":
        return "post-norm blocks"
    if cfg.activation not in ACTIVATION_CODES:
        return f"activation {cfg.activation!r}"
    return None


def _ok(t: torch.Tensor | None, numel: int | None = None) -> bool:
    """A float32, contiguous CPU tensor (of ``numel`` values), or no tensor."""
    return t is None or (t.dtype == FLOAT and t.is_cpu and t.is_contiguous() and (numel is None or t.numel() == numel))


def _linear_args(layer: nn.Module, n_out: int, n_in: int) -> tuple[int, int, int] | None:
    """(block type code or -1 for float32, weight address, bias address or 0) of a layer computing
    x W^T + b for W (n_out, n_in), else None: an nn.Linear, a LoRA layer with its update merged
    into W, or a QuantizedLinear (W in llama.cpp's blocks, nn/quantized.py)."""
    if type(layer) is QuantizedLinear:
        if (layer.out_features, layer.in_features) != (n_out, n_in) or not _ok(layer.bias, n_out):
            return None
        return KIND_CODES[layer.kind], layer.blocks.data_ptr(), (layer.bias.data_ptr() if layer.bias is not None else 0)
    plain = type(layer) is nn.Linear or (isinstance(layer, LoRALinear) and layer.merged)  # merged: W0 + BA
    if not plain or layer.weight.shape != (n_out, n_in):
        return None
    w, b = layer.weight, layer.bias
    if not _ok(w) or not _ok(b, n_out):
        return None
    return -1, w.data_ptr(), (b.data_ptr() if b is not None else 0)


def _linear(out: int, x: int, args: tuple[int, int, int], B: int, n_out: int, n_in: int, accumulate: int) -> None:
    """out (+)= x W^T + b through the kernel for W's storage: float32 (K.linear) or blocks (K.linear_q)."""
    kind, w, b = args
    if kind < 0:
        K.linear(out, x, w, b, B, n_out, n_in, accumulate)
    else:
        K.linear_q(out, x, w, kind, b, B, n_out, n_in, accumulate)


def _norm_args(norm: nn.Module, C: int) -> tuple[int, int, float, int] | None:
    """(weight address, bias address or 0, eps, is_rms) of an RMSNorm or affine LayerNorm of width C."""
    if isinstance(norm, RMSNorm) and _ok(norm.weight, C):
        return norm.weight.data_ptr(), 0, float(norm.eps), 1
    if (type(norm) is nn.LayerNorm and norm.weight is not None and _ok(norm.weight, C) and _ok(norm.bias, C)
            and norm.normalized_shape == (C,)):
        return norm.weight.data_ptr(), (norm.bias.data_ptr() if norm.bias is not None else 0), float(norm.eps), 0
    return None


def _weights(model) -> list[tuple] | None:
    """Per block, the addresses of the weights the kernels read, every size checked against the
    config; None if anything does not qualify (the reference path then runs)."""
    cfg = model.cfg
    C, nkv, hs, n_hidden = cfg.n_embd, cfg.kv_heads, cfg.head_size, cfg.hidden_size
    gated = cfg.mlp == "swiglu"
    plan = []
    for block in model.layers:
        if block.cross_attn is not None:
            return None
        mlp = block.mlp
        parts = (_norm_args(block.norm_attn, C), _linear_args(block.attn.qkv, C + 2 * nkv * hs, C),
                 _linear_args(block.attn.proj, C, C), _norm_args(block.norm_mlp, C),
                 _linear_args(mlp.gate_up if gated else mlp.fc, 2 * n_hidden if gated else n_hidden, C),
                 _linear_args(mlp.proj, C, n_hidden))
        if any(p is None for p in parts):
            return None
        plan.append(parts)
    V = model.cfg.vocab_size
    head = _linear_args(model.lm_head, V, C)
    final = _norm_args(model.norm, C) if model.norm is not None else (0, 0, 0.0, 0)
    if head is None or final is None:
        return None
    return plan + [(final, head)]


def _weights_for(model, cache) -> list[tuple] | None:
    """``_weights(model)``, checked once per cache (one generation) rather than at every token:
    the checks walk ~10 tensors a block, 3% of a SmolLM2 step. The cache keeps the parameters
    alive with the addresses, so they stay valid; a weight *replaced* (not changed in place)
    during a generation is therefore read from its old tensor until the next cache."""
    snapshot = getattr(cache, "_fast_decode_weights", None)
    if snapshot is None or snapshot[0] is not model:
        weights = _weights(model)
        if weights is None:
            return None
        snapshot = (model, weights, list(model.parameters()))
        cache._fast_decode_weights = snapshot
    return snapshot[1]


def decode_step(model, ids: torch.Tensor, positions: torch.Tensor, key_padding: torch.Tensor | None,
                cache) -> torch.Tensor | None:
    """Logits (B, 1, V) for one new token per row, appending to ``cache``; or None (having changed
    nothing) when the fast path does not apply, and the caller runs the reference path.

    ``positions``: (1,) or (B, 1) as ``_positions`` made them; ``key_padding``: (B, L + 1) bool or None.
    """
    cfg = model.cfg
    B = ids.shape[0]
    C, nh, nkv, hs, n_hidden = cfg.n_embd, cfg.n_head, cfg.kv_heads, cfg.head_size, cfg.hidden_size
    gated = cfg.mlp == "swiglu"
    if ids.shape[1] != 1 or B > MAX_ROWS or ids.device.type != "cpu" or next(model.parameters()).dtype != FLOAT:
        return None
    weights = _weights_for(model, cache)
    if weights is None or len(cache.layers) != len(model.layers):
        return None
    *plan, (final, head) = weights
    V = cfg.vocab_size
    L = cache.length
    for lc in cache.layers:  # the cache's layout, and room for the new token
        kv_shape = (B, nkv, lc.k.shape[2], hs)
        if (lc.k.shape != kv_shape or lc.v.shape != kv_shape or not _ok(lc.k) or not _ok(lc.v)
                or lc.length != L or L + 1 > lc.k.shape[2]):
            return None  # the reference path raises where it should ("KV cache full", ...)
    rope = model.layers[0].attn.rope
    if rope is not None:
        if not _ok(rope.cos, rope.cos.shape[0] * hs) or not _ok(rope.sin, rope.cos.shape[0] * hs):
            return None
        pos = positions.reshape(-1).to(torch.int64).contiguous()  # (1,) or (B,)
        if pos.numel() not in (1, B) or int(pos.max()) >= rope.cos.shape[0] or int(pos.min()) < 0:
            return None  # the reference path gives the error message
    key_ok = None
    if key_padding is not None:
        if key_padding.shape != (B, L + 1):
            return None  # the reference path gives the error message
        key_ok = key_padding.to(torch.bool).contiguous()  # (B, L + 1): one byte per key, 1 = real

    use_torch_threads()  # as many threads as PyTorch, not more than cores
    x = model.embed(ids, positions).reshape(B, C).to(FLOAT).contiguous()  # (B, C): token (+ position)
    n_qkv = C + 2 * nkv * hs
    h = torch.empty(B, C, dtype=FLOAT)  # a normalised copy of x
    qkv = torch.empty(B, n_qkv, dtype=FLOAT)  # [q | k | v] per row
    att = torch.empty(B, C, dtype=FLOAT)  # the heads' attention outputs, concatenated
    up = torch.empty(B, 2 * n_hidden if gated else n_hidden, dtype=FLOAT)  # [gate | up], or W_1 h + b_1
    act = torch.empty(B, n_hidden, dtype=FLOAT) if gated else up  # the MLP's hidden activations
    X, H, QKV, ATT, UP, ACT = (t.data_ptr() for t in (x, h, qkv, att, up, act))
    mask = key_ok.data_ptr() if key_ok is not None else 0
    kind = ACTIVATION_CODES[cfg.activation]
    if rope is not None:
        cos, sin, pos_ptr, per_row = rope.cos.data_ptr(), rope.sin.data_ptr(), pos.data_ptr(), int(pos.numel() > 1)
    for lc, (n_attn, l_qkv, l_proj, n_mlp, l_up, l_down) in zip(cache.layers, plan):
        # x = x + attn(norm_attn(x))
        K.norm(H, X, *n_attn[:2], B, C, *n_attn[2:])
        _linear(QKV, H, l_qkv, B, n_qkv, C, 0)
        if rope is not None:  # q heads start at 0, k heads after the C query channels (4 bytes each)
            K.rope(QKV, n_qkv, cos, sin, pos_ptr, per_row, B, nh, hs)
            K.rope(QKV + 4 * C, n_qkv, cos, sin, pos_ptr, per_row, B, nkv, hs)
        K.attend(ATT, QKV, n_qkv, lc.k.data_ptr(), lc.v.data_ptr(), mask, B, nh, nkv, hs, L, lc.k.shape[2])
        lc.length = L + 1
        _linear(X, ATT, l_proj, B, C, C, 1)  # accumulate: the residual add
        # x = x + mlp(norm_mlp(x))
        K.norm(H, X, *n_mlp[:2], B, C, *n_mlp[2:])
        _linear(UP, H, l_up, B, up.shape[1], C, 0)
        if gated:
            K.gated(ACT, UP, B, n_hidden, kind)
        else:
            K.act(ACT, B * n_hidden, kind)
        _linear(X, ACT, l_down, B, C, n_hidden, 1)
    if model.norm is not None:
        K.norm(H, X, *final[:2], B, C, *final[2:])
    else:
        h.copy_(x)
    logits = torch.empty(B, 1, V, dtype=FLOAT)  # (B, 1, V)
    _linear(logits.data_ptr(), H, head, B, V, C, 0)
    return logits
