"""``lucidlm demo``: the main job on the bundled data.

For now (before training exists) it tells the tokenizer story on Tiny Shakespeare:
1. train a byte-level BPE tokenizer on 90% of the text,
2. measure how well it compresses the held-out 10%,
3. compare with OpenAI's cl100k_base (GPT-4) and o200k_base (GPT-4o) on the same text,
4. show, in color, how each one cuts the same passage.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

PASSAGE = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    "It is the east, and Juliet is the sun. 🌅 1599年, «Roméo»"
)


def run_demo(out_dir: str | Path = "runs/demo", vocab_size: int = 1024, color: bool | None = None) -> dict:
    from lucidlm.tokenizers import load_tokenizer, train_bpe
    from lucidlm.tokenizers.corpus import tiny_shakespeare
    from lucidlm.tokenizers.show import format_stats, render_tokens, token_stats

    if color is None:
        color = sys.stdout.isatty()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = tiny_shakespeare()
    split = int(len(text) * 0.9)
    train_text, held_out = text[:split], text[split:]
    print(f"Tiny Shakespeare: {len(text.encode()):,} bytes; training on the first 90%, measuring on the last 10%.\n")

    print(f"1. Training a byte-level BPE tokenizer: 256 byte tokens + {vocab_size - 257} merges + <|endoftext|>")
    start = time.perf_counter()
    ours = train_bpe(train_text, vocab_size, pattern="cl100k", special_tokens={"<|endoftext|>": None}, name="shakespeare-bpe")
    seconds = time.perf_counter() - start
    path = ours.save(out_dir / "tokenizer.json")
    print(f"   {len(ours.merges)} merges learned in {seconds:.2f} s -> {path} (readable list: {path.with_suffix('.vocab')})")
    first = ", ".join(repr(ours.token_bytes(256 + i).decode("utf-8", "replace")) for i in range(8))
    print(f"   first merges: {first}\n")

    print("2. Compression on the held-out text")
    results = {"ours": token_stats(ours, held_out, top=8)}
    print(format_stats(ours, results["ours"], name="shakespeare-bpe (ours)"))

    tokenizers = {"shakespeare-bpe": ours}
    for name in ("cl100k_base", "o200k_base"):
        try:
            tokenizers[name] = load_tokenizer(name)
        except (RuntimeError, FileNotFoundError, ValueError) as exc:
            print(f"\n   ({name} unavailable, skipped: {exc})")
    print("\n3. The same text with OpenAI's tokenizers (trained on far more, and more varied, text)")
    print(f"   {'tokenizer':<18}{'vocab':>9}{'tokens':>10}{'bytes/token':>13}{'tokens/word':>13}")
    for name, tok in tokenizers.items():
        stats = results.get("ours") if tok is ours else token_stats(tok, held_out)
        results[name] = stats
        print(f"   {name:<18}{tok.vocab_size:>9,}{stats.n_tokens:>10,}{stats.bytes_per_token:>13.3f}{stats.tokens_per_word:>13.3f}")

    print("\n4. How each one cuts a passage (each color is one token; · is a space, ↵ a newline;")
    print("   a character cut across tokens is shown whole, then its bytes per token ⟨..|..⟩)")
    for name, tok in tokenizers.items():
        n = len(tok.encode(PASSAGE))
        print(f"\n   {name} ({n} tokens):")
        print("   " + render_tokens(tok, PASSAGE, color=color).replace("\n", "\n   "))

    activate = ""
    if shutil.which("lucidlm") is None:  # run as .venv/bin/lucidlm (make demo): say how to reach it
        activate = f"  source {Path(sys.prefix) / 'bin' / 'activate'}    # puts lucidlm on your PATH\n"
    print(
        "\nNext:\n"
        f"{activate}"
        f"  lucidlm tokenizer show -t {path} \"Now is the winter of our discontent\"\n"
        f"  lucidlm tokenizer stats -t {path},cl100k_base --file YOUR_TEXT.txt\n"
        "  lucidlm tokenizer train YOUR_TEXT.txt --vocab-size 4096 -o my-tokenizer.json\n"
        "  make test    # the test suite; make bench  # speed against tiktoken and HF tokenizers"
    )
    return results


def cmd_demo(args: argparse.Namespace) -> int:
    color = None if args.color == "auto" else args.color == "always"
    run_demo(args.out, vocab_size=args.vocab_size, color=color)
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the main job on the bundled Tiny Shakespeare")
    p.add_argument("--out", default="runs/demo", help="where to write what the demo makes")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(func=cmd_demo)
