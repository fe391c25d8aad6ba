"""``TrainConfig``: every training setting in one typed, validated, frozen dataclass.

It is read from a TOML file and ``--key=value`` overrides, never by ``exec`` or module globals
(nanoGPT's ``configurator.py`` runs the config file as Python; a typo there silently makes a new
global). Unknown keys and wrong types are errors that name the key and what it expects:

    out_dir = "out/shakespeare-char"
    data = "data/shakespeare-char"      # a dataset directory (train.bin, val.bin, meta.json, tokenizer.json)
    batch_size = 32
    [model]                             # a preset to start from, then ModelConfig fields to change
    preset = "gpt2"
    n_layer = 4
    n_embd = 128

On the command line: ``lucidlm train --config run.toml --lr=3e-4 --model.n_layer=6``.
The config is saved as ``train_config.json`` in every checkpoint (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

SCHEDULES = ("cosine", "wsd", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DISTRIBUTED = ("auto", "none", "ddp", "fsdp")
NAN_POLICIES = ("stop", "skip")
OPTIMIZERS = ("adamw", "muon")
SWITCHES = ("auto", "on", "off")
TASKS = ("auto", "lm", "chat")


@dataclass(frozen=True)
class TrainConfig:
    # where things are
    out_dir: str = "out"  # checkpoints (last/, best/), metrics.jsonl, loss.png
    data: str = ""  # a prepared dataset directory (lucidlm data prepare)
    # the model: a preset name, or a table of ModelConfig fields (with an optional "preset" to start
    # from); vocab_size defaults to the dataset's. Ignored when init_from loads a model.
    model: str | dict = "gpt2"
    init_from: str = "scratch"  # "scratch", or a name/path lucidlm.load_model opens (fine-tuning)
    # the batch: each optimizer step sees world_size * batch_size * grad_accum sequences of block_size
    batch_size: int = 12
    block_size: int = 256
    grad_accum: int = 1  # micro-batches summed into one step: a big batch in little memory
    max_steps: int = 1000
    stop_at_step: int = 0  # > 0: stop after this step and save (the schedule still spans max_steps)
    # the optimizer and its learning-rate schedule
    optimizer: str = "adamw"  # adamw | muon (Muon for the blocks' matrices, AdamW for the rest)
    muon_lr: float = 0.02  # optimizer="muon": peak lr of the Muon groups (lr is then AdamW's)
    muon_momentum: float = 0.95
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # where cosine / wsd decay ends
    warmup_steps: int = 100  # linear warmup from lr/warmup_steps: early Adam steps are noisy
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay) | constant (after warmup)
    decay_fraction: float = 0.2  # wsd: the last fraction of steps that decays linearly to min_lr
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = no clipping
    fused: str = "auto"  # fused AdamW kernel: auto (when this torch supports it) | on | off
    # the machine
    device: str = "auto"  # auto (cuda when present, else cpu) | cpu | cuda | cuda:1 | mps
    precision: str = "auto"  # auto: bf16 autocast on a GPU that has it, fp16 on older GPUs, fp32 on CPU
    compile: bool = False  # torch.compile the model (minutes to start; faster steps on a GPU)
    distributed: str = "auto"  # auto: DDP when launched by torchrun | none | ddp | fsdp
    seed: int = 1337
    # evaluation, logging, checkpoints
    eval_interval: int = 250  # evaluate on val (and save last/, best/) every this many steps
    eval_iters: int = 20  # val batches per evaluation
    log_interval: int = 1  # a log line every this many steps
    progress: bool = True  # a progress bar with ETA (log lines then print above it)
    save_best: bool = True  # keep best/ (lowest val loss) beside last/
    # keep the model as it is at step 0 and every keep_every steps, in steps/step_000250/ (weights and
    # tokenizer, no optimizer state: one model's size each, e.g. 3.2 MB for the demo's 0.8M-parameter
    # GPT): the Explorer's Training runs panel traces a prompt through each, to watch the model learn.
    # 0 = off. For small models: 100 kept copies of SmolLM2-135M would be 54 GB.
    keep_every: int = 0
    nan_policy: str = "stop"  # a non-finite loss: stop with an error naming the step | skip the batch
    # what is learned from data. lm: next-token loss on every token of a prepared token dataset.
    # chat: fine-tuning (lucidlm.train.instruct.finetune) on a .jsonl of {"messages": [...]} chats,
    # loss on the assistant's replies only; needs init_from. auto: chat when data ends in .jsonl, else lm
    task: str = "auto"
    # fine-tuning: a [lora] table (rank, alpha, targets, dropout) trains LoRA adapters instead of
    # every weight (lucidlm.train.instruct.finetune, with either task)
    lora: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        hints = _field_types()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _is_instance(value, hints[f.name]):
                raise ValueError(f"TrainConfig.{f.name} must be {_type_name(hints[f.name])}, got {value!r}")

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

        for name in ("batch_size", "block_size", "grad_accum", "max_steps", "eval_interval", "eval_iters",
                     "log_interval"):
            check(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("stop_at_step", "warmup_steps", "keep_every"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            check(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0, got {value}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(math.isfinite(self.muon_lr) and self.muon_lr > 0, f"muon_lr must be > 0, got {self.muon_lr}")
        check(0 <= self.muon_momentum < 1, f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        check(self.min_lr <= self.lr, f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"beta1, beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        check(0 < self.decay_fraction <= 1, f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        for name, choices in (("schedule", SCHEDULES), ("precision", PRECISIONS), ("distributed", DISTRIBUTED),
                              ("nan_policy", NAN_POLICIES), ("optimizer", OPTIMIZERS), ("fused", SWITCHES),
                              ("task", TASKS)):
            check(getattr(self, name) in choices, f"{name}={getattr(self, name)!r}; choose from {choices}")
        check(bool(self.out_dir), "out_dir must not be empty")
        check(bool(self.init_from), "init_from must be 'scratch' or a model name/path")
        if isinstance(self.model, dict):
            from lucidlm.models.config import ModelConfig

            valid = {f.name for f in dataclasses.fields(ModelConfig)} | {"preset"}
            unknown = sorted(set(self.model) - valid)
            check(not unknown, f"unknown model key(s) {unknown}; valid keys: {sorted(valid)}")

    # ------------------------------------------------------------------------------------------
    def model_config(self, vocab_size: int | None = None):
        """The ModelConfig this run trains from scratch: the preset, then the [model] fields, then
        the dataset's vocab_size unless the [model] table sets one."""
        from lucidlm.models.config import ModelConfig, get_preset

        table = {"preset": self.model} if isinstance(self.model, str) else dict(self.model)
        preset = table.pop("preset", None)
        base = get_preset(preset).to_dict() if preset else ModelConfig().to_dict()
        if preset:
            base["name"] = ""  # a preset's shape, not its published weights
        if vocab_size is not None and "vocab_size" not in table:
            base["vocab_size"] = vocab_size
        base.update(table)
        return ModelConfig.from_dict(base)

    @property
    def resolved_task(self) -> str:
        """"lm" or "chat": ``task``, with "auto" read from the data path's suffix (.jsonl -> chat).
        Resolved on each read, so ``replace(data=...)`` of an "auto" config follows the new path."""
        if self.task != "auto":
            return self.task
        return "chat" if self.data.endswith(".jsonl") else "lm"

    @property
    def finetunes(self) -> bool:
        """True when the run goes through ``lucidlm.train.instruct.finetune``: chat data needs the
        loaded model's tokenizer and template, and LoRA needs adapters put into the model."""
        return self.resolved_task == "chat" or bool(self.lora)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "train config") -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a table of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        hints = _field_types()
        data = {k: float(v) if hints[k] is float and type(v) is int else v for k, v in data.items()}  # 1 -> 1.0
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike | None, overrides: list[str] = ()) -> TrainConfig:
        """Read a TOML file (or start from the defaults when ``path`` is None) and apply
        ``--key=value`` overrides (``--model.n_layer=4`` for a ModelConfig field)."""
        data: dict = {}
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"no training config at {path}")
            tomllib = _tomllib()
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path} is not valid TOML: {exc}") from None
        data = apply_overrides(data, overrides)
        return cls.from_dict(data, source=str(path) if path else "train config")


