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
