"""Model families as configurations of one set of blocks: GPT-2, Llama/SmolLM2, BERT, and the
original encoder-decoder Transformer."""

from lucidlm.models.config import PRESETS, ModelConfig, get_preset
from lucidlm.models.transformer import DecoderLM, Encoder, EncoderDecoder, build_model

__all__ = ["PRESETS", "DecoderLM", "Encoder", "EncoderDecoder", "ModelConfig", "build_model", "get_preset"]
