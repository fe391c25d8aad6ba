"""Where a token is: positional information, three ways. Notation: T time, C channels, hs head size.

- Learned (GPT-2, BERT): a trainable vector per position, added to the token embedding.
- Sinusoidal (Vaswani et al. 2017, section 3.5), fixed and added to the token embedding:
      PE[pos, 2i]   = sin(pos / 10000^(2i/C))
      PE[pos, 2i+1] = cos(pos / 10000^(2i/C))
- Rotary, RoPE (Su et al. 2021; Llama): nothing is added; inside attention, each pair of query
  and key channels is rotated by an angle proportional to the position, pos * theta^(-2i/hs), so
  q·k depends only on the *relative* distance. We use the Hugging Face channel layout (the two
  halves of the head are the pairs, "rotate_half"); GGUF files store q/k weights permuted for
  llama.cpp's interleaved layout, which the GGUF loader undoes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(n_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(n_positions, dim) table of the equations above."""
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (T, 1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))  # (C/2,)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table


class SinusoidalPositions(nn.Module):
    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_positions(max_positions, dim), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables; ``forward(q, k, positions)`` returns the rotated q and k."""

    def __init__(self, head_size: int, max_positions: int, theta: float = 10000.0) -> None:
        super().__init__()
        if head_size % 2:
            raise ValueError(f"RoPE needs an even head size, got {head_size}")
        self.head_size, self.theta = head_size, theta
        inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
        angles = torch.arange(max_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (T, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, hs): the same angle for both halves
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        self._last: tuple | None = None  # (positions, dtype, cos, sin) of the latest lookup

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # q: (B, nh, T, hs), k: (B, nkv, T, hs), positions: (T,) or (B, T)
        cos, sin = self._tables_at(positions, q.dtype)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

    def _tables_at(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin rows for ``positions``. Every layer of a model shares this module and receives
        the same positions tensor in one forward pass, so the lookup is done once, not per layer
        (at one token per step these few small ops are a visible share of the time)."""
        compiling = torch.compiler.is_compiling()  # the memo and the check would split a compiled graph
        last = self._last
        if not compiling and last is not None and last[0] is positions and last[1] == dtype:
            return last[2], last[3]
        if not compiling and positions.max() >= self.cos.shape[0]:
            raise ValueError(f"position {int(positions.max())} is beyond the RoPE table ({self.cos.shape[0]})")
        cos, sin = self.cos[positions], self.sin[positions]  # (T, hs) or (B, T, hs)
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs): broadcast over heads
        cos, sin = cos.to(dtype), sin.to(dtype)
        if not compiling:
            self._last = (positions, dtype, cos, sin)
        return cos, sin
