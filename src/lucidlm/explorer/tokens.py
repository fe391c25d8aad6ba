"""The Tokens panel's numbers: each token of a text with its id, its bytes and the characters it
covers, and the BPE merges that build one token.

A byte-level BPE token is a run of *bytes*: the ids' bytes joined are exactly the text's UTF-8
(special tokens aside), so every token maps back to a span of characters. A token that holds only
part of a character (one emoji cut in two) is sent as its bytes (``"hex": "f0 9f"``) with no text,
never as U+FFFD. WordPiece normalises the text first (lowercase, accents, [CLS] ... [SEP]), so its
pieces are sent as strings without spans.
"""

from __future__ import annotations

import re
from itertools import accumulate

import numpy as np

from lucidlm.generate.chat import render_chat
from lucidlm.generate.decode import encode_prompt, with_prompt_specials
from lucidlm.tokenizers import BPETokenizer, WordPieceTokenizer
from lucidlm.tokenizers.bpe import NO_MERGE, bpe_merge_reference


def _utf16_index(text: str) -> np.ndarray:
    """byte offset -> offset in UTF-16 code units of the character that byte belongs to, one entry
    per UTF-8 byte plus the end. The page is JavaScript, whose strings count UTF-16 units (an emoji
    is 2), so spans are sent in those: ``_utf16_index("aé😀")`` = [0, 1, 1, 2, 2, 2, 2, 4].
    (numpy: 10,000 characters in ~0.2 ms.)"""
    code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    n_bytes = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)  # UTF-8 length
    units = np.concatenate([[0], np.cumsum(1 + (code_points >= 0x10000))])  # UTF-16 offset of each character
    return np.append(np.repeat(units[:-1], n_bytes), units[-1])


# Typing in a long text changes one line at a time. The tokenizers the Explorer lists never make a
# token across a single newline that has a non-space on both sides ("end.\nNext"): their split
# patterns have no lookbehind, a chunk never starts with a newline, and WordPiece splits at every
# space. (After two whitespace characters, GPT-2's pattern gives "\n\n" before a letter as two
# chunks but as one at the end of a block, so no cut there.) The text is encoded in blocks cut at
# those newlines, each block looked up in a cache: a keystroke re-encodes one line.
# tests/test_explorer_api.py checks block encoding == whole encoding on random texts.
_BLOCKS = re.compile(r"(?<=\S\n)(?=\S)")
BLOCK_CACHE_MAX = 50_000


class BlockEncoder:
    """``encode(text)`` -> the ordinary ids of ``text`` (special-token text becomes its id, no BOS,
    no [CLS]/[SEP]), line block by line block through a cache (see above)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def _encode_block(self, block: str) -> list[int]:
        tok = self.tokenizer
        if isinstance(tok, WordPieceTokenizer):
            return tok.encode(block, add_special_tokens=False)
        return tok.encode(block, allowed_special="all")

    def encode(self, text: str) -> list[int]:
        cache = self.cache
        if len(cache) > BLOCK_CACHE_MAX:
            cache.clear()
        ids: list[int] = []
        for block in _BLOCKS.split(text):
            got = cache.get(block)
            if got is None:
                got = cache[block] = self._encode_block(block)
            ids += got
        return ids


def prompt_ids(tokenizer, text: str, *, add_special: bool = True, blocks: BlockEncoder | None = None) -> list[int]:
    """The ids the model reads for ``text``: ``encode_prompt``'s, or the same through ``blocks``."""
    if blocks is None or not isinstance(tokenizer, (BPETokenizer, WordPieceTokenizer)):
        if isinstance(tokenizer, WordPieceTokenizer):
            ids = tokenizer.encode(text)
            return ids if len(ids) > 2 else []  # [CLS] [SEP] alone is no input
        return encode_prompt(tokenizer, text, add_special=add_special)
    ids = blocks.encode(text)
    if isinstance(tokenizer, WordPieceTokenizer):  # [CLS] text [SEP]; [CLS] [SEP] alone is no input
        cls, sep = tokenizer.encode("")  # the template around an empty text
        return [cls, *ids, sep] if ids else []
    return with_prompt_specials(tokenizer, ids) if add_special else ids


