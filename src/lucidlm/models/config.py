"""``ModelConfig``: one typed description that every model family is an instance of.

GPT-2, Llama/SmolLM2, BERT and the original encoder-decoder differ only in the choices below
(positions, norm, its placement, MLP kind, bias, tying), not in code. A config is validated when
built, never mutated after (frozen), and round-trips through JSON (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lucidlm.nn.mlp import ACTIVATIONS

ARCHS = ("decoder", "encoder", "encoder-decoder")
POSITIONS = ("learned", "sinusoidal", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("mlp", "swiglu")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "decoder"  # decoder-only LM (GPT-2, Llama), encoder (BERT) or encoder-decoder
    vocab_size: int = 50257
    n_layer: int = 12  # blocks (in the decoder, for encoder-decoder)
    n_encoder_layer: int = 0  # encoder blocks of an encoder-decoder
    n_head: int = 12
    n_kv_head: int | None = None  # < n_head: grouped-query attention; None: = n_head
    n_embd: int = 768  # C, the width of the residual stream
    intermediate_size: int | None = None  # MLP hidden width; None: 4 * n_embd
    max_seq_len: int = 1024  # longest sequence the position table / RoPE cache covers
    positions: str = "learned"  # learned (GPT-2, BERT), sinusoidal (Vaswani), rope (Llama), none
    rope_theta: float = 10000.0
    norm: str = "layernorm"  # layernorm or rmsnorm
    norm_eps: float = 1e-5
    norm_placement: str = "pre"  # pre: x + f(norm(x)) (GPT-2, Llama); post: norm(x + f(x)) (BERT, Vaswani)
    final_norm: bool = True  # a norm after the last block (pre-norm models need one)
    embed_norm: bool = False  # a norm right after the embeddings (BERT)
    mlp: str = "mlp"  # mlp (fc -> act -> proj) or swiglu
    activation: str = "gelu_tanh"  # gelu_tanh (GPT-2), gelu (BERT), silu (Llama), relu (Vaswani)
    bias: bool = True  # biases in attention and MLP linears (GPT-2, BERT) or none (Llama)
    norm_bias: bool = True  # LayerNorm with a bias
    tie_embeddings: bool = True  # the output head reuses the token embedding matrix
    type_vocab_size: int = 0  # BERT's segment (token type) embeddings; 0: none
    embedding_scale: bool = False  # multiply token embeddings by sqrt(C) (Vaswani et al.)
    dropout: float = 0.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes (source, license)

    def __post_init__(self) -> None:
        where = f"ModelConfig {self.name!r}" if self.name else "ModelConfig"

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"{where}: {message}")

        def is_int(value) -> bool:  # bool is an int subclass; n_layer=True is a mistake, not 1
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        check(self.arch in ARCHS, f"arch={self.arch!r}; choose from {ARCHS}")
        check(self.positions in POSITIONS, f"positions={self.positions!r}; choose from {POSITIONS}")
        check(self.norm in NORMS, f"norm={self.norm!r}; choose from {NORMS}")
        check(self.mlp in MLPS, f"mlp={self.mlp!r}; choose from {MLPS}")
        check(self.norm_placement in ("pre", "post"), f"norm_placement={self.norm_placement!r}; use 'pre' or 'post'")
        check(self.activation in ACTIVATIONS, f"activation={self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "max_seq_len"):
            value = getattr(self, name)
            check(is_int(value) and value > 0, f"{name} must be a positive int, got {value!r}")
        for name in ("n_kv_head", "intermediate_size"):  # None means "the default"; 0 would hide a typo
            value = getattr(self, name)
            check(value is None or (is_int(value) and value > 0), f"{name} must be None or a positive int, got {value!r}")
        for name in ("n_encoder_layer", "type_vocab_size"):
            value = getattr(self, name)
            check(is_int(value) and value >= 0, f"{name} must be an int >= 0, got {value!r}")
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            check(is_number(value) and value > 0, f"{name} must be a positive number, got {value!r}")
        for name in ("final_norm", "embed_norm", "bias", "norm_bias", "tie_embeddings", "embedding_scale"):
            value = getattr(self, name)
            check(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            # not checked against vocab_size: published HF configs carry out-of-range ids (HF warns only)
            value = getattr(self, name)
            check(value is None or (is_int(value) and value >= 0), f"{name} must be None or an int >= 0, got {value!r}")
        check(isinstance(self.name, str), f"name must be a string, got {self.name!r}")
        check(isinstance(self.extra, dict), f"extra must be a dict, got {type(self.extra).__name__}")
        check(self.n_embd % self.n_head == 0, f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        check(self.n_head % self.kv_heads == 0, f"n_head={self.n_head} is not a multiple of n_kv_head={self.kv_heads}")
        check(self.positions != "rope" or self.head_size % 2 == 0,
              f"positions='rope' needs an even head size (n_embd / n_head), got {self.head_size}")
        check(self.arch != "encoder-decoder" or self.n_encoder_layer > 0, "encoder-decoder needs n_encoder_layer > 0")
        check(is_number(self.dropout) and 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def hidden_size(self) -> int:
        return self.intermediate_size or 4 * self.n_embd

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (configs are never mutated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"ModelConfig.from_dict needs a dict, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` atomically (a crash never leaves half a file)."""
        from lucidlm.files.jsonfile import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelConfig:
        from lucidlm.files.jsonfile import read_json

        data = read_json(path, "model config")
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls.from_dict(data)


# Presets: the published shapes of each family.
PRESETS: dict[str, ModelConfig] = {
    "gpt2": ModelConfig(name="gpt2", vocab_size=50257, n_layer=12, n_head=12, n_embd=768, max_seq_len=1024,
                        bos_token_id=50256, eos_token_id=50256),
    "gpt2-medium": ModelConfig(name="gpt2-medium", n_layer=24, n_head=16, n_embd=1024,
                               bos_token_id=50256, eos_token_id=50256),
    "smollm2-135m": ModelConfig(
        name="smollm2-135m", vocab_size=49152, n_layer=30, n_head=9, n_kv_head=3, n_embd=576,
        intermediate_size=1536, max_seq_len=8192, positions="rope", rope_theta=100000.0, norm="rmsnorm",
        norm_eps=1e-5, mlp="swiglu", activation="silu", bias=False, tie_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    ),
    "all-minilm-l6-v2": ModelConfig(
        name="all-minilm-l6-v2", arch="encoder", vocab_size=30522, n_layer=6, n_head=12, n_embd=384,
        intermediate_size=1536, max_seq_len=512, positions="learned", norm="layernorm", norm_eps=1e-12,
        norm_placement="post", final_norm=False, embed_norm=True, activation="gelu", type_vocab_size=2,
        tie_embeddings=False, pad_token_id=0,
    ),
    "transformer-base": ModelConfig(  # Vaswani et al. 2017, "base"
        name="transformer-base", arch="encoder-decoder", vocab_size=37000, n_layer=6, n_encoder_layer=6,
        n_head=8, n_embd=512, intermediate_size=2048, max_seq_len=512, positions="sinusoidal",
        norm_placement="post", final_norm=False, activation="relu", embedding_scale=True, dropout=0.1,
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}") from None
