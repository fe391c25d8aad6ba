"""The feed-forward sub-block: the same small network applied to every position independently.

Classic (GPT-2, BERT, Vaswani et al.):  y = W2 act(W1 x + b1) + b2,  hidden size ~4C
SwiGLU  (Shazeer 2020, Llama):           y = W_down( silu(W_gate x) * (W_up x) )
The gate and up projections are stored as one matrix (``gate_up``) so that one matmul computes
both: on a CPU at batch 1 each extra op costs time of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact, erf-based (BERT)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,
    "silu": F.silu,
    "relu2": lambda x: F.relu(x).square(),
}


class MLP(nn.Module):
    def __init__(self, n_embd: int, hidden: int, activation: str = "gelu_tanh", bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.fc = nn.Linear(n_embd, hidden, bias=bias)
        self.proj = nn.Linear(hidden, n_embd, bias=bias)

    def forward(self, x: torch.Tensor, trace=None, name: str = "mlp") -> torch.Tensor:
        h = self.fc(x)  # (B, T, hidden)
        a = ACTIVATIONS[self.activation](h)
        if trace is not None:
            trace.record(f"{name}.pre_act", h)
            a = trace.record(f"{name}.act", a)  # an intervention may edit it (Trace.edits)
        return self.proj(a)  # (B, T, C)


class SwiGLU(nn.Module):
    def __init__(self, n_embd: int, hidden: int, bias: bool = False, activation: str = "silu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.hidden = hidden
        self.gate_up = nn.Linear(n_embd, 2 * hidden, bias=bias)  # [W_gate; W_up]
        self.proj = nn.Linear(hidden, n_embd, bias=bias)  # W_down

    def forward(self, x: torch.Tensor, trace=None, name: str = "mlp") -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)  # (B, T, hidden) each
        a = ACTIVATIONS[self.activation](gate) * up  # (B, T, hidden)
        if trace is not None:
            trace.record(f"{name}.pre_act", gate)
            a = trace.record(f"{name}.act", a)  # an intervention may edit it (Trace.edits)
        return self.proj(a)  # (B, T, C)
