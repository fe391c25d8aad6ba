"""Building blocks shared by every model family: embeddings and positions, norms, MLPs,
attention (reference and fast paths, KV cache) and the transformer block."""

from lucidlm.nn.attention import Attention, KVCache, attention_fast, attention_reference, build_mask
from lucidlm.nn.block import Block
from lucidlm.nn.embeddings import RotaryEmbedding, SinusoidalPositions, sinusoidal_positions
from lucidlm.nn.mlp import MLP, SwiGLU
from lucidlm.nn.norms import RMSNorm, make_norm

__all__ = [
    "MLP", "Attention", "Block", "KVCache", "RMSNorm", "RotaryEmbedding", "SinusoidalPositions", "SwiGLU",
    "attention_fast", "attention_reference", "build_mask", "make_norm", "sinusoidal_positions",
]
