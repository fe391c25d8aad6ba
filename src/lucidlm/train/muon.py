"""Muon: momentum, then orthogonalise the update of each hidden weight matrix (Jordan et al. 2024).

For a weight matrix W (out, in), SGD-momentum's update M is dominated by a few directions (its
top singular vectors). Muon replaces M = U S V^T by its nearest semi-orthogonal matrix U V^T: every
direction moves by the same amount, so rare but useful directions learn as fast as common ones.
U V^T is computed without an SVD by a Newton-Schulz iteration, a few matrix products:

    X <- M / ||M||_F;  repeat 5 times:  A = X X^T;  X <- a X + (b A + c A A) X

with (a, b, c) = (3.4445, -4.7750, 2.0315), chosen to push every singular value toward 1 fast
(not exactly to 1: about 0.7..1.2 is enough). Muon is for the 2-D weights *inside* the blocks;
embeddings, the output head and the 1-D gains/biases keep AdamW (they are lookups and scales,
not linear maps between hidden features). One optimizer holds both kinds of groups, so the
training loop, checkpoints and the learning-rate schedule see a single object.

    https://kellerjordan.github.io/posts/muon/
"""

from __future__ import annotations

import math

import torch
from torch import nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


@torch.no_grad()
def orthogonalize(m: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximation of U V^T for m = U S V^T (2-D), by the quintic Newton-Schulz iteration."""
    a, b, c = NS_COEFFICIENTS
    x = m.float()
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the wide orientation: X X^T is then the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + 1e-7)  # singular values <= 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.T  # (rows, rows)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(m.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for groups with ``muon=True``, AdamW for the others.

    Muon groups: ``lr``, ``momentum`` (Nesterov), ``weight_decay`` (decoupled). The update of a
    matrix (out, in) is scaled by sqrt(max(1, out / in)) so tall and wide matrices move alike.
    AdamW groups: ``lr``, ``betas``, ``eps``, ``weight_decay``, as ``torch.optim.AdamW``.
    """

    def __init__(self, groups: list[dict], *, lr: float, momentum: float = 0.95, betas=(0.9, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        for group in groups:
            if group.get("muon") and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon groups hold 2-D weight matrices only")
        defaults = {"lr": lr, "momentum": momentum, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "muon": False}
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            if group["muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(mu).add_(p.grad)
            update = p.grad.add(buf, alpha=mu)  # Nesterov: look one momentum step ahead
            update = orthogonalize(update)
            scale = math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
            p.mul_(1 - lr * wd)
            p.add_(update, alpha=-lr * scale)

    def _adamw_step(self, group: dict) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            state["exp_avg"].lerp_(p.grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
            denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(eps)
            p.mul_(1 - lr * wd)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))


def muon_param_groups(model: nn.Module, cfg) -> list[dict]:
    """Muon for the 2-D weights of the blocks; AdamW for embeddings, the output head (often the
    same matrix, tied) and every 1-D parameter. ``lr_scale`` turns the schedule's lr (AdamW's)
    into Muon's: the loop multiplies each group's lr by it."""
    embed_like = {id(p) for name, p in model.named_parameters() if name.startswith(("embed.", "lm_head."))}
    muon, adam_matrices, adam_vectors = [], [], []
    for p in model.parameters():  # each tied parameter once
        if not p.requires_grad:
            continue
        if p.dim() == 2 and id(p) not in embed_like:
            muon.append(p)
        elif p.dim() >= 2:
            adam_matrices.append(p)
        else:
            adam_vectors.append(p)
    if not muon:
        raise ValueError("optimizer='muon' found no 2-D weight matrices inside the blocks to train")
    return [
        {"params": muon, "muon": True, "momentum": cfg.muon_momentum, "weight_decay": cfg.weight_decay,
         "lr_scale": cfg.muon_lr / cfg.lr},
        {"params": adam_matrices, "weight_decay": cfg.weight_decay},
        {"params": adam_vectors, "weight_decay": 0.0},
    ]
