"""A lucidlm Llama- or GPT-2-family model and its tokenizer -> one GGUF file that llama.cpp runs.

What ``loading/gguf.py`` reads, written back, so the round trip is the first test:

    metadata   general.*  (architecture "llama", name, file type)
               llama.*    (block count, widths, heads, context, RoPE base, RMSNorm epsilon)
               tokenizer.ggml.*  (model "gpt2" = byte-level BPE, tokens in GPT-2's byte alphabet,
                          token types, merges, the pre-tokenizer's name, special ids) and
               tokenizer.chat_template
    tensors    token_embd, blk.{i}.attn_q/k/v/output, ffn_gate/up/down, attn_norm, ffn_norm,
               output_norm (and output when the head is not tied): q and k rows permuted for
               llama.cpp's RoPE (``permute_qk``), fused q/k/v and gate/up split back apart

A GPT-2-shaped model (learned positions, LayerNorm, GELU, biases) goes under llama.cpp's "gpt2"
architecture instead: ``gpt2.*`` keys; token_embd, position_embd, blk.{i}.attn_qkv (q, k, v
still fused, with its bias), attn_output, ffn_up, ffn_down, attn_norm and ffn_norm with their
biases, output_norm, and output (written even when tied to the embedding, which llama.cpp reads).

Matrices are written in the type asked for (f32, f16, q8_0, q4_0, q4_1: ``quantize.py``); norms
stay f32, as llama.cpp's converter keeps them. ``general.file_type`` says which type dominates,
as llama.cpp's tools set it.

llama.cpp re-implements a fixed list of pre-tokenizer regexes, named in ``tokenizer.ggml.pre``: a
tokenizer read from a GGUF keeps its name, and a BPE lucidlm trained gets "gpt-2" for GPT-2's
pattern and "llama-bpe" for cl100k's (Llama 3 uses the same regex). Other patterns, and
character or SMILES tokenizers, have no llama.cpp counterpart: the export refuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from lucidlm.files.gguf_write import TensorData, write_gguf
from lucidlm.loading.checkpoint import model_state
from lucidlm.loading.gguf import ROPE_PERMUTED, permute_qk, rules
from lucidlm.loading.hf import gpt2_config_to_hf, llama_config_to_hf
from lucidlm.loading.names import Rule, expand, scatter
from lucidlm.loading.quantize import BLOCK, GGML_TYPE, tensor_bytes

# general.file_type: llama.cpp's LLAMA_FTYPE for a file whose matrices are of this type
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5


def gpt2_rules(cfg) -> tuple[list[Rule], list[Rule]]:
    """(global rules, per-layer rules): lucidlm name <- llama.cpp's GPT-2 tensor names."""
    top = [Rule("embed.tokens.weight", ("token_embd.weight",)), Rule("embed.positions.weight", ("position_embd.weight",)),
           Rule("norm.weight", ("output_norm.weight",)), Rule("norm.bias", ("output_norm.bias",)),
           Rule("embed.tokens.weight" if cfg.tie_embeddings else "lm_head.weight", ("output.weight",))]
    layer = [Rule(f"layers.{{i}}.{ours}.{p}", (f"blk.{{i}}.{theirs}.{p}",))
             for ours, theirs in (("norm_attn", "attn_norm"), ("attn.qkv", "attn_qkv"), ("attn.proj", "attn_output"),
                                  ("norm_mlp", "ffn_norm"), ("mlp.fc", "ffn_up"), ("mlp.proj", "ffn_down"))
             for p in ("weight", "bias")]
    return top, layer


def _architecture(cfg) -> str:
    """"llama" or "gpt2": which llama.cpp graph computes what this model computes (else ValueError)."""
    if cfg.arch != "decoder":
        raise ValueError(f"GGUF export writes decoders; this model is an {cfg.arch}")
    family, check = ("gpt2", gpt2_config_to_hf) if cfg.positions == "learned" else ("llama", llama_config_to_hf)
    try:
        check(cfg)  # the same shape checks as the Hugging Face export
    except ValueError as exc:
        raise ValueError(str(exc).replace(f"Hugging Face {family}", f"GGUF (llama.cpp's {family})")) from None
    if family == "llama" and cfg.bias:
        raise ValueError("GGUF export: llama.cpp's llama graph has no biases; this model has them (bias=true)")
    if family == "gpt2" and cfg.activation != "gelu_tanh":
        raise ValueError(f"GGUF export: llama.cpp's gpt2 graph uses GELU (tanh); this model has {cfg.activation!r}")
    return family


def _pre_tokenizer_name(tokenizer) -> str:
    from lucidlm.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN

    gguf_meta = (getattr(tokenizer, "metadata", None) or {}).get("gguf") or {}
    if gguf_meta.get("tokenizer.ggml.pre"):
        return gguf_meta["tokenizer.ggml.pre"]
    from lucidlm.tokenizers.hf import _pre_tokenizer_json

    pattern = getattr(tokenizer, "pattern", None)
    hf_pre = ((getattr(tokenizer, "metadata", None) or {}).get("hf") or {}).get("pre_tokenizer")  # read from HF
    for name, known in (("gpt-2", GPT2_PATTERN), ("llama-bpe", CL100K_PATTERN)):
        if pattern == known or (hf_pre is not None and hf_pre == _pre_tokenizer_json(known)[1]):
            return name
    raise ValueError(f"llama.cpp cannot split text like {getattr(tokenizer, 'name', 'this tokenizer')}: it knows a "
                     "fixed list of pre-tokenizer regexes, and lucidlm maps GPT-2's (pattern='gpt2') and cl100k's "
                     "(pattern='cl100k') to them; train the tokenizer with one of those to export to GGUF")


