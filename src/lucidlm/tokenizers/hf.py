"""Hugging Face ``tokenizer.json`` for byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2): read and write.

A ``tokenizer.json`` describes a pipeline, applied to each stretch of text between added tokens:

    normalizer (NFC, lowercase, ...) -> pre-tokenizer (split into chunks) -> model (BPE merges)

and, separately, a post-processor (adds BOS/EOS ids) and a decoder (ids -> text).

Byte-level BPE works on bytes, but the JSON stores tokens as strings, so GPT-2 mapped each of the
256 bytes to a printable character (``bytes_to_unicode``): " hello" is stored as "Ġhello". We undo
that mapping on reading and apply it on writing; lucidlm itself works on real bytes.

The pre-tokenizer is the subtle part; it lives in ``pretokenizers.py`` (``PreTokenizer``). The
regexes in tokenizer.json are Oniguruma's dialect, not Python's; ``hf_regex.py`` translates them.
Both are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lucidlm.files.jsonfile import read_json, write_json_atomic
from lucidlm.tokenizers.bpe import BPETokenizer

# ``name as name``: re-exported, so code and tests that import these from ``hf`` keep working.
from lucidlm.tokenizers.hf_regex import onig_to_python as onig_to_python
from lucidlm.tokenizers.hf_regex import python_to_onig
from lucidlm.tokenizers.pretokenizers import BEHAVIORS as BEHAVIORS
from lucidlm.tokenizers.pretokenizers import (
    COVERING_PATTERNS,
    DIGITS_THEN_BYTELEVEL,
    HF_BYTELEVEL_PATTERN,
    PreTokenizer,
    _type_name,
)
from lucidlm.tokenizers.pretokenizers import LLAMA3_PATTERN as LLAMA3_PATTERN
from lucidlm.tokenizers.pretokenizers import QWEN2_PATTERN as QWEN2_PATTERN
from lucidlm.tokenizers.pretokenizers import _Split as _Split

# ----------------------------------------------------------------------------------------------
# 1. GPT-2's byte <-> character table


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to 256 printable characters.

    Bytes that are printable Latin-1 characters map to themselves ("!".."~", "¡".."¬", "®".."ÿ");
    the other 68 (control codes, space, DEL, NBSP, soft hyphen) map, in order, to U+0100, U+0101...
    So a token's string never contains whitespace or control characters:

    >>> t = bytes_to_unicode(); t[ord("a")], t[ord(" ")], t[ord("\\n")], t[0]
    ('a', 'Ġ', 'Ċ', 'Ā')
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_token(piece: bytes) -> str:
    """Token bytes -> the string stored in tokenizer.json / GGUF (b" hi" -> "Ġhi")."""
    return "".join(BYTE_TO_CHAR[b] for b in piece)


def token_to_bytes(token: str) -> bytes:
    """The string stored in tokenizer.json / GGUF -> token bytes ("Ġhi" -> b" hi")."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError as exc:
        raise ValueError(
            f"token {token!r} contains {exc.args[0]!r}, which is not in GPT-2's byte alphabet; "
            "this is not a byte-level BPE vocabulary"
        ) from None


# ----------------------------------------------------------------------------------------------
# 2. A BPETokenizer that remembers what the model's files say


