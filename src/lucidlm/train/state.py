"""Checkpoints of a training run, and resuming one step-exactly.

    out_dir/
      last/                 written every eval_interval steps, at the end, and on SIGINT/SIGTERM
        config.json  model.safetensors  tokenizer.json    (a lucidlm checkpoint: load_model opens it)
        train_config.json   the TrainConfig of the run
        train_state.pt      step, optimizer moments, best val loss, every RNG state
      best/                 the same, at the lowest val loss so far
      steps/step_000250/    with keep_every: the model alone (no training state) at step 0 and every
                            keep_every steps, to watch it learn (lucidlm explore)
      metrics.jsonl  loss.png

``train_state.pt`` holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``, which refuses to run pickled code. Each checkpoint is written
into a temporary directory and renamed into place (``lucidlm.loading.checkpoint.atomic_dir``): a
run that crashes or is killed mid-save leaves the previous checkpoint whole.

Step-exact resume: the weights (float32 safetensors, bit-exact), the AdamW moments, the step (the
learning-rate schedule is a function of it), the data generator's state (which windows come next)
and torch's RNG (dropout) are all restored, so step k+1 after a resume computes exactly what it
would have computed without the interruption. ``RunState`` holds those pieces while a run goes on;
its ``save`` writes them and its ``restore`` reads them back.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lucidlm.train import distributed as dist_

LAST, BEST = "last", "best"
STEPS = "steps"  # out_dir/steps/step_000250/: the models kept every keep_every steps
TRAIN_STATE_FILE = "train_state.pt"
TRAIN_CONFIG_FILE = "train_config.json"
STATE_VERSION = 1


def check_out_dir(out_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from (or None), after refusing to start a new run over an old one."""
    out_dir = Path(out_dir)
    existing = [name for name in (LAST, BEST) if (out_dir / name).exists()]
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one")
    if resume:
        if not (out_dir / LAST).is_dir():
            raise FileNotFoundError(f"--resume: no checkpoint at {out_dir / LAST}; start a new run without --resume")
        return out_dir / LAST
    if existing and not overwrite:
        raise ValueError(
            f"{out_dir} already holds a checkpoint ({', '.join(n + '/' for n in existing)}); pass --resume to continue "
            "it, --overwrite to start over (old checkpoints are replaced only when the new run saves), "
            "or choose another --out_dir"
        )
    return None


@dataclass
class RunState:
    """One run's progress (``step``, ``best_val``) beside the objects a checkpoint is written from.
    The training loop advances ``step`` and ``best_val``; ``save`` reads them when it is called."""

    cfg: object  # the run's TrainConfig, saved as train_config.json
    info: dist_.DistInfo
    out_dir: Path
    model: nn.Module  # unwrapped: no compile / DDP wrapper (FSDP shards it in place)
    tokenizer: object  # saved beside the weights; may be None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    data_gen: torch.Generator  # draws the training batches: its state says which windows come next
    step: int = 0  # the last completed optimizer step
    best_val: float = math.inf  # the lowest val loss so far (best/ holds that model)

    def save(self, name: str) -> Path:
        """Write ``out_dir/name`` (LAST or BEST). Every rank must call it: under FSDP gathering the
        full model and optimizer state are collectives; only rank 0 writes."""
        path = self.out_dir / name
        to_save = dist_.full_model(self.model, self.info)
        optimizer_state = dist_.optimizer_state(self.model, self.optimizer, self.info)
        if self.info.is_main:
            state = {"step": self.step, "optimizer": optimizer_state, "best_val_loss": self.best_val,
                     "rng": rng_states(self.data_gen), "scaler": self.scaler.state_dict(),
                     "train_config": self.cfg.to_dict(), "world_size": self.info.world_size}
            save_run_checkpoint(path, to_save, self.tokenizer, self.cfg, state)
        dist_.barrier(self.info)
        return path

    def keep(self) -> Path:
        """Write the model alone, as it is now, to ``out_dir/steps/step_{step:06d}`` (keep_every):
        a lucidlm checkpoint directory ``load_model`` opens. Every rank calls it (FSDP gathers)."""
        from lucidlm.loading.checkpoint import save_checkpoint

        path = self.out_dir / STEPS / kept_name(self.step)
        to_save = dist_.full_model(self.model, self.info)
        if self.info.is_main:
            save_checkpoint(to_save, path, self.tokenizer)
        dist_.barrier(self.info)
        return path

    def restore(self, train_state: dict, source: Path) -> None:
        """Continue from ``train_state`` (read from ``source`` by ``load_train_state``): the
        optimizer moments, the fp16 loss scale, every RNG, the step and the best val loss."""
        try:
            dist_.load_optimizer_state(self.model, self.optimizer, train_state["optimizer"], self.info)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ValueError(f"{source}: the optimizer state does not fit this model ({exc}); "
                             "was the set of trainable parameters changed?") from None
        if "scaler" in train_state:
            self.scaler.load_state_dict(train_state["scaler"])
        set_rng_states(train_state["rng"], self.data_gen)
        self.step, self.best_val = int(train_state["step"]), float(train_state["best_val_loss"])


