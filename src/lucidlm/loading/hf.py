"""Hugging Face checkpoints (config.json + model.safetensors) for GPT-2, Llama and BERT, both ways.

A family is a config translation plus a table of name rules (``loading/names.py``). Each rule
says which HF tensors make one lucidlm tensor:

    lucidlm                      Hugging Face (per layer i)                         how
    layers.i.attn.qkv.weight     h.i.attn.c_attn.weight                  (GPT-2)    transpose
    layers.i.attn.qkv.weight     layers.i.self_attn.{q,k,v}_proj.weight  (Llama)    stack rows
    layers.i.mlp.gate_up.weight  layers.i.mlp.{gate,up}_proj.weight      (Llama)    stack rows
    layers.i.attn.qkv.weight     encoder.layer.i.attention.self.{query,key,value}.weight  (BERT)

GPT-2's original code uses ``Conv1D`` layers, which keep weights as (in, out), the transpose of
``nn.Linear``'s (out, in): hence the transposes. lucidlm fuses q/k/v (and gate/up) into one
matrix so one matmul computes them; stacking along the output dimension is exactly that fusion,
and splitting it back undoes it on export. Everything else is a rename. BERT's table and config
translation live in ``loading/bert_rules.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lucidlm.loading import bert_rules as bert
from lucidlm.loading.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    atomic_dir,
    load_state_checked,
    model_state,
    read_safetensors,
    save_tokenizer,
    write_safetensors,
)
from lucidlm.loading.names import Rule, expand, gather, scatter
from lucidlm.models.config import ModelConfig

# Tensors HF files may hold that are not weights: GPT-2's causal-mask buffers, old rotary caches.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


# ----------------------------------------------------------------------------------------------
# GPT-2


def _gpt2_rules(cfg: ModelConfig) -> tuple[list[Rule], list[Rule]]:
    """(global rules, per-layer rules); HF names without the ``transformer.`` prefix."""
    top = [Rule("embed.tokens.weight", ("wte.weight",)), Rule("embed.positions.weight", ("wpe.weight",)),
           Rule("norm.weight", ("ln_f.weight",)), Rule("norm.bias", ("ln_f.bias",))]
    if not cfg.tie_embeddings:
        top.append(Rule("lm_head.weight", ("/lm_head.weight",)))  # "/": outside the prefix
    layer = []
    for ours, theirs in (("norm_attn", "ln_1"), ("norm_mlp", "ln_2")):
        layer += [Rule(f"layers.{{i}}.{ours}.{p}", (f"h.{{i}}.{theirs}.{p}",)) for p in ("weight", "bias")]
    for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                         ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
        layer.append(Rule(f"layers.{{i}}.{ours}.weight", (f"h.{{i}}.{theirs}.weight",), transpose=True))
        layer.append(Rule(f"layers.{{i}}.{ours}.bias", (f"h.{{i}}.{theirs}.bias",)))
    return top, layer


_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def gpt2_config_from_hf(hf: dict) -> ModelConfig:
    _refuse(hf, "scale_attn_by_inverse_layer_idx", False, "gpt2")
    _refuse(hf, "scale_attn_weights", True, "gpt2")
    _refuse(hf, "add_cross_attention", False, "gpt2")
    act = hf.get("activation_function", "gelu_new")
    if act not in _GPT2_ACTIVATIONS:
        raise ValueError(f"GPT-2 activation_function={act!r} is not supported; lucidlm has {sorted(_GPT2_ACTIVATIONS)}")
    return ModelConfig(
        name=hf.get("_name_or_path") or "gpt2", vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
        n_head=hf["n_head"], n_embd=hf["n_embd"], intermediate_size=hf.get("n_inner"),
        max_seq_len=hf["n_positions"], positions="learned", norm="layernorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5), mlp="mlp", activation=_GPT2_ACTIVATIONS[act], bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), bos_token_id=_one_id(hf.get("bos_token_id")),
        eos_token_id=_one_id(hf.get("eos_token_id")), pad_token_id=_one_id(hf.get("pad_token_id")),
    )


def gpt2_config_to_hf(cfg: ModelConfig) -> dict:
    _require(cfg, "gpt2", positions="learned", norm="layernorm", norm_placement="pre", mlp="mlp", bias=True,
             norm_bias=True, final_norm=True, embed_norm=False, type_vocab_size=0, embedding_scale=False)
    if cfg.kv_heads != cfg.n_head:
        raise ValueError("GPT-2 has no grouped-query attention (n_kv_head must equal n_head)")
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}.get(cfg.activation)
    if act is None:
        raise ValueError(f"GPT-2 export: activation {cfg.activation!r} has no HF GPT-2 equivalent")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_seq_len, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
        "n_inner": cfg.intermediate_size, "activation_function": act, "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "dtype": "float32",
    }


# ----------------------------------------------------------------------------------------------
# Llama (and SmolLM2, which is a Llama)


def _llama_rules(cfg: ModelConfig) -> tuple[list[Rule], list[Rule]]:
    """(global rules, per-layer rules); HF names without the ``model.`` prefix."""
    top = [Rule("embed.tokens.weight", ("embed_tokens.weight",)), Rule("norm.weight", ("norm.weight",))]
    if not cfg.tie_embeddings:
        top.append(Rule("lm_head.weight", ("/lm_head.weight",)))
    kinds = ("weight", "bias") if cfg.bias else ("weight",)
    layer = [Rule("layers.{i}.norm_attn.weight", ("layers.{i}.input_layernorm.weight",)),
             Rule("layers.{i}.norm_mlp.weight", ("layers.{i}.post_attention_layernorm.weight",))]
    for p in kinds:
        layer += [
            Rule(f"layers.{{i}}.attn.qkv.{p}", tuple(f"layers.{{i}}.self_attn.{x}_proj.{p}" for x in "qkv")),
            Rule(f"layers.{{i}}.attn.proj.{p}", (f"layers.{{i}}.self_attn.o_proj.{p}",)),
            Rule(f"layers.{{i}}.mlp.gate_up.{p}", tuple(f"layers.{{i}}.mlp.{x}_proj.{p}" for x in ("gate", "up"))),
            Rule(f"layers.{{i}}.mlp.proj.{p}", (f"layers.{{i}}.mlp.down_proj.{p}",)),
        ]
    return top, layer


def llama_config_from_hf(hf: dict) -> ModelConfig:
    n_embd, n_head = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or n_embd // n_head
    if head_dim * n_head != n_embd:
        raise ValueError(f"Llama head_dim={head_dim} * num_attention_heads={n_head} != hidden_size={n_embd}: "
                         "lucidlm needs head_dim = hidden_size / num_attention_heads")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"Llama hidden_act={hf['hidden_act']!r} is not supported (lucidlm's SwiGLU uses silu)")
    if bool(hf.get("attention_bias", False)) != bool(hf.get("mlp_bias", False)):
        raise ValueError("Llama with attention_bias != mlp_bias is not supported (lucidlm has one `bias` switch)")
    # transformers >= 5 keeps theta (and any scaling) in rope_parameters; older files use the top level.
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"Llama RoPE scaling {rope_type!r} is not supported (only plain RoPE)")
    return ModelConfig(
        name=hf.get("_name_or_path") or "llama", vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"],
        n_head=n_head, n_kv_head=hf.get("num_key_value_heads") or n_head, n_embd=n_embd,
        intermediate_size=hf["intermediate_size"], max_seq_len=hf.get("max_position_embeddings", 2048),
        positions="rope", rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), norm_bias=False, mlp="swiglu", activation="silu",
        bias=bool(hf.get("attention_bias", False)), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bos_token_id=_one_id(hf.get("bos_token_id")), eos_token_id=_one_id(hf.get("eos_token_id")),
        pad_token_id=_one_id(hf.get("pad_token_id")),
    )


def llama_config_to_hf(cfg: ModelConfig) -> dict:
    _require(cfg, "llama", positions="rope", norm="rmsnorm", norm_placement="pre", mlp="swiglu",
             activation="silu", final_norm=True, embed_norm=False, type_vocab_size=0, embedding_scale=False)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.hidden_size, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_size,
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
        "dtype": "float32",
    }


# ----------------------------------------------------------------------------------------------
# the families, and the two directions


@dataclass(frozen=True)
class Family:
    model_type: str  # HF config.json "model_type"
    prefix: str  # HF prefix of the transformer body in a model with a head ("transformer." in GPT2LMHeadModel)
    config_from_hf: Callable[[dict], ModelConfig]
    config_to_hf: Callable[[ModelConfig], dict]
    rules: Callable[[ModelConfig], tuple[list[Rule], list[Rule]]]  # (global rules, per-layer rules)
    export_prefix: str  # the prefix save_hf writes: that of the class named in config_to_hf's "architectures"
    ignored: tuple[str, ...] = ()  # HF names (after the prefix) that start so are not lucidlm weights


# model_type -> Family. Another family plugs in by adding an entry.
HF_FAMILIES: dict[str, Family] = {
    "gpt2": Family("gpt2", "transformer.", gpt2_config_from_hf, gpt2_config_to_hf, _gpt2_rules, "transformer."),
    "llama": Family("llama", "model.", llama_config_from_hf, llama_config_to_hf, _llama_rules, "model."),
    # BertModel files have no prefix, task models (BertForMaskedLM, ...) put the encoder under "bert.";
    # the pooler and the task heads are not part of lucidlm's Encoder and are skipped.
    "bert": Family("bert", "bert.", bert.config_from_hf, bert.config_to_hf, bert.rules, "",
                   ignored=bert.IGNORED_PREFIXES),
}


def family_for_hf(hf_config: dict) -> Family:
    model_type = hf_config.get("model_type")
    if model_type not in HF_FAMILIES:
        raise ValueError(f"Hugging Face model_type {model_type!r} is not supported here; "
                         f"lucidlm loads {', '.join(HF_FAMILIES)}")
    return HF_FAMILIES[model_type]


def family_for_config(cfg: ModelConfig) -> Family:
    """GPT-2, Llama or BERT, recognised by the config's shape (learned positions vs RoPE; encoder)."""
    if cfg.arch == "decoder" and cfg.positions == "learned":
        return HF_FAMILIES["gpt2"]
    if cfg.arch == "decoder" and cfg.positions == "rope":
        return HF_FAMILIES["llama"]
    if cfg.arch == "encoder":
        return HF_FAMILIES["bert"]
    raise ValueError(f"no Hugging Face export for arch={cfg.arch!r}, positions={cfg.positions!r}; "
                     "lucidlm exports GPT-2 (learned positions) and Llama (RoPE) decoders and BERT encoders")