def token_spans(tokenizer, text: str, *, add_special: bool = True, blocks: BlockEncoder | None = None) -> dict:
    """The tokens of ``text``, column by column (a 10,000-character text is ~2,500 tokens: columns
    of numbers serialise ~10x faster than a dict per token, which keeps the panel live as you type):

    - ``ids``: the ids the model reads (``encode_prompt``: special-token text becomes its id; BOS
      when the tokenizer's files ask for it), so their count equals the server's ``usage``;
    - ``starts``, ``ends``: the characters of ``text`` each token covers, in UTF-16 code units as
      JavaScript counts them (None when it covers none: BOS added by the tokenizer; WordPiece,
      which rewrites the text first); a token holding part of a character covers that character;
    - ``other``: index -> ``{"text", "hex"}`` for every token whose text is not simply
      ``text[start:end]``: a part of a character (``text`` None, its bytes in hex: never U+FFFD),
      BOS, a byte the vocabulary lacks;
    - ``pieces``: the token strings of a tokenizer whose tokens are not runs of the text's bytes
      (WordPiece; SMILES or characters that do not spell the text), one per token;
    - ``special``: the indices of special tokens (<|im_start|>, [CLS], BOS).
    """
    ids = prompt_ids(tokenizer, text, add_special=add_special, blocks=blocks)
    if isinstance(tokenizer, WordPieceTokenizer):
        specials = set(tokenizer.special_tokens.values())
        return {"ids": ids, "starts": [None] * len(ids), "ends": [None] * len(ids), "other": {},
                "pieces": [tokenizer.id_to_token(i) for i in ids],
                "special": [k for k, i in enumerate(ids) if i in specials]}
    if not hasattr(tokenizer, "token_bytes"):  # characters, SMILES: one string per token
        pieces = [tokenizer.id_to_token(i) for i in ids]
        if "".join(pieces) == text:  # spans in UTF-16 units (an emoji is 2), as for BPE
            units = [len(p.encode("utf-16-le", "surrogatepass")) // 2 for p in pieces]
            ends = list(accumulate(units))
            starts = [e - n for e, n in zip(ends, units)]
            return {"ids": ids, "starts": starts, "ends": ends, "other": {}, "special": []}
        return {"ids": ids, "starts": [None] * len(ids), "ends": [None] * len(ids), "other": {}, "pieces": pieces,
                "special": [k for k, p in enumerate(pieces) if p in getattr(tokenizer, "special_tokens", ())]}
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    pieces = [tokenizer.token_bytes(i) for i in ids]
    data = text.encode("utf-8", "surrogatepass")
    special = [k for k, i in enumerate(ids) if i in specials]
    if b"".join(pieces) == data:  # every token is the next run of the text's bytes (the usual case)
        starts, ends = _spans(text, data, pieces)
        other = {k: {"text": None, "hex": p.hex(" ")} for k, p in enumerate(pieces)
                 if not p.isascii() and not _is_utf8(p)}  # parts of a character: their bytes
        return {"ids": ids, "starts": starts, "ends": ends, "other": other, "special": special}
    # BOS added by the tokenizer, or a byte the vocabulary lacks (dropped, as HF's BPE does): walk
    # the tokens along the text, one at a time
    unit_of = _utf16_index(text).tolist()
    starts, ends, other = [], [], {}
    pos = 0  # byte offset in the text
    for k, piece in enumerate(pieces):
        if piece and data.startswith(piece, pos):  # the token is the next bytes of the text
            starts.append(unit_of[pos])
            ends.append(unit_of[pos + len(piece)] if unit_of[pos + len(piece)] > unit_of[pos + len(piece) - 1]
                        else _next_char(unit_of, pos + len(piece) - 1))
            pos += len(piece)
            if piece.isascii() or _is_utf8(piece):
                continue  # its text is text[start:end]
        else:
            starts.append(None)
            ends.append(None)
        other[k] = {"text": piece.decode("utf-8") if _is_utf8(piece) else None, "hex": piece.hex(" ")}
    return {"ids": ids, "starts": starts, "ends": ends, "other": other, "special": special}


def _spans(text: str, data: bytes, pieces: list[bytes]) -> tuple[list[int], list[int]]:
    """(starts, ends) in UTF-16 units of tokens whose bytes, joined, are exactly ``data``: a token
    that starts inside a character starts at that character; one that ends inside it, ends after it."""
    ends_b = np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))  # byte offsets
    starts_b = np.concatenate([[0], ends_b[:-1]]).astype(np.int64)
    if text.isascii():  # one byte, one unit
        return starts_b.tolist(), ends_b.tolist()
    unit_of = _utf16_index(text)  # byte -> UTF-16 offset of its character
    buf = np.frombuffer(data, dtype=np.uint8)
    boundary = np.flatnonzero((buf & 0xC0) != 0x80)  # bytes that start a character
    boundary = np.append(boundary, len(data))
    ceil = boundary[np.searchsorted(boundary, ends_b)]  # the first character boundary at or after each end
    return unit_of[starts_b].tolist(), unit_of[ceil].tolist()


