"""Layers whose weights stay in llama.cpp's quantised blocks: ``QuantizedLinear`` and ``QuantizedEmbedding``.

A quantised row is a run of blocks of 32 weights; each block keeps its own fp16 scale d (and
minimum m) and one small integer q per weight:

    Q8_0, 34 bytes: d | q0..q31 as int8                                    w = d * q
    Q4_0, 18 bytes: d | 16 bytes: q_j in the low nibble of byte j,
                        q_(16+j) in its high nibble                        w = d * (q - 8)
    Q4_1, 20 bytes: d | m | 16 bytes of nibbles as in Q4_0                 w = d * q + m

Why keep them: generating one token reads every weight once, so a step takes as long as the
weights take to stream from memory. SmolLM2-135M's GGUF holds 97 MB of blocks; dequantised to
float32 they are 538 MB, five and a half times the bytes per token. Here the blocks stay as they
are in memory; ``QuantizedLinear`` multiplies by them directly (the C kernel ``linear_q`` of
``_decode_kernel.c``, which expands one block at a time into registers, never into memory), or,
as the readable reference, dequantises the whole matrix and calls ``F.linear``. The two agree up
to the order of the float32 additions (tests/test_quantized.py).

The dequantisation functions below do the same float32 operations in the same order as the gguf
package's ``dequantize`` (maintained with llama.cpp), so the two agree bit for bit
(tests/test_load_speed_paths.py); loading/gguf.py uses them to read a file into float32.
Notation: n_out rows of n_in weights, n_in // 32 blocks a row.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

try:
    from lucidlm.nn import _decode_kernel as K
except ImportError:  # built without a C compiler: the reference path does the work
    K = None

BLOCK = 32  # weights per block
BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20}
KIND_CODES = {"q8_0": 0, "q4_0": 1, "q4_1": 2}  # _decode_kernel.c's enum
MAX_FAST_ROWS = 64  # beyond this many rows, dequantising once and one GEMM is faster (measured: see forward)


def use_torch_threads() -> None:
    """Give the C kernels as many threads as PyTorch uses (``torch.set_num_threads``), not more than
    this process has cores (a helper thread without a core of its own only waits)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = min(torch.get_num_threads(), cores, 64)
    if K.threads() != threads:
        K.set_threads(threads)


