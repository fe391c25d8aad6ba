"""Learning-rate schedules: the learning rate of optimizer step ``step`` (1 = the first step).

Each is a pure function of the step, so resuming a run needs no scheduler object: the step number
is the scheduler's whole state.

- warmup: lr * step / warmup_steps for the first warmup_steps steps. Adam's second-moment
  estimate is poor for the first few hundred steps; small steps keep them from doing damage.
- cosine (Loshchilov & Hutter 2017, as in GPT-2/3 and nanoGPT): after warmup,
  lr(t) = min_lr + 0.5 * (1 + cos(pi * t)) * (lr - min_lr), t = fraction of the decay done.
- wsd, warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): hold the peak lr, then
  decay linearly to min_lr over the last decay_fraction of the steps. The stable phase can be
  extended or branched from without knowing the run's length in advance.
- constant: the peak lr after warmup.
- noam, inverse square root (Vaswani et al. 2017, eq. 3): a linear warmup, then lr ~ 1/sqrt(step),
  with no end: ``noam_lr``. Written in the paper's terms (d_model, a factor) or by its peak
  (``inverse_sqrt_lr``); the same curve.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int, schedule: str = "cosine",
          decay_fraction: float = 0.2) -> float:
    """Examples (lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110):
    step 5 -> 0.5 (warmup); cosine: step 10 -> 1.0, step 60 -> 0.55, step 110 -> 0.1;
    wsd (decay_fraction=0.5, decay from step 55): step 55 -> 1.0, step 110 -> 0.1."""
    if step < 1:
        raise ValueError(f"steps count from 1, got {step}")
    if warmup_steps and step <= warmup_steps:
        return lr * step / warmup_steps
    if schedule == "constant":
        return lr
    if step >= max_steps:
        return min_lr
    if schedule == "cosine":
        done = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 .. 1 after warmup
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * done)) * (lr - min_lr)
    if schedule == "wsd":
        decay_start = max(warmup_steps, max_steps - round(decay_fraction * max_steps))
        if step <= decay_start:
            return lr
        done = (step - decay_start) / (max_steps - decay_start)  # 0 .. 1 in the decay phase
        return lr + done * (min_lr - lr)
    raise ValueError(f"unknown schedule {schedule!r}; choose cosine, wsd or constant")


def lr_for(cfg, step: int) -> float:
    """``lr_at`` with a TrainConfig's settings."""
    return lr_at(step, lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps,
                 schedule=cfg.schedule, decay_fraction=cfg.decay_fraction)


def noam_lr(step: int, *, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """lrate = factor * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)  (Vaswani et al., eq. 3).

    It rises linearly for warmup_steps steps, peaks at factor / sqrt(d_model * warmup_steps), then
    falls as 1/sqrt(step). Example: d_model=512, warmup_steps=4000 (the paper's base model):
    step 4000 -> 6.99e-4, step 16000 -> 3.49e-4 (half: four times the steps)."""
    if step < 1:
        raise ValueError(f"steps count from 1, got {step}")
    if warmup_steps < 1 or d_model < 1:
        raise ValueError(f"noam_lr needs warmup_steps >= 1 and d_model >= 1, got {warmup_steps}, {d_model}")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def inverse_sqrt_lr(step: int, *, lr: float, warmup_steps: int) -> float:
    """``noam_lr`` named by its peak ``lr`` (reached at step = warmup_steps):
    lr * min(step / warmup_steps, sqrt(warmup_steps / step)). Example (lr=1e-3, warmup_steps=100):
    step 50 -> 5e-4, step 100 -> 1e-3, step 400 -> 5e-4."""
    if step < 1:
        raise ValueError(f"steps count from 1, got {step}")
    if warmup_steps < 1:
        raise ValueError(f"inverse_sqrt_lr needs warmup_steps >= 1, got {warmup_steps}")
    return lr * min(step / warmup_steps, math.sqrt(warmup_steps / step))
