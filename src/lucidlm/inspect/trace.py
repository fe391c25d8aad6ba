"""The trace: a model's forward pass explains itself.

Pass ``trace=Trace()`` to a model's ``forward`` and every stage records its tensor under a
dotted name ("embed.tokens", "layers.0.attn.weights", "layers.0.mlp.act", "logits", ...).
Without a trace nothing is recorded and nothing is computed for it: each recording site is a
single ``if trace is not None`` check. With a trace, attention runs its reference path, because
the fast fused kernel never materialises the attention weights.

Notation in names: ``layers.{i}.`` prefixes everything inside block ``i``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class Trace:
    """Ordered name -> tensor record of one forward pass (tensors detached, on the CPU by default).

    Args:
        keep: record only names containing one of these substrings (None: everything). Tracing a
            long prompt through a large model holds every intermediate tensor, so narrow it down
            when memory matters, e.g. ``Trace(keep=["attn.weights"])``.
        to_cpu: move recorded tensors to the CPU (so a GPU run can be inspected afterwards).
    """

    def __init__(self, keep: list[str] | None = None, to_cpu: bool = True) -> None:
        self.keep = keep
        self.to_cpu = to_cpu
        self.tensors: dict[str, torch.Tensor] = {}

    def wants(self, name: str) -> bool:
        return self.keep is None or any(k in name for k in self.keep)

    def record(self, name: str, tensor: torch.Tensor) -> None:
        if not self.wants(name):
            return
        t = tensor.detach()
        self.tensors[name] = t.cpu() if self.to_cpu else t

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