def _fp16_column(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """Bytes start, start + 1 of every block read as one fp16 number: (n_blocks, 1) float32."""
    return blocks[:, start : start + 2].view(torch.float16).float()


def _nibbles(packed: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(n_blocks, 16) bytes -> out (n_blocks, 32) float32: the low nibbles, then the high ones."""
    out[:, :16] = packed & 0x0F
    out[:, 16:] = packed >> 4
    return out


def dequantize_q8_0(raw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    blocks = raw.reshape(-1, 34)  # (n_blocks, 34)
    return out.view(-1, 32).copy_(blocks[:, 2:].view(torch.int8)).mul_(_fp16_column(blocks, 0))


def dequantize_q4_0(raw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    blocks = raw.reshape(-1, 18)  # (n_blocks, 18)
    return _nibbles(blocks[:, 2:], out.view(-1, 32)).sub_(8).mul_(_fp16_column(blocks, 0))


def dequantize_q4_1(raw: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    blocks = raw.reshape(-1, 20)  # (n_blocks, 20)
    return _nibbles(blocks[:, 4:], out.view(-1, 32)).mul_(_fp16_column(blocks, 0)).add_(_fp16_column(blocks, 2))


# kind -> fn(raw bytes (uint8, any shape), out (float32, contiguous, the weights' size)) writing into out
DEQUANTIZE = {"q8_0": dequantize_q8_0, "q4_0": dequantize_q4_0, "q4_1": dequantize_q4_1}


def dequantize(blocks: torch.Tensor, kind: str, n_in: int) -> torch.Tensor:
    """(n, n_in // 32 * block bytes) uint8 blocks -> (n, n_in) float32 weights: in C where the
    kernel is built (the same numbers, ~5x faster, with threads), else the torch code above."""
    out = torch.empty(blocks.shape[0], n_in)
    if K is not None and blocks.is_contiguous() and blocks.shape[0] > 0:
        K.dequantize_q(out.data_ptr(), blocks.data_ptr(), KIND_CODES[kind], blocks.shape[0], n_in)
    else:
        DEQUANTIZE[kind](blocks, out)  # writes into out, returns it as (n_blocks, 32)
    return out


def _check_blocks(blocks: torch.Tensor, kind: str, n_in: int) -> None:
    if kind not in BLOCK_BYTES:
        raise ValueError(f"unknown block type {kind!r}; lucidlm keeps {', '.join(BLOCK_BYTES)} quantised")
    if n_in % BLOCK:
        raise ValueError(f"rows of {n_in} weights do not split into blocks of {BLOCK}")
    row_bytes = n_in // BLOCK * BLOCK_BYTES[kind]
    if blocks.dtype != torch.uint8 or blocks.dim() != 2 or blocks.shape[1] != row_bytes:
        raise ValueError(f"{kind} blocks of rows of {n_in} weights must be a (rows, {row_bytes}) uint8 tensor, "
                         f"got {tuple(blocks.shape)} {blocks.dtype}")


class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with W kept in quantised blocks: a drop-in for an inference-only nn.Linear.

    ``blocks``: (out_features, in_features // 32 * block bytes) uint8, the rows of a GGUF tensor.
    No gradients flow to the blocks (they are a buffer, not a Parameter): fine-tune the float
    model, then quantise it (``loading/quantize.py``).
    """

    def __init__(self, blocks: torch.Tensor, kind: str, in_features: int, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        _check_blocks(blocks, kind, in_features)
        self.kind, self.in_features, self.out_features = kind, in_features, blocks.shape[0]
        self.register_buffer("blocks", blocks.contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(torch.float32), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The float32 weights (out, in), dequantised afresh: for readers (inspection, export)."""
        return self.dequantize()

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.blocks, self.kind, self.in_features)  # (out, in)

    def weight_bytes(self) -> int:
        return self.blocks.numel() + (0 if self.bias is None else 4 * self.bias.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The path is chosen by the tokens of one sequence (T of (B, T, C)), never by the batch, so
        # that a row's numbers do not depend on which other rows share its batch.
        tokens = x.shape[-2] if x.dim() >= 3 else x.numel() // max(1, x.shape[-1])
        if K is not None and 0 < tokens <= MAX_FAST_ROWS and x.dtype == torch.float32 and x.is_cpu \
                and not torch.is_grad_enabled() and x.shape[-1] == self.in_features and x.numel() > 0:
            return self._forward_kernel(x)
        # The reference: expand the blocks to float32 and multiply. For many rows (a prompt) this
        # is also the fast way: one dequantisation, then PyTorch's blocked matrix product.
        return F.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def _forward_kernel(self, x: torch.Tensor) -> torch.Tensor:
        use_torch_threads()  # a prompt may come before any one-token step has set them
        x2 = x.reshape(-1, self.in_features).contiguous()  # (rows, in)
        out = torch.empty(x2.shape[0], self.out_features)  # (rows, out)
        bias = self.bias.data_ptr() if self.bias is not None else 0
        K.linear_q(out.data_ptr(), x2.data_ptr(), self.blocks.data_ptr(), KIND_CODES[self.kind], bias,
                   x2.shape[0], self.out_features, self.in_features, 0)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}, " \
               f"bias={self.bias is not None}"


class QuantizedEmbedding(nn.Module):
    """A token embedding table kept in quantised blocks: looking up a token dequantises its row.

    It may share its blocks with the output head (tied embeddings): pass the same tensor to both.
    """

    def __init__(self, blocks: torch.Tensor, kind: str, embedding_dim: int) -> None:
        super().__init__()
        _check_blocks(blocks, kind, embedding_dim)
        self.kind, self.embedding_dim, self.num_embeddings = kind, embedding_dim, blocks.shape[0]
        self.register_buffer("blocks", blocks)

    @property
    def weight(self) -> torch.Tensor:
        """The float32 table (V, C), dequantised afresh: for readers (embedding maps, export)."""
        return dequantize(self.blocks, self.kind, self.embedding_dim)

    def weight_bytes(self) -> int:
        return self.blocks.numel()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.blocks[ids.reshape(-1)]  # (N, row bytes): only the rows asked for
        return dequantize(rows, self.kind, self.embedding_dim).reshape(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, kind={self.kind}"


def weight_bytes(model: nn.Module) -> int:
    """The bytes a model's weights take in memory: float tensors at their size, quantised layers
    at their blocks' size; a tensor shared by two layers (tied embeddings) counted once."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total