# ----------------------------------------------------------------------------------------------
# --key=value overrides, parsed by the type of the field they set


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["--lr=3e-4", "--model.n_layer=4"]`` applied to a config dict (returns a new dict).
    A value is parsed by its field's type; a bare ``--compile`` means true."""
    from lucidlm.models.config import ModelConfig

    data = dict(data)
    hints = _field_types()
    model_hints = typing.get_type_hints(ModelConfig)
    for item in overrides:
        if not item.startswith("--"):
            raise ValueError(f"override {item!r} must look like --key=value")
        key, sep, text = item[2:].partition("=")
        key = key.replace("-", "_")
        if key.startswith("model."):
            name = key[len("model."):]
            if name == "preset":
                kind: object = str
            elif name in model_hints:
                kind = model_hints[name]
            else:
                raise ValueError(f"unknown model key {name!r} in {item!r}; valid keys: "
                                 f"{sorted(set(model_hints) | {'preset'})}")
            model = data.get("model", TrainConfig.model)
            model = {"preset": model} if isinstance(model, str) else dict(model)
            model[name] = _parse(text if sep else "true", kind, key)
            data["model"] = model
            continue
        if key not in hints:
            raise ValueError(f"unknown key {key!r} in {item!r}; valid keys: {sorted(hints)}")
        data[key] = _parse(text if sep else "true", hints[key], key)
    return data


def _parse(text: str, kind, key: str):
    """``text`` as a value of type ``kind`` (int, float, bool, str, an Optional or a union with dict)."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union \
        else (kind,)
    if type(None) in options and text.lower() in ("none", "null"):
        return None
    for option in options:
        if option is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
        elif option in (int, float):
            try:
                return option(text)
            except ValueError:
                pass
        elif option is str:
            return text
    raise ValueError(f"--{key}: expected {_type_name(kind)}, got {text!r}")


# ----------------------------------------------------------------------------------------------
# type checks for values read from TOML / JSON


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def _is_instance(value, kind) -> bool:
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    for option in options:
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option not in (int, float) and isinstance(value, option):
            return True
    return False


def _type_name(kind) -> str:
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union \
        else (kind,)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table",
             type(None): "none"}
    return " or ".join(names.get(o, getattr(o, "__name__", str(o))) for o in options)


def _tomllib():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib

