"""WordPiece settings as a Hugging Face tokenizer.json holds them.

The added tokens and the post-processing template (single text, pair of texts), and the reading and
writing of every tokenizer.json section besides the vocab: normalizer, pre_tokenizer, post_processor,
decoder, truncation, padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lucidlm.tokenizers.wordpiece import WordPieceTokenizer

# ----------------------------------------------------------------------------------------------
# Added tokens and templates


@dataclass(frozen=True)
class AddedToken:
    """A token matched verbatim in the input before any other step (HF ``added_tokens``).

    ``normalized=False`` (BERT's specials): matched in the raw text, so "[SEP]" is the separator
    but "[sep]" is three ordinary words. ``special=True``: dropped by ``decode(skip_special_tokens=True)``.
    """

    content: str
    id: int
    special: bool = True
    normalized: bool = False


@dataclass(frozen=True)
class TemplatePiece:
    """One slot of a post-processing template: a special token, or sequence "A" or "B"."""

    sequence: str | None  # "A", "B", or None for a special token
    token: str | None  # the special token's text (None for a sequence slot)
    ids: tuple[int, ...]  # the special token's ids (empty for a sequence slot)
    type_id: int  # the token_type_id given to every token of this slot


def bert_template(cls_id: int, sep_id: int, cls_token: str = "[CLS]", sep_token: str = "[SEP]") -> dict:
    """BERT's template: single [CLS] A [SEP]; pair [CLS] A [SEP] B [SEP] with B's part typed 1."""
    cls, sep = TemplatePiece(None, cls_token, (cls_id,), 0), TemplatePiece(None, sep_token, (sep_id,), 0)
    a, b = TemplatePiece("A", None, (), 0), TemplatePiece("B", None, (), 1)
    return {"single": [cls, a, sep], "pair": [cls, a, sep, b, TemplatePiece(None, sep_token, (sep_id,), 1)]}


NO_TEMPLATE = {
    "single": [TemplatePiece("A", None, (), 0)],
    "pair": [TemplatePiece("A", None, (), 0), TemplatePiece("B", None, (), 1)],
}


# ----------------------------------------------------------------------------------------------
# Reading and writing tokenizer.json


def _settings_from_json(data: dict, model: dict) -> dict:
    """tokenizer.json sections -> WordPieceTokenizer keyword arguments (all but the vocab)."""
    kw: dict = {
        "unk_token": model.get("unk_token", "[UNK]"),
        "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": model.get("max_input_chars_per_word", 100),
    }
    normalizer = data.get("normalizer")
    if normalizer is None:
        kw.update(lowercase=False, strip_accents=False, handle_chinese_chars=False, clean_text=False)
    elif normalizer.get("type") == "BertNormalizer":
        kw.update(
            lowercase=normalizer.get("lowercase", True),
            strip_accents=normalizer.get("strip_accents"),
            handle_chinese_chars=normalizer.get("handle_chinese_chars", True),
            clean_text=normalizer.get("clean_text", True),
        )
    else:
        raise ValueError(f"normalizer {normalizer.get('type')!r} is not supported (only BertNormalizer)")
    pre = data.get("pre_tokenizer")
    if not pre or pre.get("type") != "BertPreTokenizer":
        raise ValueError(
            f"pre_tokenizer {pre and pre.get('type')!r} is not supported (only BertPreTokenizer)"
        )

    added = []
    for entry in data.get("added_tokens") or []:
        if entry.get("lstrip") or entry.get("rstrip") or entry.get("single_word"):
            raise ValueError(
                f"added token {entry['content']!r} uses lstrip/rstrip/single_word, which is not supported"
            )
        added.append(
            AddedToken(
                entry["content"], entry["id"], entry.get("special", False), entry.get("normalized", True)
            )
        )
    kw["added_tokens"] = added

    post = data.get("post_processor")
    if post is None:
        kw["template"] = NO_TEMPLATE
    elif post.get("type") == "TemplateProcessing":
        specials = post.get("special_tokens", {})

        def parse(items: list[dict]) -> list[TemplatePiece]:
            pieces = []
            for item in items:
                if "Sequence" in item:
                    pieces.append(
                        TemplatePiece(item["Sequence"]["id"], None, (), item["Sequence"]["type_id"])
                    )
                else:
                    name = item["SpecialToken"]["id"]
                    ids = tuple(specials[name]["ids"])
                    pieces.append(TemplatePiece(None, name, ids, item["SpecialToken"]["type_id"]))
            return pieces

        kw["template"] = {"single": parse(post["single"]), "pair": parse(post["pair"])}
    elif post.get("type") == "BertProcessing":  # older files: {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
        (sep, sep_id), (cls_token, cls_id) = post["sep"], post["cls"]
        kw["template"] = bert_template(cls_id, sep_id, cls_token, sep)
    else:
        raise ValueError(
            f"post_processor {post.get('type')!r} is not supported (TemplateProcessing, BertProcessing)"
        )

    decoder = data.get("decoder")
    if decoder is None:
        kw["decoder"] = "spaces"
    elif decoder.get("type") == "WordPiece":
        kw["decoder_cleanup"] = decoder.get("cleanup", True)
    else:
        raise ValueError(f"decoder {decoder.get('type')!r} is not supported (only WordPiece)")

    truncation = data.get("truncation")
    kw["max_length"] = None if truncation is None else truncation["max_length"]
    if truncation is not None:
        kw["truncation_strategy"] = _FROM_HF_STRATEGY[truncation.get("strategy", "LongestFirst")]
        kw["truncation_side"] = truncation.get("direction", "Right").lower()
    padding = data.get("padding")
    if padding is None:
        kw["padding"] = "longest"  # HF would return ragged rows; a model needs a rectangle
    else:
        strategy = padding.get("strategy", "BatchLongest")
        kw["padding"] = strategy["Fixed"] if isinstance(strategy, dict) else "longest"
        kw["padding_side"] = padding.get("direction", "Right").lower()
        kw["pad_to_multiple_of"] = padding.get("pad_to_multiple_of")
        kw["pad_token"] = padding.get("pad_token", "[PAD]")
        kw["pad_type_id"] = padding.get("pad_type_id", 0)
    return kw


_FROM_HF_STRATEGY = {"LongestFirst": "longest_first", "OnlyFirst": "only_first", "OnlySecond": "only_second"}


def _settings_to_json(tok: WordPieceTokenizer) -> dict:
    """The inverse of _settings_from_json, in the layout ``tokenizers`` writes."""

    def template(pieces: list[TemplatePiece]) -> list[dict]:
        return [
            {"Sequence": {"id": p.sequence, "type_id": p.type_id}}
            if p.sequence
            else {"SpecialToken": {"id": p.token, "type_id": p.type_id}}
            for p in pieces
        ]

    specials = {
        p.token: {"id": p.token, "ids": list(p.ids), "tokens": [tok.id_to_token(i) for i in p.ids]}
        for p in tok.template["single"] + tok.template["pair"]
        if p.sequence is None
    }
    truncation = None
    if tok.max_length is not None:
        strategy = {v: k for k, v in _FROM_HF_STRATEGY.items()}[tok.truncation_strategy]
        truncation = {
            "direction": tok.truncation_side.title(),
            "max_length": tok.max_length,
            "strategy": strategy,
            "stride": 0,
        }
    padding = None
    if tok.padding is not False and tok.padding is not None:
        longest = tok.padding is True or tok.padding == "longest"
        fixed = tok.max_length if tok.padding == "max_length" else tok.padding
        padding = {
            "strategy": "BatchLongest" if longest else {"Fixed": fixed},
            "direction": tok.padding_side.title(),
            "pad_to_multiple_of": tok.pad_to_multiple_of,
            "pad_id": tok.pad_token_id,
            "pad_type_id": tok.pad_type_id,
            "pad_token": tok.pad_token,
        }
    added = [
        {"id": a.id, "content": a.content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": a.normalized, "special": a.special}
        for a in tok.added_tokens
    ]  # fmt: skip
    return {
        "version": "1.0",
        "truncation": truncation,
        "padding": padding,
        "added_tokens": added,
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": tok.clean_text,
            "handle_chinese_chars": tok.handle_chinese_chars,
            "strip_accents": tok.strip_accents,
            "lowercase": tok.lowercase,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": template(tok.template["single"]),
            "pair": template(tok.template["pair"]),
            "special_tokens": specials,
        },
        "decoder": None
        if tok.decoder == "spaces"
        else {"type": "WordPiece", "prefix": tok.continuing_subword_prefix, "cleanup": tok.decoder_cleanup},
        "model": {
            "type": "WordPiece",
            "unk_token": tok.unk_token,
            "continuing_subword_prefix": tok.continuing_subword_prefix,
            "max_input_chars_per_word": tok.max_input_chars_per_word,
            "vocab": tok.vocab,
        },
    }