class PretrainedBPETokenizer(BPETokenizer):
    """A ``BPETokenizer`` read from a model's files (tokenizer.json, GGUF), plus their metadata.

    ``encode`` never adds BOS/EOS (like HF's ``add_special_tokens=False`` and llama.cpp's
    ``add_special=false``); ``add_special_ids(ids)`` adds what the files ask for (``add_bos``,
    ``add_eos``). ``eos_id`` is the id that ends a reply; ``chat_template`` is the Jinja template
    the model was trained with (GGUF ``tokenizer.chat_template``, or ``tokenizer_config.json``
    beside a tokenizer.json). ``metadata`` holds the rest: for tokenizer.json the original
    sections (``metadata["hf"]``), for GGUF the ``tokenizer.*`` keys (``metadata["gguf"]``).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[int, int]] | None = None,
        *,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        unk_id: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        chat_template: str | None = None,
        metadata: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(vocab, merges, **kwargs)
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = bos_id, eos_id, pad_id, unk_id
        self.add_bos, self.add_eos = bool(add_bos), bool(add_eos)
        self.chat_template = chat_template
        self.metadata = dict(metadata or {})
        for role, token_id in (("bos", bos_id), ("eos", eos_id), ("pad", pad_id), ("unk", unk_id)):
            if token_id is not None and token_id not in self._decoder:
                raise ValueError(f"{role} token id {token_id} is not a token of {self.name}")
        for role, wanted, token_id in (("bos", add_bos, bos_id), ("eos", add_eos, eos_id)):
            if wanted and token_id is None:
                raise ValueError(f"add_{role}=True needs a {role}_id")

    def add_special_ids(self, ids: Sequence[int]) -> list[int]:
        """``ids`` with BOS/EOS added as the model expects: ``[bos] + ids`` when ``add_bos``, etc."""
        return [self.bos_id] * self.add_bos + list(ids) + [self.eos_id] * self.add_eos

    def __repr__(self) -> str:
        return (
            f"PretrainedBPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, mode={self.mode!r}, "
            f"bos_id={self.bos_id}, eos_id={self.eos_id}, add_bos={self.add_bos})"
        )


# ----------------------------------------------------------------------------------------------
# 3. Reading tokenizer.json


def from_tokenizer_json(source: str | os.PathLike | dict) -> PretrainedBPETokenizer:
    """A byte-level BPE tokenizer from a Hugging Face ``tokenizer.json`` (a path, or the parsed dict).

    Added tokens (special or not) become ``special_tokens``: HF cuts every added token out of the
    text before BPE, which lucidlm does for ``encode(text, allowed_special="all")``. Added tokens
    also present in the model vocab are removed from it (lucidlm keeps special ids apart). A
    ``tokenizer_config.json`` beside the file supplies ``chat_template`` and the eos/bos tokens.
    """
    data, label, folder = _read_json(source)
    model = data.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{label} has no 'model' section; is it a Hugging Face tokenizer.json?")
    model_type = model.get("type", "BPE" if "merges" in model else None)
    if model_type != "BPE":
        raise ValueError(
            f"{label} holds a {model_type!r} model; lucidlm reads byte-level 'BPE' from tokenizer.json "
            "(for 'WordPiece' use lucidlm.tokenizers.wordpiece.WordPieceTokenizer)"
        )
    try:
        _check_bpe_options(model)
        pre = PreTokenizer(data.get("normalizer"), data.get("pre_tokenizer"))
        decoder = data.get("decoder")
        if decoder is not None and decoder.get("type") != "ByteLevel":
            raise ValueError(
                f"decoder {_type_name(decoder)} is not supported; byte-level BPE decodes with ByteLevel"
            )
        added, non_special = _added_tokens(data.get("added_tokens") or [], pre)
        vocab, merges = _vocab_and_merges(model, set(added.values()))
        pieces = set(vocab.values())
        missing = [b for b in range(256) if bytes([b]) not in pieces]
        if missing and model.get("unk_token") is not None:
            raise ValueError(
                f"the vocab lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]}) and HF would "
                f"encode them as unk_token {model['unk_token']!r}, which lucidlm does not support"
            )
        prefix, suffix = _post_processor_ids(data.get("post_processor"))
        config = _read_config(folder, added, vocab)
        bos_id = prefix[0] if len(prefix) == 1 else config.get("bos_id")
        eos_id = config.get("eos_id", suffix[0] if len(suffix) == 1 else None)
        metadata = {
            "format": "tokenizer.json",
            "hf": {k: data.get(k) for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder")},
            "non_special_added_tokens": sorted(non_special),
        }
        return PretrainedBPETokenizer(
            vocab,
            merges,
            pattern=pre.as_pattern(),
            special_tokens=added,
            ignore_merges=bool(model.get("ignore_merges", False)),
            allow_missing_bytes=True,  # without unk_token HF drops bytes that have no token
            name=folder.name if folder is not None else "tokenizer.json",
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=config.get("pad_id"),
            unk_id=config.get("unk_id"),
            add_bos=len(prefix) == 1 and prefix[0] == bos_id,
            add_eos=len(suffix) == 1 and suffix[0] == eos_id,
            chat_template=config.get("chat_template"),
            metadata=metadata,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{label} is not a valid tokenizer.json ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


def _read_json(source: str | os.PathLike | dict) -> tuple[dict, str, Path | None]:
    if isinstance(source, dict):
        return source, "<tokenizer.json dict>", None
    path = Path(source)
    data = read_json(path, "tokenizer.json")
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds JSON {type(data).__name__}, not a tokenizer.json object")
    return data, str(path), path.parent


def _check_bpe_options(model: dict) -> None:
    if model.get("dropout") not in (None, 0, 0.0):
        raise ValueError("BPE dropout is random; lucidlm encodes deterministically (set dropout to null)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"BPE {key}={model[key]!r} is not supported in byte-level BPE")
    if model.get("byte_fallback"):
        raise ValueError(
            "byte_fallback (SentencePiece-style BPE) is not supported; lucidlm reads byte-level BPE"
        )


def _added_tokens(entries: list[dict], pre: PreTokenizer) -> tuple[dict[str, int], set[str]]:
    added, non_special = {}, set()
    for entry in entries:
        content, token_id = entry["content"], int(entry["id"])
        for flag in ("lstrip", "rstrip", "single_word"):
            if entry.get(flag):
                raise ValueError(f"added token {content!r} has {flag}=true, which lucidlm does not support")
        if entry.get("normalized") and pre.normalizers and pre.normalize(content) != content:
            raise ValueError(f"added token {content!r} is matched after normalization, which changes it")
        added[content] = token_id
        if not entry.get("special", False):
            non_special.add(content)
    return added, non_special


def _vocab_and_merges(model: dict, added_ids: set[int]) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
    strings: dict[str, int] = model["vocab"]
    vocab: dict[int, bytes] = {}
    for token, token_id in strings.items():
        if token_id in added_ids:
            continue  # a special token that HF also lists in the model vocab
        if token_id in vocab:
            raise ValueError(f"vocab gives id {token_id} to two tokens")
        vocab[int(token_id)] = token_to_bytes(token)
    merges = []
    for rank, merge in enumerate(model.get("merges", [])):
        parts = merge.split(" ") if isinstance(merge, str) else merge
        if len(parts) != 2:
            raise ValueError(f"merge #{rank} {merge!r} is not two tokens ('a b' or [a, b])")
        a, b = parts
        if a not in strings or b not in strings or a + b not in strings:
            raise ValueError(f"merge #{rank} {merge!r} names a token that is not in the vocab")
        ids = (strings[a], strings[b], strings[a + b])
        if not added_ids.intersection(ids):  # merges into added tokens never run: HF cuts them out first
            merges.append(ids[:2])
    return vocab, merges


def _post_processor_ids(spec: dict | None) -> tuple[list[int], list[int]]:
    """The ids a post-processor puts before and after one sequence ([], [] if none or unknown)."""
    if spec is None:
        return [], []
    kind = spec.get("type")
    if kind == "Sequence":
        prefix, suffix = [], []
        for sub in spec.get("processors", []):
            p, s = _post_processor_ids(sub)
            prefix, suffix = p + prefix, suffix + s
        return prefix, suffix
    if kind == "TemplateProcessing":
        single = spec["single"]
        where = next((i for i, item in enumerate(single) if "Sequence" in item), None)
        if where is None:
            return [], []

        def ids(items: list[dict]) -> list[int]:
            return [i for item in items for i in spec["special_tokens"][item["SpecialToken"]["id"]]["ids"]]

        return ids(single[:where]), ids(single[where + 1 :])
    if kind in ("RobertaProcessing", "BertProcessing"):
        return [int(spec["cls"][1])], [int(spec["sep"][1])]
    return [], []  # ByteLevel (offsets only) and processors we do not interpret


def _read_config(folder: Path | None, added: dict[str, int], vocab: dict[int, bytes]) -> dict:
    """chat_template and special-token ids from tokenizer_config.json beside tokenizer.json, if any."""
    path = folder / "tokenizer_config.json" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    config = read_json(path)
    encoder = {piece: i for i, piece in vocab.items()}
    out: dict = {}
    for role in ("bos", "eos", "pad", "unk"):
        token = config.get(f"{role}_token")
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            token_id = added.get(token, encoder.get(token.encode("utf-8")))
            if token_id is not None:
                out[f"{role}_id"] = token_id
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if isinstance(template, str):
        out["chat_template"] = template
    return out


# ----------------------------------------------------------------------------------------------
# 4. Writing tokenizer.json


def merges_from_ranks(vocab: dict[int, bytes]) -> list[tuple[int, int]]:
    """An HF merge list that reproduces tiktoken's ``ranks`` rule ("a+b may merge if it is a
    token; lowest rank first"): for every token, every split into two tokens is a merge, ordered by
    the token's rank (then by the ranks of the halves, as ``transformers`` does).

    Exact together with ``ignore_merges`` (a chunk that is a token is returned whole), except for
    one rare tie: two *different* adjacent pairs that make the same token. tiktoken merges the
    leftmost; HF merges the one listed first.

    >>> v = {0: b"a", 1: b"b", 2: b"ab", 3: b"bab"}
    >>> merges_from_ranks(v)
    [(0, 1), (1, 2)]
    """
    encoder = {piece: i for i, piece in vocab.items()}
    merges = []
    for _, piece in sorted(vocab.items()):
        merges += sorted(
            (encoder[piece[:k]], encoder[piece[k:]])
            for k in range(1, len(piece))
            if piece[:k] in encoder and piece[k:] in encoder
        )
    return merges


def to_tokenizer_json(tokenizer: BPETokenizer, path: str | os.PathLike | None = None) -> dict:
    """Describe ``tokenizer`` as a Hugging Face tokenizer.json (returned; also written to ``path``).

    ``merges`` mode is written as it is. ``ranks`` mode (tiktoken files) becomes
    ``merges_from_ranks`` plus ``ignore_merges``: see there for the one rare tie where HF and
    tiktoken can differ. The split regex becomes ``Split(Regex(p)) + ByteLevel(use_regex=false)``
    with ``p`` in Oniguruma's spelling; a tokenizer read from a tokenizer.json or GGUF keeps its
    original normalizer, pre-tokenizer and post-processor.
    """
    if tokenizer.merges is None:
        merges, ignore_merges = merges_from_ranks(tokenizer.vocab), True
    else:
        merges, ignore_merges = tokenizer.merges, tokenizer.ignore_merges
    metadata = getattr(tokenizer, "metadata", {})
    sections = dict(metadata.get("hf") or {})
    if not sections:
        normalizer, pre_tokenizer = _pre_tokenizer_json(tokenizer.pattern)
        sections = {
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": _template_json(tokenizer),
        }
    non_special = set(metadata.get("non_special_added_tokens", ()))
    tokens = tokenizer.vocab
    vocab = {bytes_to_token(piece): i for i, piece in sorted(tokens.items())}
    # HF keeps an added token's id only if the token is also in the model vocab (otherwise it
    # renumbers it after the vocab), so list the special tokens there too, as HF's own files do.
    for text, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1]):
        vocab.setdefault(text, i)
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": text,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": text not in non_special,
            }
            for text, i in sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])
        ],
        "normalizer": sections.get("normalizer"),
        "pre_tokenizer": sections.get("pre_tokenizer"),
        "post_processor": sections.get("post_processor"),
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": ignore_merges,
            "vocab": vocab,
            # "a b" strings: byte-level tokens never contain a space, and every HF version reads them
            "merges": [f"{bytes_to_token(tokens[a])} {bytes_to_token(tokens[b])}" for a, b in merges],
        },
    }
    if path is not None:
        write_json_atomic(path, data, indent=2)
    return data


def _pre_tokenizer_json(pattern) -> tuple[dict | None, dict]:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    if isinstance(pattern, PreTokenizer):
        return pattern.normalizer_json, pattern.pre_tokenizer_json
    if callable(pattern):
        raise ValueError(f"cannot describe the pre-tokenizer {pattern!r} in tokenizer.json")
    if pattern is None:
        return None, byte_level
    if pattern == HF_BYTELEVEL_PATTERN:
        return None, {**byte_level, "use_regex": True}
    for individual, composed in DIGITS_THEN_BYTELEVEL.items():
        if pattern == composed:
            digits = {"type": "Digits", "individual_digits": individual}
            return None, {"type": "Sequence", "pretokenizers": [digits, {**byte_level, "use_regex": True}]}
    # BPETokenizer keeps only what findall matches; for a regex that matches everywhere that is
    # HF's usual Isolated split, otherwise HF's Removed split of the *inverted* regex.
    behavior, invert = ("Isolated", False) if pattern in COVERING_PATTERNS else ("Removed", True)
    split = {
        "type": "Split",
        "pattern": {"Regex": python_to_onig(pattern)},
        "behavior": behavior,
        "invert": invert,
    }
    return None, {"type": "Sequence", "pretokenizers": [split, byte_level]}


def _template_json(tokenizer: BPETokenizer) -> dict | None:
    """TemplateProcessing for a PretrainedBPETokenizer that adds BOS/EOS (e.g. read from GGUF)."""
    add_bos, add_eos = getattr(tokenizer, "add_bos", False), getattr(tokenizer, "add_eos", False)
    if not (add_bos or add_eos):
        return None
    single, special = [], {}
    for wanted, token_id in ((add_bos, tokenizer.bos_id), (None, None), (add_eos, tokenizer.eos_id)):
        if token_id is None and wanted is None:
            single.append({"Sequence": {"id": "A", "type_id": 0}})
        elif wanted:
            text = tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")
            single.append({"SpecialToken": {"id": text, "type_id": 0}})
            special[text] = {"id": text, "ids": [token_id], "tokens": [text]}
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}}]
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special}
