"""Training: a typed config, one flat loop, checkpoints that resume step-exactly, DDP.

    from lucidlm.train import TrainConfig, train
    result = train(TrainConfig.from_toml("run.toml"))

or ``lucidlm train --config run.toml [--key=value ...]`` and ``lucidlm plot OUT_DIR``.
"""

from __future__ import annotations

from lucidlm.train.config import TrainConfig
from lucidlm.train.loop import TrainingDiverged, TrainResult, train
from lucidlm.train.metrics import plot_run

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "plot_run", "train"]
