"""GGUF (llama.cpp's file format) -> ``ModelConfig`` + lucidlm state dict, for Llama-family models.

A GGUF file is self-describing: key/value metadata (``llama.block_count``, ``llama.rope.freq_base``,
the tokenizer's vocabulary and chat template, ...) followed by tensors, most of them quantised in
blocks (Q4_1: 32 weights share one fp16 scale and one fp16 minimum, 4 bits each).
``lucidlm.files.gguf`` reads the header; the common block types are dequantised here with torch,
any other with the ``gguf`` package (maintained with llama.cpp).

Three things differ from a Hugging Face Llama checkpoint:
1. Names: ``blk.{i}.attn_q.weight`` for ``model.layers.{i}.self_attn.q_proj.weight`` (``rules``
   below, in the style of every weight-name table: ``loading/names.py``).
2. Shapes are listed innermost-first (``[576, 1536]`` for a (1536, 576) matrix); the reader's
   numpy arrays are already (rows, columns) like ``nn.Linear.weight``.
3. The q and k rows are permuted. llama.cpp's RoPE rotates *adjacent* channel pairs (0,1),
   (2,3), ...; Hugging Face's (and lucidlm's) rotates channel i with channel i + hs/2 ("rotate
   half"). llama.cpp's converter reorders each head's rows so that its RoPE sees the pairs HF's
   saw (``LlamaModel.permute`` in llama.cpp's ``convert_hf_to_gguf.py``); ``unpermute_qk`` puts
   them back.

Dequantising is the slow part of a load (~0.5 s of a quiet core for SmolLM2-135M), and its result
never changes: ``read_gguf`` keeps the float32 tensors after the first load and maps them on the
next ones (``loading/weights_cache.py``); ``state_from_gguf`` stays the reference path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lucidlm.files import derived_cache
from lucidlm.files.gguf import GGUFFile, GGUFTensor, open_gguf
from lucidlm.loading.names import Rule, expand, part_sizes
from lucidlm.loading.quantize import apply_quantized
from lucidlm.loading.weights_cache import load_cached_weights, save_cached_weights
from lucidlm.models.config import ModelConfig
from lucidlm.nn.quantized import BLOCK_BYTES, dequantize_q4_0, dequantize_q4_1, dequantize_q8_0

SUPPORTED_ARCHITECTURES = ("llama",)


def rules(cfg: ModelConfig) -> tuple[list[Rule], list[Rule]]:
    """(global rules, per-layer rules): lucidlm name <- llama.cpp GGUF name(s), parts stacked in
    the order listed (q, k, v; gate, up). The q and k rows are also un-permuted (``ROPE_PERMUTED``)."""
    top = [Rule("embed.tokens.weight", ("token_embd.weight",)), Rule("norm.weight", ("output_norm.weight",))]
    if not cfg.tie_embeddings:
        top.append(Rule("lm_head.weight", ("output.weight",)))  # absent when the head is tied
    layer = [
        Rule("layers.{i}.norm_attn.weight", ("blk.{i}.attn_norm.weight",)),
        Rule("layers.{i}.attn.qkv.weight", tuple(f"blk.{{i}}.attn_{x}.weight" for x in "qkv")),
        Rule("layers.{i}.attn.proj.weight", ("blk.{i}.attn_output.weight",)),
        Rule("layers.{i}.norm_mlp.weight", ("blk.{i}.ffn_norm.weight",)),
        Rule("layers.{i}.mlp.gate_up.weight", ("blk.{i}.ffn_gate.weight", "blk.{i}.ffn_up.weight")),
        Rule("layers.{i}.mlp.proj.weight", ("blk.{i}.ffn_down.weight",)),
    ]
    return top, layer


# GGUF names whose rows llama.cpp permuted for its RoPE -> how many heads those rows belong to
ROPE_PERMUTED = {"attn_q.weight": lambda cfg: cfg.n_head, "attn_k.weight": lambda cfg: cfg.kv_heads}


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


def _field(gf: GGUFFile, key: str, default=None):
    return gf.metadata.get(key, default)


def config_from_gguf(gf: GGUFFile, name: str = "") -> ModelConfig:
    """The ModelConfig of a GGUF file's metadata (``llama.*`` keys)."""
    arch = _field(gf, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"GGUF architecture {arch!r} is not supported; lucidlm loads {SUPPORTED_ARCHITECTURES}")

    def need(key: str):
        value = _field(gf, f"{arch}.{key}")
        if value is None:
            raise ValueError(f"GGUF file lacks the metadata key {arch}.{key!s}")
        return value

    n_embd, n_head = int(need("embedding_length")), int(need("attention.head_count"))
    n_kv_head = int(_field(gf, f"{arch}.attention.head_count_kv", n_head))
    head_size = n_embd // n_head
    for key in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        value = _field(gf, f"{arch}.{key}")
        if value is not None and int(value) != head_size:
            raise ValueError(f"GGUF {arch}.{key}={value} differs from the head size {head_size}; "
                             "partial RoPE and odd head sizes are not supported")
    scaling = _field(gf, f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise ValueError(f"GGUF RoPE scaling {scaling!r} is not supported (only plain RoPE)")
    vocab_size = _field(gf, f"{arch}.vocab_size")
    if vocab_size is None and "tokenizer.ggml.tokens" in gf.metadata:
        vocab_size = len(gf.metadata["tokenizer.ggml.tokens"])
    if vocab_size is None:
        vocab_size = _get(gf.tensors, "token_embd.weight").shape[0]  # (V, C)
    return ModelConfig(
        name=name or _field(gf, "general.name", "") or "gguf",
        vocab_size=int(vocab_size), n_layer=int(need("block_count")), n_head=n_head, n_kv_head=n_kv_head,
        n_embd=n_embd, intermediate_size=int(need("feed_forward_length")),
        max_seq_len=int(need("context_length")), positions="rope",
        rope_theta=float(_field(gf, f"{arch}.rope.freq_base", 10000.0)),
        norm="rmsnorm", norm_eps=float(need("attention.layer_norm_rms_epsilon")), norm_bias=False,
        mlp="swiglu", activation="silu", bias=False,
        tie_embeddings="output.weight" not in gf.tensors,
        bos_token_id=_int_or_none(_field(gf, "tokenizer.ggml.bos_token_id")),
        eos_token_id=_int_or_none(_field(gf, "tokenizer.ggml.eos_token_id")),
        pad_token_id=_int_or_none(_field(gf, "tokenizer.ggml.padding_token_id")),
    )


# ----------------------------------------------------------------------------------------------
# dequantisation
#
# The common block types (Q8_0, Q4_0, Q4_1: their layouts are in nn/quantized.py) are expanded
# with torch in a few operations per tensor (SmolLM2: 1.4 s with the gguf package's numpy code ->
# 0.2 s on one core), bit for bit as the gguf package does (tests/test_load_speed_paths.py); any
# other block type goes to the gguf package.


# ggml type name -> fn(raw bytes (1-D uint8), out (float32, contiguous, the tensor's size)) that
# writes the values into out
FAST_DEQUANTISE = {
    "F32": lambda raw, out: out.view(-1).copy_(raw.view(torch.float32)),
    "F16": lambda raw, out: out.view(-1).copy_(raw.view(torch.float16)),
    "BF16": lambda raw, out: out.view(-1).copy_(raw.view(torch.bfloat16)),
    "Q8_0": dequantize_q8_0,
    "Q4_0": dequantize_q4_0,
    "Q4_1": dequantize_q4_1,
}


def dequantize(gf: GGUFFile, tensor: GGUFTensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A float32 tensor of ``tensor.shape`` (rows, columns) from one tensor of a GGUF file, written
    into ``out`` when given (a slice of a fused matrix, say), which must have that shape."""
    if out is None:
        out = torch.empty(tensor.shape)
    elif tuple(out.shape) != tensor.shape or not out.is_contiguous() or out.dtype != torch.float32:
        raise ValueError(f"GGUF tensor {tensor.name!r} has shape {tensor.shape}, the config needs {tuple(out.shape)}")
    raw = torch.from_numpy(gf.read_tensor(tensor))  # (nbytes,) uint8
    fast = FAST_DEQUANTISE.get(tensor.type_name)
    if fast is not None:
        fast(raw, out)
    else:
        out.copy_(dequantize_reference(raw.numpy(), tensor))
    return out


def dequantize_reference(raw: np.ndarray, tensor: GGUFTensor) -> torch.Tensor:
    """The gguf package's dequantisation of raw bytes: every block type it knows."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    qtype = GGMLQuantizationType(tensor.type)
    try:
        values = gguf_dequantize(raw.reshape(-1, tensor.nbytes // max(1, _rows(tensor.shape))), qtype)
    except NotImplementedError:
        raise ValueError(f"GGUF tensor {tensor.name!r} has type {qtype.name}, which the gguf package "
                         "cannot dequantise; convert the file to a supported type (e.g. Q8_0, Q4_K)") from None
    return torch.from_numpy(np.array(values, dtype=np.float32, copy=True).reshape(tensor.shape))


def _rows(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape[:-1]:
        n *= d
    return n


# ----------------------------------------------------------------------------------------------
# the state dict


def state_from_gguf(gf: GGUFFile, cfg: ModelConfig, skip: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """The lucidlm state dict of a Llama GGUF file: dequantised, renamed, q/k un-permuted, fused.
    ``skip``: lucidlm names left out (the matrices ``quantized_blocks`` keeps as blocks)."""
    by_name = gf.tensors
    mappings = expand(*rules(cfg), cfg.n_layer)
    known = {name for m in mappings for name in m.theirs}
    unknown = [n for n in by_name if n not in known]
    if unknown:
        raise ValueError(f"GGUF tensors lucidlm does not know how to load: {unknown[:8]} "
                         "(rope_freqs, biases, MoE experts and layers beyond block_count are not supported)")

    def load(name: str, out: torch.Tensor | None = None) -> torch.Tensor:
        """One GGUF tensor, dequantised (into ``out`` when given) and un-permuted if it is q or k."""
        permuted = ROPE_PERMUTED.get(name.split(".", 2)[-1])
        if permuted is None:
            return dequantize(gf, _get(by_name, name), out)
        w = unpermute_qk(dequantize(gf, _get(by_name, name), None if out is None else torch.empty_like(out)),
                         permuted(cfg))  # dequantised into scratch: still permuted
        return w if out is None else out.copy_(w)

    state: dict[str, torch.Tensor] = {}
    for m in mappings:
        if m.ours in skip:
            continue
        if len(m.theirs) == 1:
            state[m.ours] = load(m.theirs[0])
            continue
        # A fused matrix is allocated once and each part dequantised into its rows (no torch.cat copy).
        sizes = part_sizes(m.ours, cfg)
        fused = state[m.ours] = torch.empty(sum(sizes), cfg.n_embd)  # (C + 2 * nkv * hs, C) or (2 * hidden, C)
        for name, rows in zip(m.theirs, fused.split(sizes), strict=True):
            load(name, rows)
    return state


def quantized_blocks(gf: GGUFFile, cfg: ModelConfig) -> dict[str, tuple[torch.Tensor, str]]:
    """{lucidlm weight name: ((rows, row bytes) uint8 blocks, kind)} for every matrix whose GGUF
    parts are all stored in one block type lucidlm multiplies directly (Q8_0, Q4_0, Q4_1): the
    rows un-permuted (q, k) and stacked (qkv, gate_up) as ``state_from_gguf`` does with floats.
    A block holds 32 weights of one row, so moving whole rows moves whole blocks."""
    kept = {}
    for m in expand(*rules(cfg), cfg.n_layer):
        tensors = [_get(gf.tensors, name) for name in m.theirs]
        kinds = {t.type_name.lower() for t in tensors}
        if len(kinds) != 1 or not kinds <= BLOCK_BYTES.keys():
            continue  # float, another block type, or parts of two types: dequantised as usual
        parts = []
        for name, t in zip(m.theirs, tensors, strict=True):
            raw = torch.from_numpy(np.array(gf.read_tensor(t))).reshape(t.shape[0], -1)  # (rows, row bytes), a copy
            permuted = ROPE_PERMUTED.get(name.split(".", 2)[-1])
            parts.append(unpermute_qk(raw, permuted(cfg)) if permuted else raw)
        kept[m.ours] = (torch.cat(parts) if len(parts) > 1 else parts[0].contiguous(), kinds.pop())
    return kept


def state_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the tensors ``state_from_gguf`` returns, from the config alone
    (to check a cached state before trusting it)."""
    C, kv, H, V = cfg.n_embd, cfg.kv_heads * cfg.head_size, cfg.hidden_size, cfg.vocab_size
    shapes = {"embed.tokens.weight": (V, C), "norm.weight": (C,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (V, C)
    for i in range(cfg.n_layer):
        shapes |= {f"layers.{i}.norm_attn.weight": (C,), f"layers.{i}.attn.proj.weight": (C, C),
                   f"layers.{i}.norm_mlp.weight": (C,), f"layers.{i}.mlp.proj.weight": (C, H),
                   f"layers.{i}.attn.qkv.weight": (C + 2 * kv, C), f"layers.{i}.mlp.gate_up.weight": (2 * H, C)}
    return shapes


def _get(by_name, name: str) -> GGUFTensor:
    if name not in by_name:
        raise ValueError(f"GGUF file is missing tensor {name!r}")
    return by_name[name]


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in state.items()}


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def read_gguf(path: str | os.PathLike, *, cache: bool = True) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(ModelConfig, lucidlm state dict) of a Llama-family GGUF file.

    The first load of a file parses its header and dequantises every tensor (``state_from_gguf``,
    the reference); with ``cache=True`` it keeps the float32 result, and later loads map that
    instead (``loading/weights_cache.py``: ~0.01 s rather than ~0.5 s for SmolLM2-135M).
    """
    path = Path(path)
    use_cache = cache and derived_cache.enabled()
    cached = load_cached_weights(path) if use_cache else None
    if cached is not None and _shapes(cached[1]) == state_shapes(cached[0]):  # the fast path
        cfg, state = cached
    else:  # the reference: parse the header, dequantise
        gf = open_gguf(path)  # cached: the tokenizer reads the same header
        cfg = _described_config(gf, path)
        state = state_from_gguf(gf, cfg)
        if use_cache:
            save_cached_weights(path, cfg, state)
    # The same file may be reached under another name (a symlink): describe it as asked for.
    return cfg.replace(name=path.stem, extra={**cfg.extra, "source": str(path)}), state


def _described_config(gf: GGUFFile, path: Path) -> ModelConfig:
    cfg = config_from_gguf(gf, name=path.stem)
    return cfg.replace(extra={"format": "gguf", "gguf_name": _field(gf, "general.name", ""),
                              "quantisation": sorted({t.type_name for t in gf.tensors.values()})})


def load_gguf(path: str | os.PathLike, *, cache: bool = True, keep_quantized: bool = False):
    """A lucidlm ``DecoderLM`` (eval mode) from a Llama-family GGUF file (``cache``: see ``read_gguf``).

    ``keep_quantized=True`` keeps every Q8_0 / Q4_0 / Q4_1 matrix in its blocks
    (``QuantizedLinear``, ``QuantizedEmbedding``: nn/quantized.py) instead of expanding it to
    float32: SmolLM2-135M's weights take 97 MB instead of 538 MB, and a generated token reads
    that much less memory. Other tensors (norms, other block types) are float32 as usual.
    """
    from lucidlm.loading.checkpoint import load_state_checked
    from lucidlm.models.transformer import build_model

    if not keep_quantized:
        cfg, state = read_gguf(path, cache=cache)
        model = build_model(cfg, init=False)  # no random weights: every one is loaded next
        load_state_checked(model, state, source=str(path))
        return model.eval()
    path = Path(path)
    gf = open_gguf(path)
    cfg = _described_config(gf, path)
    cfg = cfg.replace(extra={**cfg.extra, "source": str(path), "kept_quantized": True})
    kept = quantized_blocks(gf, cfg)
    state = state_from_gguf(gf, cfg, skip=frozenset(kept))
    model = build_model(cfg, init=False)
    blocks = {name.removesuffix(".weight"): b for name, (b, _) in kept.items()}  # "layers.0.attn.qkv", "embed.tokens"
    plan = {name.removesuffix(".weight"): kind for name, (_, kind) in kept.items()}
    if cfg.tie_embeddings and "embed.tokens" in plan:  # the head reads the same blocks
        blocks["lm_head"], plan["lm_head"] = blocks["embed.tokens"], plan["embed.tokens"]
    apply_quantized(model, plan, blocks)
    state |= {f"{name}.blocks": b for name, b in blocks.items()}
    load_state_checked(model, state, source=str(path))
    return model.eval()
