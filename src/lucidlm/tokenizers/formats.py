"""Reading and writing the tokenizer files people already have, and ``load_tokenizer``.

- tiktoken rank files (``cl100k_base.tiktoken``): one ``base64(token) rank`` line per token.
- Hugging Face ``tokenizer.json``: see ``hf.py``.
- GGUF vocabularies (llama.cpp): see ``gguf_vocab.py``.
- lucidlm's own JSON format: ``BPETokenizer.save`` / ``BPETokenizer.load``.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from lucidlm.files.jsonfile import read_json
from lucidlm.tokenizers.bpe import FORMAT_NAME, BPETokenizer
from lucidlm.tokenizers.filenames import HF_TOKENIZER_FILE, LUCIDLM_TOKENIZER_FILE
from lucidlm.tokenizers.patterns import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN

# What tiktoken itself registers for OpenAI's encodings (tiktoken_ext/openai_public.py).
TIKTOKEN_ENCODINGS: dict[str, dict] = {
    "cl100k_base": {
        "pattern": CL100K_PATTERN,
        "special_tokens": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
    "o200k_base": {
        "pattern": O200K_PATTERN,
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
    "r50k_base": {"pattern": GPT2_PATTERN, "special_tokens": {"<|endoftext|>": 50256}},
}


def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Parse a tiktoken rank file into token bytes -> rank."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tiktoken rank file at {path}")
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except (ValueError, binascii.Error):
                raise ValueError(
                    f"{path}:{lineno} is not a tiktoken rank line ('<base64 token> <rank>'): {line[:60]!r}"
                ) from None
    if not ranks:
        raise ValueError(f"{path} holds no tokens; is it a tiktoken rank file?")
    return ranks


def from_tiktoken_file(
    path: str | os.PathLike,
    *,
    pattern: str | None = None,
    special_tokens: dict[str, int] | None = None,
    name: str | None = None,
) -> BPETokenizer:
    """A tokenizer from a tiktoken rank file. For OpenAI's files the pattern and special tokens are
    known from the file name (``cl100k_base``, ``o200k_base``, ``r50k_base``); pass them otherwise."""
    path = Path(path)
    name = name or path.name.split(".")[0]
    known = TIKTOKEN_ENCODINGS.get(name, {})
    if pattern is None and not known:
        raise ValueError(
            f"{path.name} is not a known OpenAI encoding ({', '.join(TIKTOKEN_ENCODINGS)}); "
            "pass pattern= (a regex or 'gpt2'/'cl100k'/'o200k') and special_tokens="
        )
    ranks = read_tiktoken_ranks(path)
    return BPETokenizer(
        {rank: token for token, rank in ranks.items()},
        None,
        pattern=pattern or known["pattern"],
        special_tokens=special_tokens if special_tokens is not None else known.get("special_tokens", {}),
        name=name,
    )


def save_tiktoken_file(tokenizer: BPETokenizer, path: str | os.PathLike) -> Path:
    """Write the ordinary tokens as a tiktoken rank file (tiktoken's ``load_tiktoken_bpe`` reads it).

    Only exact for ``ranks``-mode tokenizers or merge lists whose ids increase with merge order,
    since a rank file cannot express HF-style merge restrictions."""
    path = Path(path)
    lines = [f"{base64.b64encode(p).decode('ascii')} {i}" for i, p in sorted(tokenizer.vocab.items())]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def load_tokenizer_file(path: str | os.PathLike):
    """Open a tokenizer file of any supported kind, recognised by its content."""
    path = Path(path)
    if path.is_dir():
        for candidate in (LUCIDLM_TOKENIZER_FILE, HF_TOKENIZER_FILE, "vocab.txt"):
            if (path / candidate).is_file():
                return load_tokenizer_file(path / candidate)
        raise FileNotFoundError(f"{path} is a directory without tokenizer.json or vocab.txt")
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] == b"GGUF":
        from lucidlm.tokenizers.gguf_vocab import from_gguf

        return from_gguf(path)
    if path.suffix == ".tiktoken":
        return from_tiktoken_file(path)
    if path.suffix == ".txt" and path.name.startswith("vocab"):
        from lucidlm.tokenizers.wordpiece import WordPieceTokenizer

        return WordPieceTokenizer.from_vocab_file(path)
    if head.lstrip()[:1] == b"{":
        data = read_json(path)
        if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
            return BPETokenizer.from_dict(data, source=str(path))
        if isinstance(data, dict) and data.get("format") in ("lucidlm-char", "lucidlm-smiles"):
            from lucidlm.tokenizers import simple

            return simple.load(path)
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            model_type = data["model"].get("type")
            if model_type == "WordLevel":  # what hf_dir writes for characters and SMILES
                own = path.with_name(LUCIDLM_TOKENIZER_FILE)
                if own.is_file():
                    return load_tokenizer_file(own)
                raise ValueError(f"{path} is a WordLevel tokenizer.json, which lucidlm reads through the "
                                 "tokenizer.lucidlm.json saved beside it (not found)")
            if model_type == "WordPiece":
                from lucidlm.tokenizers.wordpiece import WordPieceTokenizer

                return WordPieceTokenizer.from_tokenizer_json(path)
            from lucidlm.tokenizers.hf import from_tokenizer_json

            return from_tokenizer_json(path)
        raise ValueError(f"{path} is JSON but not a tokenizer file lucidlm knows (lucidlm, HF tokenizer.json)")
    try:
        return from_tiktoken_file(path)
    except ValueError:
        raise ValueError(
            f"cannot tell what kind of tokenizer file {path} is; lucidlm reads tokenizer.json, .tiktoken, "
            ".gguf, vocab.txt and its own .json files"
        ) from None