def kept_name(step: int) -> str:
    """The folder of the model kept at ``step``: zero-padded, so the folders sort by step."""
    return f"step_{step:06d}"


def kept_steps(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every model a run kept (keep_every), by step."""
    found = []
    for path in (Path(out_dir) / STEPS).glob("step_*"):
        suffix = path.name[len("step_"):]
        if path.is_dir() and suffix.isdigit() and (path / "config.json").is_file():
            found.append((int(suffix), path))
    return sorted(found)


def rng_states(data_generator: torch.Generator) -> dict:
    states = {"torch": torch.get_rng_state(), "data": data_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict, data_generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    data_generator.set_state(states["data"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_run_checkpoint(path: str | os.PathLike, model, tokenizer, cfg, state: dict) -> Path:
    """Write a checkpoint directory with the model, tokenizer, train_config.json and
    train_state.pt, atomically (all of it appears at once, or none of it)."""
    from lucidlm.loading.checkpoint import save_checkpoint

    def extra(folder: Path) -> None:
        (folder / TRAIN_CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        torch.save({"version": STATE_VERSION, **state}, folder / TRAIN_STATE_FILE)

    return save_checkpoint(model, path, tokenizer, extra=extra)


def load_train_state(folder: str | os.PathLike) -> dict:
    """train_state.pt, loaded without unpickling code; a corrupt file is a ValueError naming it."""
    path = Path(folder) / TRAIN_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {TRAIN_STATE_FILE} in {folder}: not a training checkpoint (cannot resume from it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, KeyError) as exc:
        raise ValueError(f"{path} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]}); restore it "
                         "from a backup, resume from another checkpoint, or start over with --overwrite") from None
    needed = {"version", "step", "optimizer", "rng", "best_val_loss", "train_config"}
    if not isinstance(state, dict) or not needed <= set(state):
        missing = sorted(needed - set(state)) if isinstance(state, dict) else sorted(needed)
        raise ValueError(f"{path} is not a lucidlm training state (missing {missing})")
    if state["version"] > STATE_VERSION:
        raise ValueError(f"{path} was written by a newer lucidlm (train state version {state['version']}); upgrade")
    return state


def model_config_differences(saved: dict, wanted: dict) -> list[str]:
    """``["n_layer: checkpoint 2, config 4", ...]`` for the ModelConfig fields that differ
    (free-form ``extra`` and the display ``name`` are not part of the shape)."""
    keys = sorted((set(saved) | set(wanted)) - {"extra", "name"})
    return [f"{k}: checkpoint {saved.get(k)!r}, config {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)]


def load_model_for_resume(folder: Path, train_state: dict, wanted_model_cfg, init_from: str):
    """The model saved in ``folder``, in train mode; a changed model config (or init_from) is a
    ValueError naming the fields, raised before anything is written."""
    from lucidlm.loading.checkpoint import load_checkpoint
    from lucidlm.models.config import ModelConfig

    saved_cfg = ModelConfig.load(folder / "config.json")
    if wanted_model_cfg is not None:
        diffs = model_config_differences(saved_cfg.to_dict(), wanted_model_cfg.to_dict())
        if diffs:
            raise ValueError(f"--resume: the model config changed since {folder} was saved ({'; '.join(diffs)}); "
                             "restore the old settings, or start a new run in another out_dir")
    else:
        saved_init_from = train_state["train_config"].get("init_from", "scratch")
        if init_from != saved_init_from:
            raise ValueError(f"--resume: init_from changed since {folder} was saved (checkpoint "
                             f"{saved_init_from!r}, config {init_from!r}); restore it or start a new run in another "
                             "out_dir")
    model, _ = load_checkpoint(folder, tokenizer=False)
    return model.train()
