"""Normalisation layers. Notation: (B, T, C) = batch, time, channels.

LayerNorm (Ba et al. 2016): y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias
RMSNorm   (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * weight
RMSNorm drops the mean subtraction and the bias: cheaper, and what Llama-style models use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The equation above, computed in float32 like Hugging Face's LlamaRMSNorm, then cast back."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and hasattr(F, "rms_norm"):
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # fused kernel, same result
        return rms_norm_reference(x, self.weight, self.eps)


def make_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; use 'layernorm' or 'rmsnorm'")