def _next_char(unit_of: list[int], pos: int) -> int:
    """The UTF-16 offset just after the character that byte ``pos`` belongs to (a token that ends
    inside a character still covers that whole character)."""
    while pos + 1 < len(unit_of) and unit_of[pos + 1] == unit_of[pos]:
        pos += 1
    return unit_of[pos + 1]


def _is_utf8(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def expand(result: dict, text: str) -> list[dict]:
    """``token_spans``' columns as one dict per token (``id``, ``text``, ``hex``, ``start``,
    ``end``, ``special``): what the page builds from them, for Python readers and tests.
    ``hex`` is None where the text says it all."""
    special = set(result["special"])
    units = text.encode("utf-16-le", "surrogatepass")  # offsets count UTF-16 units, 2 bytes each
    out = []
    pieces = result.get("pieces")
    for k, (i, start, end) in enumerate(zip(result["ids"], result["starts"], result["ends"])):
        o = result["other"].get(k) or result["other"].get(str(k))  # JSON turns the int keys into str
        if pieces is not None:
            shown = pieces[k]
        else:
            shown = o["text"] if o else units[2 * start:2 * end].decode("utf-16-le", "surrogatepass")
        out.append({"id": i, "start": start, "end": end, "special": k in special, "text": shown,
                    "hex": o["hex"] if o else None})
    return out


def chat_prompt(tokenizer, messages: list[dict], template: str | None) -> str:
    """The prompt text a chat request becomes, exactly as the server builds it (the template
    renders the special tokens as text; ``add_generation_prompt`` opens the assistant's turn)."""
    template = template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError("this tokenizer has no chat template: chat mode needs a model's tokenizer that ships one "
                         "(smollm2-135m-instruct does)")
    return render_chat(messages, template=template, tokenizer=tokenizer, add_generation_prompt=True)


def merge_steps(tokenizer, token_id: int) -> dict:
    """How BPE builds one token from its bytes: the merges applied in rank order, each with the
    parts before it. Replays the textbook loop (``bpe_merge_reference``): repeatedly merge the
    adjacent pair with the lowest rank.

    Returns ``{"bytes": [...], "steps": [{"parts": [hex, ...], "merge": index, "rank": r}, ...],
    "final": [hex, ...]}``: ``merge`` is the index in ``parts`` of the pair's left part."""
    if not isinstance(tokenizer, BPETokenizer):
        raise ValueError("merge replay needs a byte-level BPE tokenizer; WordPiece, character and SMILES "
                         "tokens are looked up whole, not built by merges")
    if token_id in set(tokenizer.special_tokens.values()):
        raise ValueError(f"token {token_id} is a special token: it is added whole, never built by merges")
    piece = tokenizer.token_bytes(token_id)
    priority = tokenizer.merge_priority()
    parts = [bytes([b]) for b in piece]
    steps = []
    while len(parts) > 1:
        ranks = [priority(a, b) for a, b in zip(parts, parts[1:])]
        best = min(range(len(ranks)), key=ranks.__getitem__)
        if ranks[best] == NO_MERGE:
            break
        steps.append({"parts": [p.hex(" ") for p in parts], "merge": best, "rank": ranks[best]})
        parts = parts[:best] + [parts[best] + parts[best + 1]] + parts[best + 2:]
    assert parts == bpe_merge_reference(piece, priority)  # the same loop the encoder's reference runs
    return {"bytes": piece.hex(" "), "steps": steps, "final": [p.hex(" ") for p in parts]}