def tokenizer_metadata(tokenizer, vocab_size: int) -> dict[str, tuple[str, object]]:
    """The ``tokenizer.ggml.*`` keys of a byte-level BPE, its vocabulary padded to the model's."""
    from lucidlm.tokenizers.bpe import BPETokenizer
    from lucidlm.tokenizers.hf import bytes_to_token, merges_from_ranks

    if not isinstance(tokenizer, BPETokenizer):
        raise ValueError(f"GGUF export needs a byte-level BPE tokenizer (llama.cpp's 'gpt2' vocabulary); this model "
                         f"has a {type(tokenizer).__name__}, which llama.cpp cannot run")
    pre = _pre_tokenizer_name(tokenizer)
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {vocab_size} rows")
    special = {i: text for text, i in tokenizer.special_tokens.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in special:
            tokens.append(special[i])
            types.append(TOKEN_CONTROL)
        elif i in tokenizer.vocab:
            tokens.append(bytes_to_token(tokenizer.vocab[i]))
            types.append(TOKEN_NORMAL)
        else:  # a row the model has and the tokenizer never produces (a vocabulary padded for speed)
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
    pairs = tokenizer.merges if tokenizer.merges is not None else merges_from_ranks(tokenizer.vocab)
    merges = [f"{bytes_to_token(tokenizer.vocab[a])} {bytes_to_token(tokenizer.vocab[b])}" for a, b in pairs]
    meta: dict[str, tuple[str, object]] = {
        "tokenizer.ggml.model": ("str", "gpt2"),
        "tokenizer.ggml.pre": ("str", pre),
        "tokenizer.ggml.tokens": ("[str]", tokens),
        "tokenizer.ggml.token_type": ("[i32]", types),
        "tokenizer.ggml.merges": ("[str]", merges),
        "tokenizer.ggml.add_bos_token": ("bool", bool(getattr(tokenizer, "add_bos", False))),
        "tokenizer.ggml.add_eos_token": ("bool", bool(getattr(tokenizer, "add_eos", False))),
    }
    for role, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"), ("unk", "unknown")):
        token_id = getattr(tokenizer, f"{role}_id", None)
        if token_id is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = ("u32", int(token_id))
    if getattr(tokenizer, "chat_template", None):
        meta["tokenizer.chat_template"] = ("str", tokenizer.chat_template)
    return meta


def export_gguf(model: nn.Module, tokenizer, path: str | os.PathLike, *, weights: str = "f32",
                name: str | None = None) -> Path:
    """Write ``model`` (a Llama-shaped lucidlm decoder: RoPE, RMSNorm, SwiGLU, no biases; or a
    GPT-2-shaped one: learned positions, LayerNorm, GELU, biases) and its
    ``tokenizer`` as a GGUF file whose matrices are ``weights`` ("f32", "f16", "q8_0", "q4_0", "q4_1")."""
    if weights not in FILE_TYPE:
        raise ValueError(f"unknown weight type {weights!r}; choose from {', '.join(FILE_TYPE)}")
    model = getattr(model, "_orig_mod", model)
    cfg = model.cfg
    arch = _architecture(cfg)
    if tokenizer is None:
        raise ValueError("GGUF export needs the model's tokenizer: llama.cpp reads it from the same file")
    meta: dict[str, tuple[str, object]] = {
        "general.architecture": ("str", arch),
        "general.name": ("str", name or cfg.name or "lucidlm"),
        "general.file_type": ("u32", FILE_TYPE[weights]),
        "general.quantization_version": ("u32", 2),
        f"{arch}.context_length": ("u32", cfg.max_seq_len),
        f"{arch}.embedding_length": ("u32", cfg.n_embd),
        f"{arch}.block_count": ("u32", cfg.n_layer),
        f"{arch}.feed_forward_length": ("u32", cfg.hidden_size),
        f"{arch}.attention.head_count": ("u32", cfg.n_head),
        f"{arch}.vocab_size": ("u32", cfg.vocab_size),
    }
    if arch == "llama":
        meta |= {"llama.attention.head_count_kv": ("u32", cfg.kv_heads),
                 "llama.rope.freq_base": ("f32", float(cfg.rope_theta)),
                 "llama.rope.dimension_count": ("u32", cfg.head_size),
                 "llama.attention.layer_norm_rms_epsilon": ("f32", float(cfg.norm_eps))}
    else:
        meta["gpt2.attention.layer_norm_epsilon"] = ("f32", float(cfg.norm_eps))
    meta |= tokenizer_metadata(tokenizer, cfg.vocab_size)
    table = rules(cfg) if arch == "llama" else gpt2_rules(cfg)
    theirs = scatter(model_state(model), expand(*table, cfg.n_layer), cfg)  # GGUF name -> tensor
    tensors = []
    for gguf_name, w in theirs.items():
        heads = ROPE_PERMUTED.get(gguf_name.split(".", 2)[-1])
        if heads is not None:
            w = permute_qk(w, heads(cfg))
        kind = weights
        if w.dim() == 1:
            kind = "f32"  # norms: few bytes, and llama.cpp adds them in f32
        elif w.shape[-1] % BLOCK and kind.startswith("q"):
            kind = "f16"  # rows that do not fill whole blocks, as llama.cpp's quantize falls back
        tensors.append(TensorData(gguf_name, tuple(w.shape), GGML_TYPE[kind], tensor_bytes(w, kind)))
    return write_gguf(path, meta, tensors)
