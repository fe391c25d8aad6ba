"""Pre-tokenization split patterns.

Before byte-pair merging, text is cut into chunks with a regular expression, and merges never
cross a chunk boundary. That is why " dog" and "dog." share the token " dog": the pattern keeps
letters, digits, punctuation and whitespace apart. The patterns below are the ones OpenAI's
tokenizers use (see tiktoken's ``tiktoken_ext/openai_public.py``); they need the third-party
``regex`` module for ``\\p{...}`` classes and possessive quantifiers.
"""

from __future__ import annotations

# GPT-2 (2019): contractions, letters, digits, other symbols, whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# cl100k_base (GPT-3.5/GPT-4): case-insensitive contractions, digits in groups of at most three,
# a leading non-letter may join a word (" hello", "_hello"), newlines split from other whitespace.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# o200k_base (GPT-4o): words split at case changes (camelCase -> camel, Case) and contractions
# attached to their word.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# Names accepted wherever a pattern is expected. ``None`` / "none" means: no split, the whole text
# is one chunk (merges may then cross spaces, as in SentencePiece-style tokenizers).
PATTERNS: dict[str, str] = {
    "gpt2": GPT2_PATTERN,
    "cl100k": CL100K_PATTERN,
    "gpt4": CL100K_PATTERN,
    "o200k": O200K_PATTERN,
}


def resolve_pattern(pattern: str | None) -> str | None:
    """Map a preset name ("gpt2", "cl100k"/"gpt4", "o200k", "none") to its regex; pass a regex through."""
    if pattern is None or pattern == "none":
        return None
    return PATTERNS.get(pattern, pattern)