def state_from_hf(hf_state: dict[str, torch.Tensor], cfg: ModelConfig, family: Family,
                  source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """lucidlm state dict from HF tensors. Missing or left-over HF tensors raise a ValueError
    naming them (the shapes are checked by ``load_state_checked``)."""
    prefix = family.prefix if any(k.startswith(family.prefix) for k in hf_state) else ""
    state, missing, used = gather(hf_state, expand(*family.rules(cfg), cfg.n_layer, prefix), source)
    if cfg.tie_embeddings:
        used.add("lm_head.weight")  # a tied head may be stored too; it is the embedding
    left = [k for k in hf_state if k not in used and not k.endswith(IGNORED_SUFFIXES)
            and not k.removeprefix(prefix).startswith(family.ignored)]
    if missing or left:
        msg = [f"missing tensors {missing[:8]}" if missing else "", f"unexpected tensors {left[:8]}" if left else ""]
        raise ValueError(f"{source} does not match its {family.model_type} config: " + "; ".join(m for m in msg if m))
    return state


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig, family: Family) -> dict[str, torch.Tensor]:
    """HF tensors (named as ``family.export_prefix`` says) from a lucidlm state dict: the rules backwards."""
    return scatter(state, expand(*family.rules(cfg), cfg.n_layer, family.export_prefix), cfg)


