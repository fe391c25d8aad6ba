"""Reading and writing model weights: lucidlm checkpoints, Hugging Face safetensors directories
(GPT-2, Llama, BERT) and GGUF files. Nothing here unpickles: weights come from safetensors or GGUF.

- ``save_checkpoint`` / ``load_checkpoint``: lucidlm's own directory (config.json,
  model.safetensors, tokenizer.json), saved atomically.
- ``load_hf`` / ``save_hf``: Hugging Face GPT-2, Llama and BERT directories, both ways; every
  family's weight names are one table of rules read in both directions (``names.py``).
- ``read_gguf`` / ``load_gguf``: llama.cpp's GGUF (Llama family), dequantised to float32.
- ``load_model(name_or_path)`` (``load.py``; also ``lucidlm.load_model``) picks the right one for you.
"""

from lucidlm.loading.checkpoint import (
    load_checkpoint,
    load_state_checked,
    model_state,
    read_safetensors,
    save_checkpoint,
)
from lucidlm.loading.gguf import load_gguf, read_gguf
from lucidlm.loading.hf import HF_FAMILIES, load_hf, save_hf
from lucidlm.loading.load import load_model

__all__ = [
    "HF_FAMILIES", "load_checkpoint", "load_gguf", "load_hf", "load_state_checked", "model_state",
    "load_model", "read_gguf", "read_safetensors", "save_checkpoint", "save_hf",
]
