"""Quantising weights into llama.cpp's blocks (the inverse of nn/quantized.py's dequantisation),
tensor by tensor for GGUF export, and whole models (``quantize_model``: ``lucidlm quantize``).

A row is cut into blocks of 32 weights; each block keeps one fp16 scale d (Q4_1: and a minimum m)
and one small integer per weight:

    Q8_0  d = max|w| / 127                   q = round(w / d), -127..127        w ~ d * q
    Q4_0  d = (the w largest in size) / -8   q = floor(w / d + 8.5), 0..15      w ~ d * (q - 8)
    Q4_1  d = (max w - min w) / 15, m = min  q = floor((w - m) / d + 0.5), 0..15  w ~ d * q + m

Q4_0's scale takes the sign of the largest weight so that it lands exactly on q = 0 (-8 d);
Q4_1 spends two more bytes a block on m and fits blocks that are not centred on zero. The
arithmetic is float32 in the order ggml's reference quantisers use (``quantize_row_q4_0_ref``
and friends in ggml-quants.c), rounding half away from zero for Q8_0, so the bytes equal what
llama.cpp's own tools write (tests/test_gguf_export.py checks them against the gguf package).
Bytes per 32 weights: Q8_0 34, Q4_1 20, Q4_0 18, against 128 in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from lucidlm.nn.quantized import BLOCK_BYTES, QuantizedEmbedding, QuantizedLinear

BLOCK = 32
GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 8}


def _blocks(w: torch.Tensor) -> torch.Tensor:
    if w.shape[-1] % BLOCK:
        raise ValueError(f"rows of {w.shape[-1]} weights do not split into blocks of {BLOCK}")
    return w.detach().to(torch.float32).reshape(-1, BLOCK)  # (n_blocks, 32)


def _fp16_bytes(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).view(torch.uint8)  # (n_blocks, 2)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's roundf in float32: |x| = f + r with f whole, 0 <= r < 1; add 1 when r >= 0.5 (computed
    as floor(2r), which is exact, where floor(|x| + 0.5) can round up 0.49999997)."""
    a = x.abs()
    f = a.floor()
    return torch.sign(x) * (f + (2 * (a - f)).floor())


def _nibbles(q: torch.Tensor) -> torch.Tensor:
    """(n, 32) values 0..15 -> (n, 16) bytes: q_j in the low nibble of byte j, q_(16+j) in the high."""
    q = q.to(torch.uint8)
    return q[:, :16] | (q[:, 16:] << 4)


