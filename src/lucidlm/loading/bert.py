"""Hugging Face BERT checkpoints (``BertModel`` safetensors + ``config.json``) -> lucidlm ``Encoder``.

BERT is a post-norm encoder (Devlin et al. 2018): learned positions and token types added to the
token embeddings, a LayerNorm on that sum, then blocks of  x = norm(x + attn(x)); x = norm(x + mlp(x)).
Nothing here is BERT-specific code: the config becomes a ``ModelConfig`` and the tensors are renamed.

Names, Hugging Face -> lucidlm (L = layer index):

    embeddings.word_embeddings                  embed.tokens
    embeddings.position_embeddings              embed.positions
    embeddings.token_type_embeddings            embed.token_types
    embeddings.LayerNorm                        embed.norm
    encoder.layer.L.attention.self.{query,key,value}   layers.L.attn.qkv   (stacked q; k; v on dim 0)
    encoder.layer.L.attention.output.dense      layers.L.attn.proj
    encoder.layer.L.attention.output.LayerNorm  layers.L.norm_attn
    encoder.layer.L.intermediate.dense          layers.L.mlp.fc
    encoder.layer.L.output.dense                layers.L.mlp.proj
    encoder.layer.L.output.LayerNorm            layers.L.norm_mlp

Hugging Face ``nn.Linear`` weights are (out, in) like ours, so nothing is transposed. Task heads
(``pooler.*``, ``cls.*``, ``classifier.*``, ...) and the ``position_ids`` buffer are not part of the
encoder and are skipped; a head model's ``bert.`` prefix is stripped. Weights are read from
safetensors only (never a pickle).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lucidlm.loading.checkpoint import read_safetensors
from lucidlm.loading.hf import read_hf_weights
from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import Encoder

# HF hidden_act -> our activation name
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                "silu": "silu", "swish": "silu"}
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "embed.tokens.weight",
    "embeddings.position_embeddings.weight": "embed.positions.weight",
    "embeddings.token_type_embeddings.weight": "embed.token_types.weight",
    "embeddings.LayerNorm.weight": "embed.norm.weight",
    "embeddings.LayerNorm.bias": "embed.norm.bias",
}
_LAYER = {  # inside encoder.layer.L. -> inside layers.L.  (q/k/v are fused separately)
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "norm_attn",
    "intermediate.dense": "mlp.fc",
    "output.dense": "mlp.proj",
    "output.LayerNorm": "norm_mlp",
}
_QKV = ("query", "key", "value")  # the order our fused qkv stacks them in


def config_from_hf(hf: dict, name: str = "") -> ModelConfig:
    """A Hugging Face BERT ``config.json`` (as a dict) -> ``ModelConfig``; unsupported variants raise."""
    if hf.get("model_type", "bert") != "bert":
        raise ValueError(f"config.json has model_type={hf.get('model_type')!r}; this loader reads 'bert'")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"unsupported BERT hidden_act {act!r}; supported: {sorted(_ACTIVATIONS)}")
    kind = hf.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(f"unsupported position_embedding_type {kind!r}: only 'absolute' (learned) positions")
    try:
        return ModelConfig(
            name=name, arch="encoder", vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"],
            n_head=hf["num_attention_heads"], n_embd=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"], max_seq_len=hf["max_position_embeddings"],
            positions="learned", norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12),
            norm_placement="post", final_norm=False, embed_norm=True, mlp="mlp", activation=_ACTIVATIONS[act],
            bias=True, type_vocab_size=hf.get("type_vocab_size", 2), tie_embeddings=False,
            pad_token_id=hf.get("pad_token_id", 0), extra={"source": "huggingface-bert"},
        )
    except KeyError as exc:
        raise ValueError(f"BERT config.json lacks the key {exc.args[0]!r}") from None


def convert_state_dict(hf_tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF BERT tensor names -> our ``Encoder``'s state dict (q/k/v fused). Missing tensors raise,
    naming the HF tensor; shapes are checked when the result is loaded (``load_state_dict``)."""
    prefixed = any(k.startswith("bert.") for k in hf_tensors)
    src = {k.removeprefix("bert."): v for k, v in hf_tensors.items() if k.startswith("bert.") or not prefixed}

    def take(key: str) -> torch.Tensor:
        if key not in src:
            raise ValueError(f"checkpoint has no tensor {('bert.' if prefixed else '') + key!r} "
                             f"(needed for a {cfg.n_layer}-layer BERT)")
        return src[key]

    out = {ours: take(theirs) for theirs, ours in _EMBEDDINGS.items()
           if cfg.type_vocab_size or "token_type" not in theirs}
    for i in range(cfg.n_layer):
        hf, us = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            # (3C, C) / (3C,): the rows of q, then k, then v, the split Attention.forward expects
            qkv = [take(f"{hf}attention.self.{p}.{part}") for p in _QKV]
            out[f"{us}attn.qkv.{part}"] = torch.cat(qkv, dim=0)
            for theirs, ours in _LAYER.items():
                out[f"{us}{ours}.{part}"] = take(f"{hf}{theirs}.{part}")
    layers = {k.split(".")[2] for k in src if k.startswith("encoder.layer.")}
    extra = sorted(layers - {str(i) for i in range(cfg.n_layer)})
    if extra:
        raise ValueError(f"checkpoint has encoder layers {extra} beyond the config's n_layer={cfg.n_layer}")
    return out


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
            from lucidlm.files.jsonfile import read_json

            config = read_json(config, "BERT config.json")
            if not isinstance(config, dict):
                raise ValueError(f"the BERT config beside {weights} is not a JSON object")
        config = config_from_hf(config, name=weights.parent.name)
    model = Encoder(config)
    # the shared readers: sharded checkpoints, and a clear refusal of pickled pytorch_model.bin
    hf_tensors = read_hf_weights(path) if path.is_dir() else read_safetensors(path)[0]
    state = convert_state_dict(hf_tensors, config)
    expected = model.state_dict()
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"tensor {key!r} has shape {tuple(tensor.shape)} but the config needs "
                             f"{tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval() if device is not None else model.eval()
