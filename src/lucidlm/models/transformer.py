"""The three model shapes, built from the same blocks (``lucidlm.nn``) and one ``ModelConfig``.

- ``DecoderLM``: a stack of causal blocks and an output head (GPT-2, Llama, SmolLM2).
- ``Encoder``: a stack of bidirectional blocks returning hidden states (BERT, MiniLM).
- ``EncoderDecoder``: the original Transformer (Vaswani et al. 2017): an encoder, and a decoder
  whose blocks also attend to the encoder's output.

Every ``forward`` takes an optional ``trace`` (``lucidlm.inspection.Trace``) that records the
intermediate tensors by name; see ``lucidlm/inspect/trace.py``. Notation: B batch, T time,
C = n_embd, V vocabulary.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from lucidlm.models.config import ModelConfig
from lucidlm.nn.attention import KVCache
from lucidlm.nn.block import Block
from lucidlm.nn.embeddings import RotaryEmbedding, SinusoidalPositions
from lucidlm.nn.norms import make_norm


class Embeddings(nn.Module):
    """Token embedding (+ learned or sinusoidal positions, + token types, + optional norm)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokens = _embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = None
        if cfg.positions == "learned":
            self.positions = _embedding(cfg.max_seq_len, cfg.n_embd)
        elif cfg.positions == "sinusoidal":
            self.positions = SinusoidalPositions(cfg.max_seq_len, cfg.n_embd)
        self.token_types = _embedding(cfg.type_vocab_size, cfg.n_embd) if cfg.type_vocab_size else None
        self.norm = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias) if cfg.embed_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, token_types: torch.Tensor | None = None,
                trace=None, name: str = "embed") -> torch.Tensor:
        if not torch.compiler.is_compiling():  # reading the ids' values would split a compiled graph
            _check_ids(ids, self.cfg.vocab_size)
        x = self.tokens(ids)  # (B, T, C)
        if self.cfg.embedding_scale:
            x = x * math.sqrt(self.cfg.n_embd)
        if trace is not None:
            trace.record(f"{name}.tokens", x)
        if self.positions is not None:
            p = self.positions(positions)  # (T, C) or (B, T, C)
            if trace is not None:
                trace.record(f"{name}.positions", p)
            x = x + p
        if self.token_types is not None:  # BERT's segment A / segment B embedding
            if token_types is None:
                token_types = torch.zeros_like(ids)
            elif token_types.shape != ids.shape or int(token_types.max()) >= self.cfg.type_vocab_size:
                raise ValueError(f"token_types must have the ids' shape {tuple(ids.shape)} and values below "
                                 f"type_vocab_size={self.cfg.type_vocab_size}")
            t = self.token_types(token_types)  # (B, T, C)
            if trace is not None:
                trace.record(f"{name}.token_types", t)
            x = x + t
        if self.norm is not None:
            x = self.norm(x)
        if trace is not None:
            x = trace.record(f"{name}.out", x)  # an intervention may edit it (Trace.edits)
        return self.dropout(x)


def _check_ids_shape(ids: torch.Tensor) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"token ids must be a (batch, time) tensor, got {shape}; for one sequence use ids[None]")
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"token ids must be an int64 or int32 tensor, got {ids.dtype}")


def _check_ids(ids: torch.Tensor, vocab_size: int) -> None:
    """An id outside the vocabulary would index past the embedding table. On the CPU the check
    reads the smallest and largest id and names the bad one (a few microseconds). On an accelerator,
    reading a value back makes the host wait for the device at every step, so there the check is
    queued on the device (``_assert_async``): the run still stops, with the same message, at the
    next point where the host waits anyway, without a stall per step."""
    _check_ids_shape(ids)
    if not ids.numel():
        return
    if ids.device.type != "cpu":
        torch._assert_async(((ids >= 0) & (ids < vocab_size)).all(),
                            f"a token id is outside the model's vocabulary (0..{vocab_size - 1})")
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = hi if hi >= vocab_size else lo
        raise ValueError(f"token id {bad} is outside the model's vocabulary (0..{vocab_size - 1})")


