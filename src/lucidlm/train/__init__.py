"""Training: a typed config, one flat loop, checkpoints that resume step-exactly, DDP.

    from lucidlm.train import TrainConfig, train
    result = train(TrainConfig.from_toml("run.toml"))

or ``lucidlm train --config run.toml [--key=value ...]`` and ``lucidlm plot OUT_DIR``.
Imports are lazy so that ``lucidlm.train.config`` (and the CLI parser) stay free of torch.
"""

from __future__ import annotations

from lucidlm.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "plot_run", "train"]


def __getattr__(name: str):
    if name in ("train", "TrainResult", "TrainingDiverged"):
        from lucidlm.train import loop

        return getattr(loop, name)
    if name == "plot_run":
        from lucidlm.train.metrics import plot_run

        return plot_run
    raise AttributeError(f"module 'lucidlm.train' has no attribute {name!r}")
