"""Any lucidlm tokenizer as a Hugging Face tokenizer directory, which other tools open as it is.

    my-model/
      tokenizer.json          HF's format: ``tokenizers.Tokenizer.from_file`` reads it
      tokenizer_config.json   the tokenizer class, special tokens and chat template, as
                              ``transformers.AutoTokenizer.from_pretrained`` expects them

lm-evaluation-harness (``local-completions ... tokenizer=DIR``), vLLM and transformers then give
the same ids as lucidlm. Each kind of tokenizer becomes the HF model that does the same thing:

    byte-level BPE        BPE over ByteLevel bytes, the split regex as a Split pre-tokenizer (hf.py)
    WordPiece (BERT)      WordPiece with BERT's normalizer and pre-tokenizer (wordpiece_json.py)
    characters            WordLevel over single characters: Split on every character, Fuse to decode
    SMILES                WordLevel over the SMILES regex's tokens: Split on that regex, Fuse to decode

``tokenizer.json`` is HF's file name and lucidlm never writes its own format under it: a
character or SMILES tokenizer's own file, which keeps what HF's cannot (how an unknown SMILES
character is refused), is ``tokenizer.lucidlm.json`` beside it (``filenames.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lucidlm.files.jsonfile import write_json_atomic
from lucidlm.tokenizers.bpe import BPETokenizer
from lucidlm.tokenizers.filenames import HF_CONFIG_FILE, HF_TOKENIZER_FILE, LUCIDLM_TOKENIZER_FILE
from lucidlm.tokenizers.hf import to_tokenizer_json
from lucidlm.tokenizers.simple import SMILES_SPECIAL_TOKENS, CharTokenizer, SmilesTokenizer
from lucidlm.tokenizers.wordpiece import WordPieceTokenizer


def _added(content: str, token_id: int) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def word_level_json(tokens: list[str], pattern: str, special: list[tuple[str, int]], unk_token: str | None) -> dict:
    """A tokenizer.json that splits text on ``pattern`` (each match one piece) and looks each
    piece up in ``tokens``; ``special`` (text, id) are matched before splitting, whole."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added(text, i) for text, i in special],
        "normalizer": None,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(tokens)},
                  "unk_token": unk_token if unk_token is not None else "<unk>"},
    }


def tokenizer_json(tokenizer) -> dict:
    """``tokenizer`` (any lucidlm tokenizer) as the contents of a Hugging Face tokenizer.json."""
    if isinstance(tokenizer, BPETokenizer):
        return to_tokenizer_json(tokenizer)
    if isinstance(tokenizer, WordPieceTokenizer):
        return tokenizer.to_dict()
    if isinstance(tokenizer, SmilesTokenizer):
        # the specials and condition tokens (<logP=2.25>) are whole tokens no SMILES regex matches
        special = [(t, i) for i, t in enumerate(tokenizer.tokens)
                   if t in SMILES_SPECIAL_TOKENS or (t.startswith("<") and t.endswith(">"))]
        return word_level_json(tokenizer.tokens, tokenizer.pattern, special, "<unk>")
    if isinstance(tokenizer, CharTokenizer):
        tokens = [tokenizer.itos[i] for i in range(tokenizer.vocab_size)]
        special = [(tokenizer.unk_token, tokenizer.unk_id)] if tokenizer.unk_id is not None else []
        return word_level_json(tokens, r"[\s\S]", special, tokenizer.unk_token)
    raise TypeError(f"no Hugging Face form for a {type(tokenizer).__name__}")


def tokenizer_config(tokenizer, *, chat_template: str | None = None, model_max_length: int | None = None) -> dict:
    """tokenizer_config.json: ``PreTrainedTokenizerFast`` (so transformers adds nothing of its own,
    such as a Llama tokenizer's automatic <s>), the special tokens by role, the chat template."""
    config: dict = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for role in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{role}_id", None)
        if token_id is not None:
            config[f"{role}_token"] = token_text(tokenizer, token_id)
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if template:
        config["chat_template"] = template
    if model_max_length:
        config["model_max_length"] = int(model_max_length)
    config["clean_up_tokenization_spaces"] = False  # decode exactly what the ids spell
    return config


def token_text(tokenizer, token_id: int) -> str:
    """A token's text as a tokenizer_config.json names it: a special token's own text ("<|im_end|>")."""
    special = getattr(tokenizer, "special_tokens", None)
    if isinstance(special, dict):
        by_id = {i: text for text, i in special.items()}
        if token_id in by_id:
            return by_id[token_id]
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, dict) and isinstance(vocab.get(token_id), bytes):
        return vocab[token_id].decode("utf-8", errors="replace")
    return tokenizer.id_to_token(token_id)


def save_hf_tokenizer(tokenizer, folder: str | os.PathLike, *, chat_template: str | None = None,
                      model_max_length: int | None = None) -> Path:
    """Write tokenizer.json and tokenizer_config.json into ``folder`` (created if needed), and a
    character or SMILES tokenizer's own file beside them; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / HF_TOKENIZER_FILE, tokenizer_json(tokenizer))
    config = tokenizer_config(tokenizer, chat_template=chat_template, model_max_length=model_max_length)
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    (folder / HF_CONFIG_FILE).write_text(text, encoding="utf-8")
    if isinstance(tokenizer, (CharTokenizer, SmilesTokenizer)):
        tokenizer.save(folder / LUCIDLM_TOKENIZER_FILE)
    return folder
