"""The optimizer: AdamW with weight decay on the >= 2-D weights only.

Weight decay shrinks a weight toward zero each step. That regularises the matrices that mix
features (linear weights, embeddings); biases and norm gains are 1-D shifts and scales, where a
pull to zero only fights the fit (GPT-2/3, nanoGPT, llm.c all exempt them).
Only parameters with ``requires_grad`` are optimised, so a model with frozen parts (LoRA) passes
straight through.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed (>= 2-D) and not decayed (< 2-D) trainable parameters.
    A tied weight (embedding = output head) appears once: named_parameters drops duplicates."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fused_available(device: torch.device) -> bool:
    """Whether this torch has a fused AdamW kernel for ``device`` (one kernel for all parameters
    instead of a loop of small ops). CUDA has had it since torch 2.0; CPU since 2.4."""
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


def build_optimizer(model: nn.Module, cfg, device: torch.device) -> tuple[torch.optim.Optimizer, bool]:
    """(AdamW over ``model``'s trainable parameters, whether the fused kernel is used); or Muon
    (``optimizer="muon"``, see muon.py), never fused."""
    if cfg.optimizer == "muon":
        from lucidlm.train.muon import Muon, muon_param_groups

        groups = muon_param_groups(model, cfg)
        return Muon(groups, lr=cfg.lr, momentum=cfg.muon_momentum, betas=(cfg.beta1, cfg.beta2)), False
    if cfg.optimizer != "adamw":
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw or muon")
    fused = {"on": True, "off": False, "auto": None}[cfg.fused]
    if fused is None:
        fused = fused_available(device)
    elif fused and not fused_available(device):
        raise ValueError(f"fused='on' but this torch ({torch.__version__}) has no fused AdamW for {device.type}; "
                         "use fused='auto' or 'off'")
    groups = param_groups(model, cfg.weight_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
    return opt, bool(fused)