def _positions(
    cfg: ModelConfig,
    T: int,
    start: int,
    device,
    attention_mask: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The position of each of the T new tokens: (T,) or (B, T).

    Given explicitly, ``positions`` wins. Else, with an ``attention_mask`` (B, start + T), a token's
    position is the number of real tokens before it (cumsum - 1, as Hugging Face ``generate`` does),
    so a left-padded row numbers its first real token 0 and gives the same result as the row
    alone; for right padding or no padding this equals plain counting. Without a mask:
    start .. start + T - 1, after what a KV cache holds.
    """
    if positions is None and attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[1] != start + T:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected (batch, {start + T}):"
                             f" one entry per cached ({start}) and new ({T}) position")
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, start:]  # (B, T); pads -> 0
    if positions is None:
        if start + T > cfg.max_seq_len:
            raise ValueError(
                f"sequence of {start + T} positions is longer than the model's context ({cfg.max_seq_len}); "
                "truncate the prompt or generate fewer tokens"
            )
        return torch.arange(start, start + T, device=device)  # (T,)
    if positions.shape[-1] != T or positions.dim() > 2:
        raise ValueError(f"positions has shape {tuple(positions.shape)}, expected (T,) or (B, T) with T={T}")
    if positions.numel() and int(positions.max()) >= cfg.max_seq_len:
        raise ValueError(f"position {int(positions.max())} is beyond the model's context ({cfg.max_seq_len}); "
                         "truncate the prompt or generate fewer tokens")
    if positions.numel() and int(positions.min()) < 0:
        raise ValueError(f"positions must be >= 0, got {int(positions.min())}")
    return positions


class DecoderLM(nn.Module):
    """A decoder-only language model: ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "decoder":
            raise ValueError(f"DecoderLM needs arch='decoder', got {cfg.arch!r}")
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        rope = RotaryEmbedding(cfg.head_size, cfg.max_seq_len, cfg.rope_theta) if cfg.positions == "rope" else None
        self.layers = nn.ModuleList(Block(cfg, causal=True, rope=rope) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias) if cfg.final_norm else None
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight  # one matrix reads and writes tokens
        self.apply(_init_weights)
        self._fast_decode = False  # see use_fast_decode

    def use_fast_decode(self, enabled: bool = True) -> DecoderLM:
        """Decode one token at a time through the C kernels of ``models/decode_fast.py`` (which
        say when they apply; elsewhere the reference path runs). Same results to float rounding.
        Without the C kernel (lucidlm installed without a C compiler), the next best thing:
        ``use_column_major_weights``. Measured on one core for SmolLM2-135M, the matrix-vector
        products of one token take 47 ms with PyTorch and the default layout, 31 ms column-major,
        22 ms in the C kernel (benchmarks/bench_decode.py).
        """
        from lucidlm.models import decode_fast

        self._fast_decode = enabled and decode_fast.unsupported_reason(self) is None
        if enabled and decode_fast.K is None:
            self.use_column_major_weights()
        return self

    def use_column_major_weights(self) -> DecoderLM:
        """Store every Linear weight column-major, for faster one-token decoding with PyTorch's ops.

        Generating one token multiplies each weight matrix by one vector, so decoding is bound by
        how fast the weights stream from memory. ``F.linear(x, W)`` computes ``x @ W^T``; with W
        (out, in) row-major that product walks W against its layout, while the same numbers stored
        as W^T (in, out) row-major stream straight through. The weights keep their shapes and
        values (only the memory order changes), so loading, saving and the trace are unaffected;
        training and the C decode kernel prefer the default layout.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear) and module.weight.is_contiguous():
                    module.weight.data = module.weight.data.t().contiguous().t()  # (out, in) view of (in, out)
        return self

    def new_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        p = next(self.parameters())  # the float weights' dtype and device (quantised layers keep blocks)
        return KVCache(self.cfg.n_layer, batch, self.cfg.kv_heads, max_len or self.cfg.max_seq_len,
                       self.cfg.head_size, dtype=p.dtype, device=p.device)

    def forward(
        self,
        ids: torch.Tensor,  # (B, T)
        *,
        attention_mask: torch.Tensor | None = None,  # (B, S) 1 = real token, 0 = padding (S covers the cache)
        positions: torch.Tensor | None = None,  # (T,) or (B, T); default: see _positions
        cache: KVCache | None = None,
        trace=None,
        last_only: bool = False,  # logits of the last position only (generation)
    ) -> torch.Tensor:
        """Next-token logits (B, T, V), or (B, 1, V) with ``last_only``.

        Batches of unequal length: pad them (left padding for generation, so that every row's
        last position is a real token) and pass ``attention_mask``; positions then count real
        tokens only, so each row gives the logits it would give alone. With a cache, keep
        ``attention_mask`` covering every cached position plus the new ones.
        """
        _check_ids_shape(ids)
        B, T = ids.shape
        start = cache.length if cache is not None else 0
        positions = _positions(self.cfg, T, start, ids.device, attention_mask, positions)
        key_padding = attention_mask.bool() if attention_mask is not None else None
        if (self._fast_decode and T == 1 and cache is not None and trace is None and not self.training
                and not torch.is_grad_enabled() and not torch.compiler.is_compiling()):
            from lucidlm.models.decode_fast import decode_step

            logits = decode_step(self, ids, positions, key_padding, cache)
            if logits is not None:
                return logits  # (B, 1, V)
        x = self.embed(ids, positions, trace=trace)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions=positions, key_padding=key_padding,
                      cache=cache.layers[i] if cache is not None else None, trace=trace, name=f"layers.{i}")
        if self.norm is not None:
            x = self.norm(x)
            if trace is not None:
                trace.record("final_norm", x)
        if last_only:
            x = x[:, -1:]
        logits = self.lm_head(x)  # (B, T, V)
        if trace is not None:
            trace.record("logits", logits)
        return logits


class Encoder(nn.Module):
    """A bidirectional encoder: ids (B, T) -> hidden states (B, T, C)."""

    def __init__(self, cfg: ModelConfig, n_layer: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        rope = RotaryEmbedding(cfg.head_size, cfg.max_seq_len, cfg.rope_theta) if cfg.positions == "rope" else None
        n = n_layer if n_layer is not None else cfg.n_layer
        self.layers = nn.ModuleList(Block(cfg, causal=False, rope=rope) for _ in range(n))
        self.norm = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias) if cfg.final_norm else None
        self.apply(_init_weights)

    def forward(self, ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                token_types: torch.Tensor | None = None, positions: torch.Tensor | None = None, trace=None,
                name: str = "") -> torch.Tensor:
        """Hidden states (B, T, C); with ``attention_mask`` (B, T), padding is never attended to and
        positions count real tokens only (see ``_positions``), so padding changes nothing.
        ``positions`` (T,) or (B, T) replaces that count (training with shifted positions)."""
        _check_ids_shape(ids)
        B, T = ids.shape
        positions = _positions(self.cfg, T, 0, ids.device, attention_mask, positions)
        key_padding = attention_mask.bool() if attention_mask is not None else None
        x = self.embed(ids, positions, token_types, trace=trace, name=f"{name}embed")
        for i, layer in enumerate(self.layers):
            x = layer(x, positions=positions, key_padding=key_padding, trace=trace, name=f"{name}layers.{i}")
        if self.norm is not None:
            x = self.norm(x)
        if trace is not None:
            trace.record(f"{name}hidden", x)
        return x


class EncoderDecoder(nn.Module):
    """The original Transformer: source ids -> encoder memory; target ids + memory -> logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "encoder-decoder":
            raise ValueError(f"EncoderDecoder needs arch='encoder-decoder', got {cfg.arch!r}")
        self.cfg = cfg
        self.encoder = Encoder(cfg, n_layer=cfg.n_encoder_layer)
        self.embed = Embeddings(cfg)
        self.embed.tokens.weight = self.encoder.embed.tokens.weight  # shared source/target vocabulary
        self.layers = nn.ModuleList(Block(cfg, causal=True, cross=True) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.norm_bias) if cfg.final_norm else None
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight
        self.apply(_init_weights)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None, trace=None, *,
               positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(src, attention_mask=src_mask, positions=positions, trace=trace, name="encoder.")

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, *, src_mask: torch.Tensor | None = None,
               tgt_mask: torch.Tensor | None = None, cache: KVCache | None = None, trace=None,
               positions: torch.Tensor | None = None) -> torch.Tensor:
        _check_ids_shape(tgt)
        B, T = tgt.shape
        start = cache.length if cache is not None else 0
        positions = _positions(self.cfg, T, start, tgt.device, tgt_mask, positions)
        x = self.embed(tgt, positions, trace=trace, name="decoder.embed")
        memory_padding = src_mask.bool() if src_mask is not None else None
        key_padding = tgt_mask.bool() if tgt_mask is not None else None
        for i, layer in enumerate(self.layers):
            x = layer(x, positions=positions, key_padding=key_padding, memory=memory, memory_padding=memory_padding,
                      cache=cache.layers[i] if cache is not None else None, trace=trace, name=f"decoder.layers.{i}")
        if self.norm is not None:
            x = self.norm(x)
            if trace is not None:
                trace.record("decoder.final_norm", x)
        logits = self.lm_head(x)  # (B, T, V)
        if trace is not None:
            trace.record("logits", logits)
        return logits

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, *, src_mask: torch.Tensor | None = None,
                tgt_mask: torch.Tensor | None = None, src_positions: torch.Tensor | None = None,
                tgt_positions: torch.Tensor | None = None, trace=None) -> torch.Tensor:
        """Logits (B, T, V) of each next target token. Positions default to counting real tokens
        from 0; ``src_positions`` / ``tgt_positions`` replace them (shifted-position training)."""
        memory = self.encode(src, src_mask, trace=trace, positions=src_positions)
        return self.decode(tgt, memory, src_mask=src_mask, tgt_mask=tgt_mask, trace=trace, positions=tgt_positions)

    def new_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        p = next(self.parameters())  # the float weights' dtype and device (quantised layers keep blocks)
        return KVCache(self.cfg.n_layer, batch, self.cfg.kv_heads, max_len or self.cfg.max_seq_len,
                       self.cfg.head_size, dtype=p.dtype, device=p.device)


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) for linear and embedding weights, zero biases."""
    if getattr(module, "weight", None) is not None and module.weight.is_meta:
        return  # a placeholder (build_model(init=False)): nothing to draw, see _embedding
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def build_model(cfg: ModelConfig, *, init: bool = True) -> nn.Module:
    """The model class for a config's ``arch``.

    ``init=False`` is for loaders that replace every weight: the parameters are placeholders on
    the "meta" device (a shape and a dtype, no memory, no random numbers) until
    ``load_state_checked`` puts the loaded tensors in their place. Drawing SmolLM2-135M's random
    weights only to overwrite them took 1.3 s of an 8 s load. Buffers computed from the config
    rather than loaded (RoPE's cos/sin tables, sinusoidal positions) are built for real either way.
    A placeholder that is never loaded cannot be used by mistake: any computation with it fails.
    """
    cls = {"decoder": DecoderLM, "encoder": Encoder, "encoder-decoder": EncoderDecoder}[cfg.arch]
    if init:
        return cls(cfg)
    with _parameters_on_meta():
        return cls(cfg)


def _embedding(num: int, dim: int) -> nn.Embedding:
    """``nn.Embedding(num, dim)``; with placeholder parameters, given its meta weight up front,
    because its constructor would draw N(0, 1) into it and ``normal_`` on a meta tensor imports
    torch._dynamo (1.1 s; ``uniform_``, which ``nn.Linear`` uses, does not)."""
    if getattr(_META, "active", False):
        return nn.Embedding(num, dim, _weight=torch.empty(num, dim, device="meta"))
    return nn.Embedding(num, dim)


_META = threading.local()  # .active: this thread is building a model with placeholder parameters


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered by this thread inside the block becomes a meta tensor.

    Not ``with torch.device("meta")``: that would make the computed buffers (RoPE tables)
    placeholders too. PyTorch's parameter-registration hook is global, so it checks a
    thread-local flag: a model built meanwhile by another thread keeps real parameters.
    """
    def to_meta(module: nn.Module, name: str, param):
        if not getattr(_META, "active", False) or param is None or param.is_meta:
            return None  # keep it (an already-meta parameter is a tied one: keep it the same object)
        return nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)

    handle = register_module_parameter_registration_hook(to_meta)
    previous, _META.active = getattr(_META, "active", False), True
    try:
        yield
    finally:
        _META.active = previous
        handle.remove()
