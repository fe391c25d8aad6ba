"""Hugging Face BERT <-> lucidlm ``Encoder``: how the config and the weight names correspond.

BERT is a post-norm encoder (Devlin et al. 2018): learned positions and token types added to the
token embeddings, a LayerNorm on that sum, then blocks of  x = norm(x + attn(x)); x = norm(x + mlp(x)).
Nothing here is BERT-specific model code: the config becomes a ``ModelConfig`` and the tensors are
renamed by the table in ``rules``, which ``loading/hf.py`` reads both ways (BERT is one of its
``HF_FAMILIES``, beside GPT-2 and Llama). Loading and saving are in ``loading/bert.py``.

Hugging Face ``nn.Linear`` weights are (out, in) like ours, so nothing is transposed; q, k and v
are stacked into our fused qkv. Task heads (``pooler.*``, ``cls.*``, ``classifier.*``, ...) and the
``position_ids`` buffer are not part of the encoder and are skipped on load; a head model's
``bert.`` prefix is stripped.
"""

from __future__ import annotations

from lucidlm.loading.names import Rule
from lucidlm.models.config import ModelConfig

# HF hidden_act -> our activation name
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                "silu": "silu", "swish": "silu"}
_ACTIVATIONS_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}

# HF names (after the optional "bert." prefix) that are not part of lucidlm's Encoder
IGNORED_PREFIXES = ("embeddings.position_ids", "pooler.", "cls.", "classifier.", "qa_outputs.")


def rules(cfg: ModelConfig) -> tuple[list[Rule], list[Rule]]:
    """(global rules, per-layer rules): lucidlm name <- HF ``BertModel`` name(s)."""
    top = [Rule("embed.tokens.weight", ("embeddings.word_embeddings.weight",)),
           Rule("embed.positions.weight", ("embeddings.position_embeddings.weight",)),
           Rule("embed.norm.weight", ("embeddings.LayerNorm.weight",)),
           Rule("embed.norm.bias", ("embeddings.LayerNorm.bias",))]
    if cfg.type_vocab_size:  # segment embeddings (sentence A / B)
        top.append(Rule("embed.token_types.weight", ("embeddings.token_type_embeddings.weight",)))
    layer = []
    for p in ("weight", "bias"):
        layer += [
            # (3C, C) / (3C,): the rows of q, then k, then v, the split Attention.forward expects
            Rule(f"layers.{{i}}.attn.qkv.{p}",
                 tuple(f"encoder.layer.{{i}}.attention.self.{x}.{p}" for x in ("query", "key", "value"))),
            Rule(f"layers.{{i}}.attn.proj.{p}", (f"encoder.layer.{{i}}.attention.output.dense.{p}",)),
            Rule(f"layers.{{i}}.norm_attn.{p}", (f"encoder.layer.{{i}}.attention.output.LayerNorm.{p}",)),
            Rule(f"layers.{{i}}.mlp.fc.{p}", (f"encoder.layer.{{i}}.intermediate.dense.{p}",)),
            Rule(f"layers.{{i}}.mlp.proj.{p}", (f"encoder.layer.{{i}}.output.dense.{p}",)),
            Rule(f"layers.{{i}}.norm_mlp.{p}", (f"encoder.layer.{{i}}.output.LayerNorm.{p}",)),
        ]
    return top, layer


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


def config_to_hf(cfg: ModelConfig) -> dict:
    """``ModelConfig`` -> a Hugging Face BERT ``config.json`` (as a dict) for ``BertModel``."""
    need = dict(arch="encoder", positions="learned", norm="layernorm", norm_placement="post", final_norm=False,
                embed_norm=True, mlp="mlp", bias=True, norm_bias=True, embedding_scale=False)
    for key, value in need.items():
        if getattr(cfg, key) != value:
            raise ValueError(f"cannot export as Hugging Face BERT: it needs {key}={value!r}, "
                             f"the model has {getattr(cfg, key)!r}")
    if cfg.kv_heads != cfg.n_head:
        raise ValueError("BERT has no grouped-query attention (n_kv_head must equal n_head)")
    if cfg.activation not in _ACTIVATIONS_TO_HF:
        raise ValueError(f"BERT export: activation {cfg.activation!r} has no HF BERT equivalent")
    if cfg.type_vocab_size < 1:
        raise ValueError("BERT export needs type_vocab_size >= 1 (BertModel always has token type embeddings)")
    return {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.hidden_size, "hidden_act": _ACTIVATIONS_TO_HF[cfg.activation],
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
        "max_position_embeddings": cfg.max_seq_len, "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": 0.02, "layer_norm_eps": cfg.norm_eps, "position_embedding_type": "absolute",
        "pad_token_id": cfg.pad_token_id if cfg.pad_token_id is not None else 0, "dtype": "float32",
    }
