"""LoRA adapters saved alone: a few MB instead of the whole model (``lucidlm.nn.lora`` makes them).

A directory holds ``adapter.safetensors`` (the A and B tensors) and ``adapter_config.json``
(rank, alpha, targets, the base model they were trained on). ``load_adapters`` puts them back
into a model of the same shape, checking names and shapes first.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from lucidlm.files.jsonfile import write_text_atomic
from lucidlm.loading.checkpoint import read_safetensors, write_safetensors
from lucidlm.nn.lora import LoRAConfig, apply_lora, lora_modules, lora_state_dict

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter.safetensors", "adapter_config.json"
ADAPTER_FORMAT, ADAPTER_VERSION = "lucidlm-lora", 1



def save_adapters(model: nn.Module, path: str | os.PathLike, base_model: str | None = None) -> Path:
    """Write ``adapter.safetensors`` + ``adapter_config.json`` into directory ``path``.

    ``base_model``: what the adapters were trained on (an asset name or path), recorded so a reader
    knows which weights to load them into; defaults to the model config's name."""
    cfg = getattr(model, "lora_config", None)
    state = lora_state_dict(model)
    if cfg is None or not state:
        raise ValueError("the model has no LoRA adapters to save (apply_lora first)")
    if base_model is None:
        base_model = getattr(getattr(model, "cfg", None), "name", "") or ""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{ADAPTER_WEIGHTS}.tmp"
    write_safetensors(state, tmp, {"format": "pt", "lucidlm.format": ADAPTER_FORMAT})
    os.replace(tmp, path / ADAPTER_WEIGHTS)  # atomic: a reader never sees half a file
    meta = {"format": ADAPTER_FORMAT, "version": ADAPTER_VERSION, **asdict(cfg), "base_model": base_model,
            "modules": sorted(lora_modules(model))}
    meta["targets"] = list(cfg.targets)
    write_text_atomic(path / ADAPTER_CONFIG, json.dumps(meta, indent=2) + "\n")
    return path


def read_adapter_config(path: str | os.PathLike) -> tuple[LoRAConfig, dict]:
    """(LoRAConfig, the whole JSON) of an adapter directory."""
    path = Path(path)
    file = path / ADAPTER_CONFIG
    if not file.is_file():
        raise FileNotFoundError(f"no {ADAPTER_CONFIG} in {path}: not a directory written by save_adapters")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{file} is not a lucidlm LoRA adapter config (format != {ADAPTER_FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > ADAPTER_VERSION:
        raise ValueError(f"{file} has adapter format version {meta.get('version')!r}; this lucidlm reads up to "
                         f"{ADAPTER_VERSION}; upgrade lucidlm")
    try:
        cfg = LoRAConfig(meta["rank"], meta["alpha"], tuple(meta["targets"]), meta.get("dropout", 0.0))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{file} lacks a valid rank/alpha/targets entry ({exc})") from None
    return cfg, meta


def load_adapters(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load adapters written by ``save_adapters`` into ``model`` (in place). A model without
    adapters gets them (``apply_lora`` with the saved rank/alpha/targets) first."""
    path = Path(path)
    cfg, meta = read_adapter_config(path)
    tensors, _ = read_safetensors(path / ADAPTER_WEIGHTS)
    if not lora_modules(model):
        apply_lora(model, cfg.rank, cfg.alpha, cfg.targets, cfg.dropout)
    have = getattr(model, "lora_config", None)
    if have is not None and (have.rank, have.alpha, have.targets) != (cfg.rank, cfg.alpha, cfg.targets):
        raise ValueError(f"{path} holds adapters with rank={cfg.rank}, alpha={cfg.alpha:g}, targets={list(cfg.targets)}"
                         f" but the model has rank={have.rank}, alpha={have.alpha:g}, targets={list(have.targets)}")
    if any(m.merged for m in lora_modules(model).values()):
        raise ValueError("the model's adapters are merged; unmerge_lora(model) before loading others")
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        base = meta.get("base_model") or "an unrecorded model"
        details = "; ".join(
            part for part in (f"missing {missing[:4]}" if missing else "",
                              f"unexpected {unexpected[:4]}" if unexpected else "",
                              f"shape mismatch {wrong[:4]}" if wrong else "") if part)
        raise ValueError(f"adapters in {path} (trained on {base}) do not fit this model: {details}")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(tensors[k])
    return model