def _inverse(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / d, or 0 where d is 0, as llama.cpp's ``id = d ? 1.0f/d : 0.0f``; the blocks where 1 / d
    overflows). Where d is below 2.9e-39 (every weight of the block tiny), 1 / d is inf, and
    llama.cpp's and the gguf package's casts of the resulting inf and NaN to ints give 0 on x86:
    such blocks get q = 0 here too. They store d = 0 in float16, so their weights read back the
    same whatever q holds."""
    inv = 1 / d
    overflow = inv.isinf() & (d != 0)
    return torch.where((d == 0) | overflow, torch.zeros_like(d), inv), overflow


def quantize_q8_0(w: torch.Tensor) -> bytes:
    b = _blocks(w)
    d = b.abs().amax(dim=1, keepdim=True) / 127  # (n, 1)
    inv, overflow = _inverse(d)
    q = _round_half_away(b * inv).masked_fill(overflow, 0).to(torch.int8).view(torch.uint8)  # (n, 32)
    return torch.cat([_fp16_bytes(d), q], dim=1).numpy().tobytes()


def quantize_q4_0(w: torch.Tensor) -> bytes:
    b = _blocks(w)
    largest = b.gather(1, b.abs().argmax(dim=1, keepdim=True))  # (n, 1) the weight largest in size, signed
    d = largest / -8
    inv, overflow = _inverse(d)
    q = torch.trunc(b * inv + 8.5).clamp(0, 15).masked_fill(overflow, 0)  # (n, 32)
    return torch.cat([_fp16_bytes(d), _nibbles(q)], dim=1).numpy().tobytes()


def quantize_q4_1(w: torch.Tensor) -> bytes:
    b = _blocks(w)
    lo, hi = b.amin(dim=1, keepdim=True), b.amax(dim=1, keepdim=True)  # (n, 1)
    d = (hi - lo) / 15
    inv, overflow = _inverse(d)
    q = torch.trunc((b - lo) * inv + 0.5).clamp(0, 15).masked_fill(overflow, 0)  # (n, 32)
    return torch.cat([_fp16_bytes(d), _fp16_bytes(lo), _nibbles(q)], dim=1).numpy().tobytes()


def tensor_bytes(w: torch.Tensor, kind: str) -> bytes:
    """``w`` as the bytes of ggml type ``kind`` ("f32", "f16", "q8_0", "q4_0", "q4_1")."""
    w = w.detach().to(torch.float32).contiguous()
    if kind == "f32":
        return w.numpy().tobytes()
    if kind == "f16":
        return w.to(torch.float16).numpy().tobytes()
    quantizer = {"q8_0": quantize_q8_0, "q4_0": quantize_q4_0, "q4_1": quantize_q4_1}.get(kind)
    if quantizer is None:
        raise ValueError(f"unknown weight type {kind!r}; choose from {', '.join(GGML_TYPE)}")
    return quantizer(w)



# ----------------------------------------------------------------------------------------------
# whole models: every matrix kept in blocks (nn/quantized.py)


def blocks_tensor(w: torch.Tensor, kind: str) -> torch.Tensor:
    """``w`` (rows, n_in) quantised as (rows, n_in // 32 * block bytes) uint8 blocks."""
    raw = bytearray(tensor_bytes(w, kind))
    return torch.frombuffer(raw, dtype=torch.uint8).reshape(w.shape[0], -1)


def quantizable(model: nn.Module) -> list[str]:
    """Names of the modules ``quantize_model`` would replace: every plain nn.Linear and the token
    embedding table, whose rows fill whole blocks of 32 (the rest stay float32, as llama.cpp's
    quantize keeps such tensors in f16)."""
    names = []
    for name, module in model.named_modules():
        if type(module) is nn.Linear and module.in_features % BLOCK == 0:
            names.append(name)
        elif type(module) is nn.Embedding and name.endswith("embed.tokens") and module.embedding_dim % BLOCK == 0:
            names.append(name)
    return names


def quantize_model(model: nn.Module, kind: str) -> dict[str, str]:
    """Quantise ``model`` in place: each module of ``quantizable(model)`` becomes a QuantizedLinear
    or QuantizedEmbedding holding ``kind`` blocks ("q8_0", "q4_0", "q4_1") made by the quantisers
    above (llama.cpp's bytes). A head tied to the embedding reads the same blocks. Returns the plan
    {module name: kind}, also recorded in ``model.cfg.extra["quantized"]`` so that a checkpoint
    saved from the model rebuilds the same layers (``apply_quantized``)."""
    if kind not in BLOCK_BYTES:
        raise ValueError(f"unknown block type {kind!r}; choose from {', '.join(BLOCK_BYTES)}")
    blocks: dict[str, torch.Tensor] = {}
    by_weight: dict[int, torch.Tensor] = {}  # a tied weight is quantised once
    for name in quantizable(model):
        w = model.get_submodule(name).weight
        if id(w) not in by_weight:
            by_weight[id(w)] = blocks_tensor(w.detach(), kind)
        blocks[name] = by_weight[id(w)]
    plan = {name: kind for name in blocks}
    apply_quantized(model, plan, blocks)
    cfg = model.cfg
    model.cfg = cfg.replace(extra={**cfg.extra, "quantized": {**cfg.extra.get("quantized", {}), **plan}})
    return plan


def apply_quantized(model: nn.Module, plan: dict[str, str], blocks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Replace the modules named in ``plan`` by quantised ones holding ``blocks`` (or, without
    them, placeholders on the "meta" device that ``load_state_checked`` fills: a checkpoint's
    load). Modules that shared a weight (a tied head) share their blocks."""
    shared: dict[int, torch.Tensor] = {}
    for name, kind in plan.items():
        old = model.get_submodule(name)
        if type(old) is nn.Embedding:
            rows, n_in = old.num_embeddings, old.embedding_dim
        elif type(old) is nn.Linear:
            rows, n_in = old.out_features, old.in_features
        else:
            raise ValueError(f"cannot quantise {name} ({type(old).__name__}): only nn.Linear and nn.Embedding")
        if blocks is not None:
            b = blocks[name]
        else:
            b = shared.setdefault(id(old.weight), torch.empty(rows, n_in // BLOCK * BLOCK_BYTES[kind],
                                                               dtype=torch.uint8, device="meta"))
        if type(old) is nn.Embedding:
            new = QuantizedEmbedding(b, kind, n_in)
        else:
            new = QuantizedLinear(b, kind, n_in, bias=old.bias)  # a placeholder bias stays one
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return model
