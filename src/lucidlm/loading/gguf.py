"""GGUF (llama.cpp's file format) -> ``ModelConfig`` + lucidlm state dict, for Llama-family models.

A GGUF file is self-describing: key/value metadata (``llama.block_count``, ``llama.rope.freq_base``,
the tokenizer's vocabulary and chat template, ...) followed by tensors, most of them quantised in
blocks (Q4_1: 32 weights share one fp16 scale and one fp16 minimum, 4 bits each). The ``gguf``
package (maintained with llama.cpp) reads the file and dequantises every block type to float32.

Three things differ from a Hugging Face Llama checkpoint:
1. Names: ``blk.{i}.attn_q.weight`` for ``model.layers.{i}.self_attn.q_proj.weight`` (table below).
2. Shapes are listed innermost-first (``[576, 1536]`` for a (1536, 576) matrix); the reader's
   numpy arrays are already (rows, columns) like ``nn.Linear.weight``.
3. The q and k rows are permuted. llama.cpp's RoPE rotates *adjacent* channel pairs (0,1),
   (2,3), ...; Hugging Face's (and lucidlm's) rotates channel i with channel i + hs/2 ("rotate
   half"). llama.cpp's converter reorders each head's rows so that its RoPE sees the pairs HF's
   saw (``LlamaModel.permute`` in llama.cpp's ``convert_hf_to_gguf.py``); ``unpermute_qk`` puts
   them back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lucidlm.models.config import ModelConfig

SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF name -> lucidlm name; "{i}" is the layer index. Fused lucidlm tensors list their parts in
# the order they are stacked (q, k, v; gate, up).
GLOBAL_NAMES = {
    "token_embd.weight": "embed.tokens.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "lm_head.weight",  # absent when the head is tied to the embedding
}
LAYER_NAMES = {
    "attn_norm.weight": "norm_attn.weight",
    "attn_output.weight": "attn.proj.weight",
    "ffn_norm.weight": "norm_mlp.weight",
    "ffn_down.weight": "mlp.proj.weight",
}
LAYER_FUSED = {
    "attn.qkv.weight": ("attn_q.weight", "attn_k.weight", "attn_v.weight"),
    "mlp.gate_up.weight": ("ffn_gate.weight", "ffn_up.weight"),
}


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's permutation (``LlamaModel.permute``): within each head, the rows of the two
    halves are interleaved. For one head of size 4, rows [a0, a1, b0, b1] -> [a0, b0, a1, b1]."""
    hs = w.shape[0] // n_head
    return w.reshape(n_head, 2, hs // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def unpermute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of ``permute_qk``: rows [a0, b0, a1, b1] -> [a0, a1, b0, b1] in each head.

    ``n_head`` is the number of heads the rows belong to: n_head for q, n_kv_head for k.
    """
    hs = w.shape[0] // n_head
    return w.reshape(n_head, hs // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def config_from_gguf(reader, name: str = "") -> ModelConfig:
    """The ModelConfig of a GGUF file's metadata (``llama.*`` keys)."""
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"GGUF architecture {arch!r} is not supported; lucidlm loads {SUPPORTED_ARCHITECTURES}")

    def need(key: str):
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise ValueError(f"GGUF file lacks the metadata key {arch}.{key!s}")
        return value

    n_embd, n_head = int(need("embedding_length")), int(need("attention.head_count"))
    n_kv_head = int(_field(reader, f"{arch}.attention.head_count_kv", n_head))
    head_size = n_embd // n_head
    for key in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        value = _field(reader, f"{arch}.{key}")
        if value is not None and int(value) != head_size:
            raise ValueError(f"GGUF {arch}.{key}={value} differs from the head size {head_size}; "
                             "partial RoPE and odd head sizes are not supported")
    scaling = _field(reader, f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise ValueError(f"GGUF RoPE scaling {scaling!r} is not supported (only plain RoPE)")
    vocab_size = _field(reader, f"{arch}.vocab_size")
    if vocab_size is None:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        vocab_size = len(tokens.data) if tokens is not None else None
    if vocab_size is None:
        vocab_size = int(_tensor(reader, "token_embd.weight").shape[-1])
    names = {t.name for t in reader.tensors}
    return ModelConfig(
        name=name or _field(reader, "general.name", "") or "gguf",
        vocab_size=int(vocab_size), n_layer=int(need("block_count")), n_head=n_head, n_kv_head=n_kv_head,
        n_embd=n_embd, intermediate_size=int(need("feed_forward_length")),
        max_seq_len=int(need("context_length")), positions="rope",
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        norm="rmsnorm", norm_eps=float(need("attention.layer_norm_rms_epsilon")), norm_bias=False,
        mlp="swiglu", activation="silu", bias=False,
        tie_embeddings="output.weight" not in names,
        bos_token_id=_int_or_none(_field(reader, "tokenizer.ggml.bos_token_id")),
        eos_token_id=_int_or_none(_field(reader, "tokenizer.ggml.eos_token_id")),
        pad_token_id=_int_or_none(_field(reader, "tokenizer.ggml.padding_token_id")),
    )


def dequantize(tensor) -> torch.Tensor:
    """A float32 torch tensor, (rows, columns), from one GGUF reader tensor of any block type the
    ``gguf`` package knows (F32, F16, BF16, Q4_0, Q4_1, Q8_0, the K-quants, ...)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    qtype = GGMLQuantizationType(tensor.tensor_type)
    try:
        values = gguf_dequantize(tensor.data, qtype)
    except NotImplementedError:
        raise ValueError(f"GGUF tensor {tensor.name!r} has type {qtype.name}, which the gguf package "
                         "cannot dequantise; convert the file to a supported type (e.g. Q8_0, Q4_K)") from None
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dims innermost-first
    return torch.from_numpy(np.array(values, dtype=np.float32, copy=True).reshape(shape))


def _tensor(reader, name: str):
    for t in reader.tensors:
        if t.name == name:
            return t
    raise ValueError(f"GGUF file has no tensor {name!r}")


def state_from_gguf(reader, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The lucidlm state dict of a Llama GGUF file: dequantised, renamed, q/k un-permuted, fused."""
    by_name = {t.name: t for t in reader.tensors}
    unknown = [n for n in by_name if n not in GLOBAL_NAMES and not _is_layer_tensor(n)]
    if unknown:
        raise ValueError(f"GGUF tensors lucidlm does not know how to load: {unknown[:8]} "
                         "(rope_freqs, biases and MoE experts are not supported)")
    state: dict[str, torch.Tensor] = {}
    for gguf_name, ours in GLOBAL_NAMES.items():
        if gguf_name in by_name:
            state[ours] = dequantize(by_name[gguf_name])
    for i in range(cfg.n_layer):
        for suffix, ours in LAYER_NAMES.items():
            state[f"layers.{i}.{ours}"] = dequantize(_get(by_name, f"blk.{i}.{suffix}"))
        q, k, v = (dequantize(_get(by_name, f"blk.{i}.{s}")) for s in LAYER_FUSED["attn.qkv.weight"])
        q, k = unpermute_qk(q, cfg.n_head), unpermute_qk(k, cfg.kv_heads)
        state[f"layers.{i}.attn.qkv.weight"] = torch.cat([q, k, v], dim=0)  # (C + 2 * nkv * hs, C)
        gate, up = (dequantize(_get(by_name, f"blk.{i}.{s}")) for s in LAYER_FUSED["mlp.gate_up.weight"])
        state[f"layers.{i}.mlp.gate_up.weight"] = torch.cat([gate, up], dim=0)  # (2 * hidden, C)
    return state


def _is_layer_tensor(name: str) -> bool:
    parts = name.split(".", 2)
    known = set(LAYER_NAMES) | {s for group in LAYER_FUSED.values() for s in group}
    return len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in known


def _get(by_name: dict, name: str):
    if name not in by_name:
        raise ValueError(f"GGUF file is missing tensor {name!r}")
    return by_name[name]


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def read_gguf(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(ModelConfig, lucidlm state dict) of a Llama-family GGUF file."""
    from lucidlm.tokenizers.gguf_vocab import open_gguf

    path = Path(path)
    reader = open_gguf(path)  # shared with the tokenizer, which reads the same header
    cfg = config_from_gguf(reader, name=path.stem)
    cfg = cfg.replace(extra={"source": str(path), "format": "gguf",
                             "gguf_name": _field(reader, "general.name", ""),
                             "quantisation": sorted({t.tensor_type.name for t in reader.tensors})})
    return cfg, state_from_gguf(reader, cfg)


def load_gguf(path: str | os.PathLike):
    """A lucidlm ``DecoderLM`` (eval mode, float32) from a Llama-family GGUF file."""
    from lucidlm.loading.checkpoint import load_state_checked
    from lucidlm.models.transformer import build_model

    cfg, state = read_gguf(path)
    model = build_model(cfg)
    load_state_checked(model, state, source=str(path))
    return model.eval()
