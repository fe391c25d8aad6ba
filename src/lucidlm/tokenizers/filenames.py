"""The file names of a tokenizer directory, and the rule that keeps lucidlm's format off HF's name.

    tokenizer.json           Hugging Face's format (every tool reads it under this name)
    tokenizer_config.json    its class, special tokens and chat template
    tokenizer.lucidlm.json   lucidlm's own format, where HF's cannot hold a tokenizer exactly
"""

from __future__ import annotations

import os
from pathlib import Path

HF_TOKENIZER_FILE, HF_CONFIG_FILE = "tokenizer.json", "tokenizer_config.json"
LUCIDLM_TOKENIZER_FILE = "tokenizer.lucidlm.json"


def refuse_hf_name(path: str | os.PathLike, kind: str) -> Path:
    """``path``, unless it is named tokenizer.json: that name means HF's format to every other
    tool, so lucidlm's own never goes there."""
    path = Path(path)
    if path.name == HF_TOKENIZER_FILE:
        raise ValueError(f"{path}: tokenizer.json is Hugging Face's file name, and this writes lucidlm's own "
                         f"{kind} format; save it as {path.with_name(LUCIDLM_TOKENIZER_FILE)} (or any other name), "
                         "or write HF's format with lucidlm.tokenizers.hf_dir.save_hf_tokenizer(tokenizer, folder)")
    return path
