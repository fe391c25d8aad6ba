"""Quantising weights into llama.cpp's blocks: the inverse of ``gguf.py``'s dequantisation.

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


def quantize_q8_0(w: torch.Tensor) -> bytes:
    b = _blocks(w)
    d = b.abs().amax(dim=1, keepdim=True) / 127  # (n, 1)
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = _round_half_away(b * inv).to(torch.int8).view(torch.uint8)  # (n, 32)
    return torch.cat([_fp16_bytes(d), q], dim=1).numpy().tobytes()


def quantize_q4_0(w: torch.Tensor) -> bytes:
    b = _blocks(w)
    largest = b.gather(1, b.abs().argmax(dim=1, keepdim=True))  # (n, 1) the weight largest in size, signed
    d = largest / -8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(b * inv + 8.5).clamp(0, 15)  # (n, 32)
    return torch.cat([_fp16_bytes(d), _nibbles(q)], dim=1).numpy().tobytes()


def quantize_q4_1(w: torch.Tensor) -> bytes:
    b = _blocks(w)
    lo, hi = b.amin(dim=1, keepdim=True), b.amax(dim=1, keepdim=True)  # (n, 1)
    d = (hi - lo) / 15
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc((b - lo) * inv + 0.5).clamp(0, 15)  # (n, 32)
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

