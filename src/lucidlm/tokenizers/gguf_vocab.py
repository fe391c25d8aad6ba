"""The tokenizer inside a GGUF file (llama.cpp's model format), as a ``BPETokenizer``.

A GGUF file starts with key/value metadata; the tokenizer lives under ``tokenizer.ggml.*``:

    model       "gpt2" = byte-level BPE (what we read); "llama" = SentencePiece, "bert" = WordPiece...
    tokens      every token as a string, in GPT-2's byte-to-character alphabet ("Ġthe" = b" the")
    token_type  1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    merges      "Ġ t" strings, in priority order (Hugging Face semantics: only listed pairs merge)
    pre         the name of the pre-tokenizer (split regexes), e.g. "gpt-2", "smollm", "llama-bpe"
    bos_token_id, eos_token_id, ..., add_bos_token;  and ``tokenizer.chat_template`` (Jinja)

llama.cpp's semantics (``src/llama-vocab.cpp``): control and user-defined tokens are written as
plain text, not in the byte alphabet, and are matched in the input text as whole tokens (control
ones only when the caller asks, ``parse_special``). Here both become ``special_tokens``: pass
``allowed_special="all"`` to ``encode`` for llama.cpp's ``parse_special=true``. (One difference:
llama.cpp matches user-defined tokens even without ``parse_special``.)

The pre-tokenizer names map to the Hugging Face pre-tokenizer of the model that was converted
(llama.cpp re-implements those regexes in C++; we use HF's originals, see ``pretokenizers.PreTokenizer``),
so a GGUF tokenizer encodes like the ``tokenizer.json`` it came from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lucidlm.files import derived_cache
from lucidlm.tokenizers.hf import PretrainedBPETokenizer, _template_json, token_to_bytes
from lucidlm.tokenizers.pretokenizers import LLAMA3_PATTERN, QWEN2_PATTERN, PreTokenizer

TOKEN_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}
SPECIAL_TYPES = {2, 3, 4}  # token types matched as whole tokens in text: our special tokens

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTE_LEVEL_NO_REGEX = {**_BYTE_LEVEL, "use_regex": False}


def _digits_then_byte_level() -> dict:
    digits = {"type": "Digits", "individual_digits": True}
    return {"type": "Sequence", "pretokenizers": [digits, _BYTE_LEVEL]}


def _split_then_byte_level(pattern: str) -> dict:
    split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
    return {"type": "Sequence", "pretokenizers": [split, _BYTE_LEVEL_NO_REGEX]}


# llama.cpp pre-tokenizer name -> the Hugging Face pre-tokenizer it stands for. Names that share
# one entry share one regex list in llama.cpp's ``llm_tokenizer_bpe`` constructor.
GGUF_PRE_TOKENIZERS: dict[str, dict] = {
    **dict.fromkeys(["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais"], _BYTE_LEVEL),
    **dict.fromkeys(
        ["smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b"],
        _digits_then_byte_level(),
    ),
    **dict.fromkeys(
        ["llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe"], _split_then_byte_level(LLAMA3_PATTERN)
    ),
    # Qwen2's tokenizer.json also has an NFC normalizer; llama.cpp does not apply it, nor do we.
    **dict.fromkeys(
        ["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"], _split_then_byte_level(QWEN2_PATTERN)
    ),
}
# llama.cpp turns on ignore_merges and BOS for the Llama 3 family (llama_vocab::impl::load).
_LLAMA3_FAMILY = {"llama-bpe", "llama3", "llama-v3"}
VOCAB_FILE, VOCAB_FORMAT = "vocab.json", "lucidlm-gguf-vocab"


def read_gguf_metadata(path: str | os.PathLike) -> dict[str, object]:
    """The ``tokenizer.*`` and ``general.*`` keys of a GGUF file as Python values.

    Strings are ``str`` except token and merge lists, which stay ``bytes`` (decoded by the caller,
    so that a broken entry can be named). Tensors are never read. The header is parsed by
    ``lucidlm.files.gguf``, once per file for the tokenizer and the weights together.
    """
    from lucidlm.files.gguf import open_gguf

    metadata = open_gguf(path).metadata
    return {k: v for k, v in metadata.items() if k.startswith(("tokenizer.", "general."))}


def from_gguf(path: str | os.PathLike, *, cache: bool = True) -> PretrainedBPETokenizer:
    """The byte-level BPE tokenizer of a GGUF file, with ``bos_id``, ``eos_id``, ``add_bos``,
    ``chat_template`` and the ``tokenizer.*`` keys in ``metadata["gguf"]``.

    Reading 49k tokens and merges out of the header is most of the work; with ``cache=True`` the
    first load keeps what it read (``vocab.json`` in ``lucidlm/derived_cache.py``'s cache, plain
    JSON) and later loads start from that. Both paths then build the tokenizer the same way.
    """
    path = Path(path)
    use_cache = cache and derived_cache.enabled()
    if use_cache:
        cached = load_cached_vocab(path)
        if cached is not None:
            try:
                return _tokenizer(path, *cached)
            except (ValueError, KeyError, TypeError, AttributeError):  # not a consistent vocab: corrupt
                pass  # read the header again; a bug in _tokenizer would raise there too
    meta, vocab, specials, merges = read_vocab(path)
    if use_cache:
        save_cached_vocab(path, meta, vocab, specials, merges)
    return _tokenizer(path, meta, vocab, specials, merges)


def read_vocab(path: Path) -> tuple[dict, dict[int, bytes], dict[str, int], list[tuple[int, int]]]:
    """(metadata, vocab, special tokens, merges) of a GGUF file's byte-level BPE tokenizer: the
    reference, from the header. ``metadata`` is the ``tokenizer.*`` and ``general.*`` keys but
    the token and merge lists, with strings inside arrays as text."""
    meta = read_gguf_metadata(path)
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        raise ValueError(f"{path} has no tokenizer (no 'tokenizer.ggml.model' key)")
    if model != "gpt2":
        raise ValueError(
            f"{path} has a {model!r} tokenizer; lucidlm reads byte-level BPE GGUF vocabularies "
            "(tokenizer.ggml.model = 'gpt2'), not SentencePiece ('llama'), WordPiece ('bert') or others"
        )
    pre = meta.get("tokenizer.ggml.pre")
    if pre not in GGUF_PRE_TOKENIZERS:
        raise ValueError(
            f"{path} uses the pre-tokenizer {pre!r}, which lucidlm does not know; "
            f"supported: {', '.join(sorted(GGUF_PRE_TOKENIZERS))}"
        )
    try:
        tokens = [t.decode("utf-8") for t in meta["tokenizer.ggml.tokens"]]
        merges_raw = [m.decode("utf-8") for m in meta["tokenizer.ggml.merges"]]
    except KeyError as exc:
        raise ValueError(f"{path} lacks the key {exc.args[0]!r} of a BPE tokenizer") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} has a token or merge that is not UTF-8: {exc}") from None
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(types) != len(tokens):
        raise ValueError(f"{path} lists {len(tokens)} tokens but {len(types)} token types")

    vocab, specials, by_text = {}, {}, {}
    for i, (text, kind) in enumerate(zip(tokens, types)):
        by_text.setdefault(text, i)
        if kind in SPECIAL_TYPES:
            specials[text] = i  # written as plain text, not in the byte alphabet
        elif kind != 5:  # unused slots are never produced by encoding
            try:
                vocab[i] = token_to_bytes(text)
            except ValueError as exc:
                raise ValueError(f"{path}: token {i}: {exc}") from None
    merges = []
    for rank, merge in enumerate(merges_raw):
        a, _, b = merge.partition(" ")
        ids = (by_text.get(a), by_text.get(b), by_text.get(a + b))
        if None in ids:
            raise ValueError(f"{path}: merge #{rank} {merge!r} names a token that is not in the vocab")
        if all(i in vocab for i in ids):  # merges into special tokens never run: those are cut out first
            merges.append(ids[:2])
    meta = {k: _text_in_arrays(v) for k, v in meta.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")}
    meta["tokenizer.ggml.token_type"] = types
    return meta, vocab, specials, merges


def _text_in_arrays(value):
    """Strings inside GGUF arrays are read as bytes (so that a broken token can be named); the
    metadata kept for people (e.g. ``general.languages``) holds them as text."""
    if isinstance(value, list):
        return [_text_in_arrays(v) for v in value]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _tokenizer(path: Path, meta: dict, vocab: dict[int, bytes], specials: dict[str, int],
               merges: list[tuple[int, int]]) -> PretrainedBPETokenizer:
    """The tokenizer, from ``read_vocab``'s four parts (read from the header or from the cache)."""
    pre = meta["tokenizer.ggml.pre"]

    def token_id(key: str) -> int | None:
        value = meta.get(f"tokenizer.ggml.{key}_token_id")
        return int(value) if value is not None else None

    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", pre in _LLAMA3_FAMILY))
    pre_tokenizer = GGUF_PRE_TOKENIZERS[pre]
    hf_sections = {
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": None,
    }
    gguf_meta = dict(meta)
    gguf_meta["tokenizer.ggml.token_type"] = {
        i: TOKEN_TYPES.get(t, str(t)) for i, t in enumerate(meta["tokenizer.ggml.token_type"]) if t != 1
    }
    tokenizer = PretrainedBPETokenizer(
        vocab,
        merges,
        pattern=PreTokenizer(None, pre_tokenizer).as_pattern(),
        special_tokens=specials,
        ignore_merges=pre in _LLAMA3_FAMILY,
        allow_missing_bytes=True,  # SmolLM2 lacks 21 byte tokens; HF drops such bytes before merging
        name=str(meta.get("general.name") or path.stem),
        bos_id=token_id("bos"),
        eos_id=token_id("eos"),
        pad_id=token_id("padding"),
        unk_id=token_id("unknown"),
        add_bos=add_bos and token_id("bos") is not None,
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)) and token_id("eos") is not None,
        chat_template=meta.get("tokenizer.chat_template"),
        metadata={"format": "gguf", "gguf": gguf_meta},
    )
    # How to write this tokenizer as tokenizer.json (hf.to_tokenizer_json), BOS included.
    hf_sections["post_processor"] = _template_json(tokenizer)
    tokenizer.metadata["hf"] = hf_sections
    return tokenizer


