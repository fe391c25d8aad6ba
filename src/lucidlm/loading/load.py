"""``load_model(name_or_path) -> (model, tokenizer)``: one entry point for every kind of model.

What ``name_or_path`` may be, tried in this order:
1. a model asset (``smollm2-135m-instruct``, ``all-minilm-l6-v2``): pretrained weights, fetched
   and cached;
2. a preset (``gpt2``, ``smollm2-135m``, ...): the architecture, randomly initialised (to train);
3. a lucidlm checkpoint directory (config.json with a ModelConfig + model.safetensors);
4. a Hugging Face directory (config.json with a "model_type" + model.safetensors): GPT-2 and
   Llama (``lucidlm.loading.hf``), BERT (``lucidlm.loading.bert``);
5. a ``.gguf`` file (llama.cpp; Llama-family models).
Pretrained models are returned in eval mode, in float32 unless ``dtype`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lucidlm.models.config import PRESETS

# Asset name -> how its weights are stored: one GGUF file, or a Hugging Face directory (all the
# asset's files, which the cache keeps in one folder).
MODEL_ASSETS: dict[str, str] = {
    "smollm2-135m-instruct": "gguf",
    "all-minilm-l6-v2": "hf",
}
# Preset -> the tokenizer (a name ``load_tokenizer`` knows) that its vocabulary belongs to.
PRESET_TOKENIZERS: dict[str, str] = {
    "gpt2": "gpt2",
    "gpt2-medium": "gpt2",
    "smollm2-135m": "smollm2-135m-instruct",
    "all-minilm-l6-v2": "all-minilm-l6-v2",
}


def pretrained_models() -> list[str]:
    """The names that load real, trained weights (the model assets); every preset is random."""
    return list(MODEL_ASSETS)


def is_random_preset(name_or_path: str | os.PathLike) -> bool:
    """True when ``load_model(name_or_path)`` would build an architecture with random weights."""
    name = str(name_or_path)
    return name in PRESETS and name not in MODEL_ASSETS


def check_pretrained(name_or_path: str | os.PathLike, *, random_init: bool = False) -> None:
    """Refuse an architecture preset where a user expects a trained model (generate, chat, serve,
    inspect): its weights are random, so its text is noise. ``random_init=True`` allows it.

    >>> check_pretrained("smollm2-135m-instruct")
    >>> check_pretrained("gpt2", random_init=True)
    """
    if random_init or not is_random_preset(name_or_path):
        return
    name = str(name_or_path)
    hint = {"gpt2": " GPT-2's trained weights are not bundled; a Hugging Face GPT-2 directory "
                    "(config.json + model.safetensors) loads with --model DIR.",
            "smollm2-135m": " The trained SmolLM2 is --model smollm2-135m-instruct."}.get(name, "")
    raise ValueError(
        f"{name!r} is an architecture preset: its weights are random, so it would produce noise.{hint} "
        f"Pretrained models: {', '.join(pretrained_models())} (see `lucidlm models`), or a checkpoint "
        "directory, Hugging Face directory or .gguf file. Pass --random-init to run the untrained "
        "architecture anyway."
    )


def load_for_generation(name_or_path: str | os.PathLike, *, random_init: bool = False,
                        fast_decode: bool = True, keep_quantized: bool = True) -> tuple[nn.Module, object]:
    """(model, tokenizer) ready to generate text, as ``generate``, ``chat`` and ``serve`` need it:
    not a random preset (unless ``random_init``), with a tokenizer, decoder-only, in eval mode,
    one-token steps through the C kernels unless ``fast_decode=False``, a GGUF file's quantised
    matrices kept in their blocks unless ``keep_quantized=False`` (see ``load_model``)."""
    check_pretrained(name_or_path, random_init=random_init)
    model, tokenizer = load_model(name_or_path, keep_quantized=keep_quantized)
    if tokenizer is None:
        raise ValueError(f"{name_or_path} has no tokenizer to turn text into ids; save the checkpoint with one")
    if getattr(model.cfg, "arch", None) != "decoder":
        raise ValueError(f"{name_or_path} is not a decoder-only language model (arch={model.cfg.arch!r}), so it "
                         f"cannot generate text; try {pretrained_models()[0]} (see `lucidlm models`)")
    model.eval()
    model.use_fast_decode(fast_decode)  # the C one-token decode path (models/decode_fast.py)
    return model, tokenizer


def load_model(
    name_or_path: str | os.PathLike,
    *,
    tokenizer: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    lora: str = "merge",
    keep_quantized: bool = False,
) -> tuple[nn.Module, object]:
    """(model, tokenizer) for a model asset, a preset, a checkpoint or HF directory, or a GGUF file.

    ``tokenizer=False`` skips the tokenizer (returned as None). A directory without a tokenizer
    file also gives None. ``lora="off"`` loads a LoRA fine-tune's checkpoint without its
    adapters: the base model it was fine-tuned from ("merge", the default, applies them).
    ``keep_quantized=True``: a GGUF file's Q8_0 / Q4_0 / Q4_1 matrices stay in their blocks
    (nn/quantized.py: ~5x fewer bytes, faster one-token steps, the same numbers up to the order of
    float32 additions); other sources hold float weights, and load as usual.
    """
    if lora != "merge":
        from lucidlm.loading.checkpoint import is_checkpoint_dir, load_checkpoint

        path = Path(name_or_path).expanduser()
        if not is_checkpoint_dir(path):
            raise ValueError(f"lora={lora!r} needs a lucidlm checkpoint directory written by a LoRA fine-tune; "
                             f"{name_or_path} is not one")
        model, tok = load_checkpoint(path, tokenizer=tokenizer, lora=lora)
    else:
        model, tok = _load(name_or_path, tokenizer, keep_quantized)
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model, tok


def _load(name_or_path: str | os.PathLike, want_tokenizer: bool, keep_quantized: bool = False) -> tuple[nn.Module, object]:
    from lucidlm.tokenizers import load_tokenizer

    name = str(name_or_path)
    if name in MODEL_ASSETS:
        from lucidlm.assets import asset_path, get_asset

        if MODEL_ASSETS[name] == "gguf":
            return _load_path(asset_path(name), want_tokenizer, keep_quantized)
        folder = {asset_path(name, key).parent for key in get_asset(name).keys}.pop()
        return _load_path(folder, want_tokenizer)
    if name in PRESETS:
        from lucidlm.models.transformer import build_model

        model = build_model(PRESETS[name])
        tok_name = PRESET_TOKENIZERS.get(name)
        return model, load_tokenizer(tok_name) if want_tokenizer and tok_name else None
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _load_path(path, want_tokenizer, keep_quantized)
    raise ValueError(
        f"unknown model {name!r}: not a model asset ({', '.join(MODEL_ASSETS)}), a preset "
        f"({', '.join(PRESETS)}), nor an existing path (a lucidlm checkpoint or Hugging Face directory, "
        "or a .gguf file)"
    )


def _load_path(path: Path, want_tokenizer: bool, keep_quantized: bool = False) -> tuple[nn.Module, object]:
    from lucidlm.loading.checkpoint import is_checkpoint_dir, load_checkpoint, load_tokenizer_from_dir

    if path.is_file() and path.suffix == ".safetensors":
        path = path.parent  # the weights file of a directory: load the directory
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} has no config.json: not a lucidlm checkpoint or Hugging Face model directory")
        if is_checkpoint_dir(path):
            return load_checkpoint(path, tokenizer=want_tokenizer)
        from lucidlm.loading.hf import load_hf, read_hf_config

        if read_hf_config(path).get("model_type") == "bert":
            from lucidlm.loading.bert import load_bert

            model = load_bert(path)
        else:
            model = load_hf(path)
        return model, load_tokenizer_from_dir(path) if want_tokenizer else None
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        from lucidlm.loading.gguf import load_gguf
        from lucidlm.tokenizers import load_tokenizer

        return load_gguf(path, keep_quantized=keep_quantized), load_tokenizer(path) if want_tokenizer else None
    raise ValueError(f"{path} is not a model lucidlm can load: expected a directory with config.json and "
                     "model.safetensors, or a .gguf file")
