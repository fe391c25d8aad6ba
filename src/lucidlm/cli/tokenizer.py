"""``lucidlm tokenizer train | encode | decode | show | stats``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _read_text(args: argparse.Namespace) -> str:
    if getattr(args, "file", None):
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    if args.text is not None:
        return args.text
    if sys.stdin.isatty():
        raise ValueError("give the text as an argument, with --file, or on standard input")
    return sys.stdin.read()


def _load(args: argparse.Namespace):
    from lucidlm.tokenizers import load_tokenizer

    return load_tokenizer(args.tokenizer)


def _allowed(args: argparse.Namespace):
    if args.allowed_special == "all":
        return "all"
    return set(args.allowed_special.split(",")) if args.allowed_special else ()


def cmd_train(args: argparse.Namespace) -> int:
    from lucidlm.tokenizers import train_bpe, train_bpe_reference
    from lucidlm.tokenizers.training import iter_file_blocks

    specials = {s: None for s in args.special}
    paths = [Path(p) for p in args.input]
    if all(p.is_file() and p.stat().st_size == 0 for p in paths):
        raise ValueError(f"the training text is empty: {', '.join(map(str, paths))} (0 bytes)")
    start = time.perf_counter()
    if args.reference:
        text = "".join(iter_file_blocks(args.input))
        tok = train_bpe_reference(text, args.vocab_size, pattern=args.pattern, special_tokens=specials, name=args.name)
    else:
        tok = train_bpe(
            files=args.input,
            vocab_size=args.vocab_size,
            pattern=args.pattern,
            special_tokens=specials,
            min_frequency=args.min_frequency,
            progress=not args.quiet,
            name=args.name,
        )
    elapsed = time.perf_counter() - start
    out = Path(args.output)
    if args.format == "hf":
        from lucidlm.tokenizers.hf import to_tokenizer_json

        to_tokenizer_json(tok, out)
    else:
        tok.save(out)
    print(f"trained {len(tok.merges)} merges (vocab {tok.vocab_size}) in {elapsed:.2f} s -> {out}")
    asked = args.vocab_size - 256 - len(specials)
    if len(tok.merges) < asked:
        # Not an error: the tokenizer works, it is only smaller than asked. But say why.
        if args.min_frequency > 1 and not args.reference:
            why = f"no pair of tokens occurs {args.min_frequency} times (--min-frequency) any more"
        else:
            why = "every chunk of the text (a word, a number, a run of spaces) is already one token"
        print(
            f"lucidlm: warning: learned only {len(tok.merges)} of the {asked} merges asked for "
            f"(--vocab-size {args.vocab_size}): the text is too small, {why}. "
            f"Train on more text, or ask for --vocab-size {tok.vocab_size}.",
            file=sys.stderr,
        )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from lucidlm.tokenizers.show import encode_for_display

    tok = _load(args)
    ids = encode_for_display(tok, _read_text(args), _allowed(args))
    print(json.dumps(ids) if args.json else " ".join(map(str, ids)))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    tok = _load(args)
    raw = " ".join(args.ids) if args.ids else sys.stdin.read()
    try:
        ids = json.loads(raw) if raw.strip().startswith("[") else [int(x) for x in raw.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"ids must be integers separated by spaces or a JSON list, got {raw[:60]!r}") from None
    text = tok.decode(ids, errors="strict") if args.strict else tok.decode(ids)
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lucidlm.tokenizers.show import encode_for_display, render_tokens, token_label

    tok = _load(args)
    text = _read_text(args)
    color = sys.stdout.isatty() if args.color == "auto" else args.color == "always"
    print(render_tokens(tok, text, color=color, whitespace=not args.raw, allowed_special=_allowed(args)))
    ids = encode_for_display(tok, text, _allowed(args))
    print(f"\n{len(text.encode('utf-8'))} bytes -> {len(ids)} tokens")
    if args.ids:
        for i in ids:
            print(f"{i:>8}  {token_label(tok, i)}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from lucidlm.tokenizers.show import format_stats, token_stats

    text = _read_text(args)
    for name in args.tokenizer.split(","):
        args_one = argparse.Namespace(**{**vars(args), "tokenizer": name})
        tok = _load(args_one)
        print(format_stats(tok, token_stats(tok, text, top=args.top), name=name))
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("tokenizer", help="train, run and inspect tokenizers")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    def with_tokenizer(sp, default="cl100k_base"):
        sp.add_argument(
            "--tokenizer", "-t", default=default,
            help="registered name (cl100k_base, o200k_base, gpt2, smollm2-135m-instruct, all-minilm-l6-v2) or a file",
        )

    def with_text(sp):
        sp.add_argument("text", nargs="?", help="the text (or use --file, or standard input)")
        sp.add_argument("--file", "-f", help="read the text from this UTF-8 file")
        sp.add_argument(
            "--allowed-special", default="all",
            help="special tokens recognised in the text: 'all', '' for none, or a comma-separated list",
        )

    t = sub.add_parser("train", help="train a byte-level BPE tokenizer on text files")
    t.add_argument("input", nargs="+", help="UTF-8 text files (streamed, may be larger than memory)")
    t.add_argument("--vocab-size", type=int, default=1024, help="256 byte tokens + merges + special tokens")
    t.add_argument("--pattern", default="cl100k", help="split regex or preset: gpt2, cl100k, o200k, none")
    t.add_argument("--special", action="append", default=[], help="a special token to add (repeatable)")
    t.add_argument("--min-frequency", type=int, default=1, help="stop when the best pair occurs fewer times")
    t.add_argument("--output", "-o", required=True, help="where to write the tokenizer")
    t.add_argument("--format", choices=["lucidlm", "hf"], default="lucidlm", help="lucidlm JSON or HF tokenizer.json")
    t.add_argument("--name", default="bpe", help="a name stored in the file")
    t.add_argument("--reference", action="store_true", help="use the slow textbook trainer (same merges)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("encode", help="text -> token ids")
    with_tokenizer(e)
    with_text(e)
    e.add_argument("--json", action="store_true", help="print a JSON list")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="token ids -> text")
    with_tokenizer(d)
    d.add_argument("ids", nargs="*", help="ids (or a JSON list, or standard input)")
    d.add_argument("--strict", action="store_true", help="fail on invalid UTF-8 instead of printing U+FFFD")
    d.set_defaults(func=cmd_decode)

    s = sub.add_parser("show", help="show how a text is split into tokens, in color")
    with_tokenizer(s)
    with_text(s)
    s.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    s.add_argument("--raw", action="store_true", help="print whitespace as is, not as · ↵ →")
    s.add_argument("--ids", action="store_true", help="also list each token's id and bytes")
    s.set_defaults(func=cmd_show)

    st = sub.add_parser("stats", help="compression statistics of one or more tokenizers on a text")
    with_tokenizer(st)
    with_text(st)
    st.add_argument("--top", type=int, default=15, help="how many of the most frequent tokens to list")
    st.set_defaults(func=cmd_stats)
