"""Tokenizers: how text becomes the integer ids a model reads.

- ``BPETokenizer``: byte-level byte-pair encoding (GPT-2, GPT-4, Llama 3, SmolLM2), trainable.
- ``WordPieceTokenizer``: BERT's greedy longest-match subwords.
- ``CharTokenizer`` / ``SmilesTokenizer``: one id per character / per SMILES atom or bond.
- ``load_tokenizer(name_or_path)``: a registered name or a file of any supported format.
"""

from __future__ import annotations

import os
from pathlib import Path

from lucidlm.tokenizers.bpe import BPETokenizer
from lucidlm.tokenizers.simple import SMILES_REGEX, CharTokenizer, SmilesTokenizer, tokenize_smiles
from lucidlm.tokenizers.training import train_bpe, train_bpe_reference
from lucidlm.tokenizers.wordpiece import BatchEncoding, WordPieceTokenizer

# Registered names -> (asset name, asset file key)
NAMED_TOKENIZERS: dict[str, tuple[str, str | None]] = {
    "cl100k_base": ("cl100k_base", None),
    "o200k_base": ("o200k_base", None),
    "gpt2": ("gpt2", "tokenizer"),
    "smollm2-135m-instruct": ("smollm2-135m-instruct", None),
    "all-minilm-l6-v2": ("all-minilm-l6-v2", "tokenizer.json"),
}


def load_tokenizer(name_or_path: str | os.PathLike):
    """A tokenizer by registered name (``cl100k_base``, ``o200k_base``, ``gpt2``,
    ``smollm2-135m-instruct``, ``all-minilm-l6-v2``) or from a file: HF ``tokenizer.json``,
    tiktoken ``.tiktoken``, ``.gguf``, BERT ``vocab.txt``, or a file saved by lucidlm."""
    from lucidlm.tokenizers.formats import from_tiktoken_file, load_tokenizer_file

    name = str(name_or_path)
    if name in NAMED_TOKENIZERS:
        from lucidlm.assets import asset_path

        asset, key = NAMED_TOKENIZERS[name]
        path = asset_path(asset, key)
        if path.suffix == ".tiktoken":
            return from_tiktoken_file(path, name=name)
        return load_tokenizer_file(path)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ValueError(
            f"{name!r} is neither a registered tokenizer ({', '.join(NAMED_TOKENIZERS)}) nor an existing file"
        )
    return load_tokenizer_file(path)


__all__ = [
    "BPETokenizer",
    "BatchEncoding",
    "CharTokenizer",
    "NAMED_TOKENIZERS",
    "SMILES_REGEX",
    "SmilesTokenizer",
    "WordPieceTokenizer",
    "load_tokenizer",
    "tokenize_smiles",
    "train_bpe",
    "train_bpe_reference",
]