# ----------------------------------------------------------------------------------------------
# directories


def read_hf_config(path: str | os.PathLike) -> dict:
    from lucidlm.files.jsonfile import read_json

    data = read_json(Path(path) / CONFIG_FILE, "Hugging Face config")
    if not isinstance(data, dict):
        raise ValueError(f"{Path(path) / CONFIG_FILE} does not hold a JSON object")
    return data


def read_hf_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """model.safetensors, or the shards listed in model.safetensors.index.json. PyTorch ``.bin``
    files are pickles, which can run code when loaded: they are refused, not opened."""
    path = Path(path)
    if (path / WEIGHTS_FILE).is_file():
        return read_safetensors(path / WEIGHTS_FILE)[0]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(path / shard)[0])
        return tensors
    if (path / "pytorch_model.bin").is_file():
        raise ValueError(f"{path} holds pytorch_model.bin (a pickle); lucidlm loads safetensors only. Convert it "
                         "once with transformers: AutoModel.from_pretrained(dir).save_pretrained(dir)")
    raise FileNotFoundError(f"{path} has no {WEIGHTS_FILE}")


def load_hf(path: str | os.PathLike) -> nn.Module:
    """A lucidlm model (eval mode) from a Hugging Face GPT-2, Llama or BERT directory."""
    from lucidlm.models.transformer import build_model

    path = Path(path)
    hf_config = read_hf_config(path)
    family = family_for_hf(hf_config)
    cfg = family.config_from_hf(hf_config)
    cfg = cfg.replace(name=path.name, extra={"source": str(path), "format": "huggingface"})
    state = state_from_hf(read_hf_weights(path), cfg, family, source=str(path))
    model = build_model(cfg, init=False)  # placeholders: every weight is loaded next
    load_state_checked(model, state, source=str(path))
    return model.eval()


def save_hf(model: nn.Module, path: str | os.PathLike, tokenizer=None, *, overwrite: bool = True) -> Path:
    """Write ``model`` as a Hugging Face directory (config.json + model.safetensors [+ tokenizer])
    that ``transformers`` opens with ``AutoModelForCausalLM.from_pretrained(path)`` (a decoder) or
    ``AutoModel.from_pretrained(path)`` (a BERT encoder, as a ``BertModel``)."""
    model = getattr(model, "_orig_mod", model)
    cfg = model.cfg
    family = family_for_config(cfg)
    hf_config = family.config_to_hf(cfg)
    tensors = state_to_hf(model_state(model), cfg, family)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        write_safetensors(tensors, tmp / WEIGHTS_FILE, {"format": "pt"})
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp, model_max_length=cfg.max_seq_len)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# helpers


def _one_id(value) -> int | None:
    """HF allows a list of eos ids; ModelConfig keeps the first."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _refuse(hf: dict, key: str, supported, family: str) -> None:
    if key in hf and hf[key] != supported:
        raise ValueError(f"{family} with {key}={hf[key]!r} is not supported (lucidlm implements {key}={supported!r})")


def _require(cfg: ModelConfig, family: str, **fields) -> None:
    for key, value in fields.items():
        if getattr(cfg, key) != value:
            raise ValueError(f"cannot export as Hugging Face {family}: it needs {key}={value!r}, "
                             f"the model has {getattr(cfg, key)!r}")
