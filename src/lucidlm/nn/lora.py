"""LoRA: finetune a large model by training two small matrices per layer (Hu et al. 2021).

A finetune changes a pretrained weight W0 (out, in) by some dW. LoRA bets that dW has low rank and
writes it as a product of two thin matrices, training only those:

    h = W0 x + (alpha / r) B A x          A: (r, in), B: (out, r), r << min(in, out)   (LoRA, eq. 3)

- W0 stays frozen: the optimizer holds state for r * (in + out) numbers per layer, not in * out.
- A starts random (Kaiming-uniform, as ``nn.Linear`` and the authors' ``loralib``) and B at zero,
  so B A = 0 and training starts exactly at the pretrained model.
- alpha / r scales the update so that changing r does not change how big a step is (section 4.1).
- After training, B A can be added into W0 ("merge"): the finetuned model then costs nothing extra
  at inference. Subtracting it again ("unmerge") gets W0 back, up to float rounding.

Which layers get adapters is chosen by module name suffix. lucidlm's Linear layers are named
``attn.qkv`` and ``attn.proj`` (``cross_attn.q``/``kv`` in an encoder-decoder), ``mlp.fc``/``mlp.proj``
(GPT-2) or ``mlp.gate_up``/``mlp.proj`` (SwiGLU), and ``lm_head``. A target ``"proj"`` matches both
``attn.proj`` and ``mlp.proj``; ``"attn.proj"`` only the first.

Adapters are saved alone (a few MB instead of the whole model) by ``lucidlm.loading.adapters``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8  # r: the rank of the update B A
    alpha: float = 16.0  # the update is scaled by alpha / r
    targets: tuple[str, ...] = ("qkv", "proj")  # module-name suffixes that get an adapter
    dropout: float = 0.0  # dropout on the adapter's input (the paper's appendix uses 0.05-0.1)

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"LoRA rank must be a positive int, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets or not all(isinstance(t, str) and t.strip(".") for t in targets):
            raise ValueError(f"LoRA targets must be non-empty module-name suffixes like 'qkv', got {self.targets!r}")
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` plus a low-rank update: y = x W0^T + b + (alpha/r) (x A^T) B^T.

    It *is* an ``nn.Linear`` holding the very same ``weight`` and ``bias`` Parameters as the layer
    it wraps, so parameter names stay ``...qkv.weight`` (checkpoints and weight maps keep working),
    tied weights stay tied, and code that looks for Linear layers (``use_column_major_weights``) still
    finds this one. The adapter adds ``lora_A`` (r, in) and ``lora_B`` (out, r).
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)  # not nn.Linear.__init__: it would allocate a fresh weight
        if not isinstance(base, nn.Linear) or isinstance(base, LoRALinear):
            raise ValueError(f"LoRALinear wraps a plain nn.Linear, got {type(base).__name__}")
        cfg = LoRAConfig(rank, alpha, ("this-layer",), dropout)  # validates rank, alpha and dropout
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same Parameter object (W0), frozen
        self.register_parameter("bias", base.bias)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.alpha, self.scaling = cfg.rank, cfg.alpha, cfg.scaling
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # B = 0 makes the update start at 0
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """dW = (alpha/r) B A, shaped like W0: (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out): W0 x + b
        if self.merged:  # B A already lives inside W0
            return out
        # Two thin matmuls, never the (out, in) product: (..., in) -> (..., r) -> (..., out).
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return out + self.scaling * update

    @torch.no_grad()
    def merge(self) -> None:
        """W0 <- W0 + (alpha/r) B A. An in-place add keeps the weight's memory layout, so a model
        switched to ``use_column_major_weights`` keeps it."""
        if not self.merged:
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W0 <- W0 - (alpha/r) B A: the pretrained weight back, up to float rounding."""
        if self.merged:
            self.weight.sub_(self.delta_weight().to(self.weight.dtype))
            self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear with the current weight (merge first to keep the update)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight, linear.bias = self.weight, self.bias  # shared, like the wrapper's
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


# ----------------------------------------------------------------------------------------------
# a whole model


def _matches(name: str, target: str) -> bool:
    """'layers.0.attn.proj' matches 'proj' and 'attn.proj', not 'oj' (suffixes end at a dot)."""
    target = target.strip(".")
    return name == target or name.endswith("." + target)


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _describe_linears(model: nn.Module) -> str:
    """'attn.qkv, attn.proj, mlp.gate_up, mlp.proj, lm_head' ('layers.N.' dropped)."""
    seen: dict[str, None] = {}
    for name in _linear_names(model):
        seen[".".join(p for p in name.split(".") if not p.isdigit() and p != "layers")] = None
    return ", ".join(seen) or "(none)"


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets=("qkv", "proj"),
               dropout: float = 0.0) -> nn.Module:
    """Wrap every Linear whose name ends in one of ``targets`` in a ``LoRALinear`` (in place) and
    freeze everything but the adapters. Returns the model, with ``model.lora_config`` set."""
    cfg = LoRAConfig(rank, alpha, targets, dropout)
    if lora_modules(model):
        raise ValueError("the model already has LoRA adapters; apply_lora once (or load_adapters into it)")
    chosen = [n for n in _linear_names(model) if any(_matches(n, t) for t in cfg.targets)]
    unmatched = [t for t in cfg.targets if not any(_matches(n, t) for n in chosen)]
    if unmatched:
        raise ValueError(f"LoRA target(s) {unmatched} match no Linear layer of this model; its Linear layers are: "
                         f"{_describe_linears(model)} (targets match the end of a module name)")
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), cfg.rank, cfg.alpha, cfg.dropout))
    model.lora_config = cfg
    mark_only_lora_trainable(model)
    return model


def mark_only_lora_trainable(model: nn.Module) -> int:
    """requires_grad on the adapters' A and B only; returns how many numbers are trainable."""
    n = 0
    for name, p in model.named_parameters():
        trainable = name.endswith(("lora_A", "lora_B"))
        p.requires_grad_(trainable)
        n += p.numel() if trainable else 0
    return n


def _check_untied(model: nn.Module, modules: dict[str, LoRALinear]) -> None:
    """Merging writes into W0; if W0 is shared (the output head tied to the token embedding)
    that would silently change the other user too."""
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    for name, m in modules.items():
        others = [o for o in owners.get(id(m.weight), []) if o != f"{name}.weight"]
        if others:
            raise ValueError(f"cannot merge the adapter of {name!r}: its weight is tied to {others[0]!r}, so merging "
                             f"would change that too; leave {name.rsplit('.', 1)[-1]!r} out of the LoRA targets, or "
                             "keep the adapter unmerged")


def merge_lora(model: nn.Module) -> nn.Module:
    """Add every adapter into its base weight (in place); forward then costs what the base does."""
    modules = lora_modules(model)
    if not modules:
        raise ValueError("the model has no LoRA adapters to merge (apply_lora or load_adapters first)")
    _check_untied(model, modules)
    for m in modules.values():
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Subtract every merged adapter from its base weight again (in place)."""
    for m in lora_modules(model).values():
        m.unmerge()
    return model


def remove_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace each LoRALinear by a plain nn.Linear (merging first unless ``merge=False``, which
    drops the adapters): the result saves and loads as an ordinary checkpoint."""
    modules = lora_modules(model)
    if merge and modules:
        merge_lora(model)
    for name, m in modules.items():
        if not merge:
            m.unmerge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, m.to_linear())
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """{'layers.0.attn.qkv.lora_A': (r, in), '...lora_B': (out, r), ...}: the adapters alone."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}