# ----------------------------------------------------------------------------------------------
# the cache: read_vocab's result as plain JSON (never pickle: a cache file is data, not code)
#
#     {"format": "lucidlm-gguf-vocab", "key": {which GGUF: derived_cache.source_key},
#      "metadata": {...}, "special_tokens": {"<|endoftext|>": 0, ...},
#      "vocab": [null, ..., "!", "\"", ..., " t", ...],   token id -> its bytes, null if none
#      "merges": [a0, b0, a1, b1, ...]}                    merge k joins ids a_k and b_k
#
# A token's bytes are written as the string of the same code points (latin-1: byte 0x41 -> "A",
# 0xC3 -> "\u00c3"): any bytes fit, ASCII tokens read as themselves, and ``str.encode("latin-1")``
# turns them back at C speed. The flat lists parse ~5x faster than [id, base64] pairs would.


def load_cached_vocab(path: Path) -> tuple[dict, dict[int, bytes], dict[str, int], list[tuple[int, int]]] | None:
    """``read_vocab``'s four parts from the derived cache, or None when there is no usable file
    (none yet, unreadable, or made from another version of the GGUF)."""
    try:
        data = json.loads((derived_cache.entry_dir(path) / VOCAB_FILE).read_bytes())
        if data["format"] != VOCAB_FORMAT or data["key"] != derived_cache.source_key(path):
            return None
        vocab = {i: piece.encode("latin-1") for i, piece in enumerate(data["vocab"]) if piece is not None}
        flat = data["merges"]
        merges = list(zip(flat[0::2], flat[1::2]))
        return data["metadata"], vocab, data["special_tokens"], merges
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, truncated, not ours
        return None


def save_cached_vocab(path: Path, meta: dict, vocab: dict[int, bytes], specials: dict[str, int],
                      merges: list[tuple[int, int]]) -> bool:
    data = {
        "format": VOCAB_FORMAT,
        "key": derived_cache.source_key(path),
        "metadata": meta,
        "special_tokens": specials,
        "vocab": [vocab[i].decode("latin-1") if i in vocab else None for i in range(max(vocab, default=-1) + 1)],
        "merges": [i for pair in merges for i in pair],
    }
    text = json.dumps(data)
    return derived_cache.write_derived(path, VOCAB_FILE, lambda tmp: tmp.write_text(text, encoding="ascii"))
