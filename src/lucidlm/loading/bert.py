"""Hugging Face BERT checkpoints (``BertModel`` safetensors + ``config.json``) <-> lucidlm ``Encoder``.

The correspondence of configs and weight names is the table in ``loading/bert_rules.py``, read
both ways by ``loading/hf.py``; this file loads (``load_bert``) and exports (``save_bert``).
Export writes a plain ``BertModel`` (no pooler: transformers initialises one and warns, which
does not touch ``last_hidden_state``). Weights are read from safetensors only (never a pickle).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lucidlm.files.jsonfile import read_json
from lucidlm.loading.bert_rules import IGNORED_PREFIXES, config_from_hf, config_to_hf, rules
from lucidlm.loading.checkpoint import load_state_checked, read_safetensors
from lucidlm.loading.hf import HF_FAMILIES, read_hf_weights, save_hf, state_from_hf
from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import Encoder, build_model

__all__ = ["IGNORED_PREFIXES", "config_from_hf", "config_to_hf", "load_bert", "rules", "save_bert"]


def load_bert(
    path: str | os.PathLike,
    *,
    config: ModelConfig | dict | str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> Encoder:
    """A Hugging Face BERT checkpoint as an ``Encoder`` in eval mode.

    ``path``: a directory with ``config.json`` and ``model.safetensors`` (what ``save_pretrained``
    writes), or the ``.safetensors`` file itself, with ``config`` then giving the config: a
    ``ModelConfig``, an HF config dict, or the path of its ``config.json`` (default: the
    ``config.json`` beside the weights).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no BERT checkpoint at {path}")
    weights = path / "model.safetensors" if path.is_dir() else path
    if config is None:
        config = weights.parent / "config.json"
    if not isinstance(config, ModelConfig):
        if not isinstance(config, dict):
            config = read_json(config, "BERT config.json")
            if not isinstance(config, dict):
                raise ValueError(f"the BERT config beside {weights} is not a JSON object")
        config = config_from_hf(config, name=weights.parent.name)
    model = build_model(config, init=False)  # placeholders: every weight is loaded next
    # the shared readers: sharded checkpoints, and a clear refusal of pickled pytorch_model.bin
    hf_tensors = read_hf_weights(path) if path.is_dir() else read_safetensors(path)[0]
    state = state_from_hf(hf_tensors, config, HF_FAMILIES["bert"], source=str(path))
    load_state_checked(model, state, source=str(path))
    return model.to(device).eval() if device is not None else model.eval()


def save_bert(model: Encoder, directory: str | os.PathLike, tokenizer=None, *, overwrite: bool = True) -> Path:
    """Write an ``Encoder`` as a Hugging Face BERT directory (config.json + model.safetensors
    [+ tokenizer.json]) that ``transformers.BertModel.from_pretrained(directory)`` opens."""
    cfg = getattr(getattr(model, "_orig_mod", model), "cfg", None)
    if cfg is None or cfg.arch != "encoder":
        raise ValueError("save_bert writes encoders (arch='encoder'); use save_hf for GPT-2 and Llama")
    return save_hf(model, directory, tokenizer, overwrite=overwrite)
