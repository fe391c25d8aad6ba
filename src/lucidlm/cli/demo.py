"""``lucidlm demo``: the main job on the bundled Tiny Shakespeare (``lucidlm.demo``)."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from lucidlm.demo import run_demo

    color = None if args.color == "auto" else args.color == "always"
    run_demo(args.out, minutes=args.minutes, vocab_size=args.vocab_size, color=color,
             tokenizers=not args.skip_tokenizers)
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the main job on the bundled Tiny Shakespeare: tokenize, train, sample")
    p.add_argument("--out", default="runs/demo", help="where to write what the demo makes (replaced each run)")
    p.add_argument("--minutes", type=float, default=3.0, help="training time budget (default 3)")
    p.add_argument("--vocab-size", type=int, default=1024, help="vocabulary of the BPE tokenizer in part 1")
    p.add_argument("--skip-tokenizers", action="store_true", help="skip part 1 (the tokenizer comparison)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(func=cmd_demo)
