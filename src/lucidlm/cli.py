"""The ``lucidlm`` command line: a thin layer over the library's public API.

Each command group lives beside the code it drives and registers itself here through a
``register_cli(subparsers)`` function, so no logic lives only in the front end.
"""

from __future__ import annotations

import argparse
import sys


def positive_int(value: str) -> int:
    """An argparse type: a whole number >= 1 (the command groups share it)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    from lucidlm import assets, demo
    from lucidlm.data import cli as data_cli
    from lucidlm.embed import cli as embed_cli
    from lucidlm.generate import cli as generate_cli
    from lucidlm.inspect import cli as inspect_cli
    from lucidlm.models import cli as models_cli
    from lucidlm.serve import cli as serve_cli
    from lucidlm.tokenizers import cli as tokenizer_cli
    from lucidlm.train import cli as train_cli

    parser = argparse.ArgumentParser(prog="lucidlm", description="Understand LLMs by running one.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    assets.register_cli(sub)
    tokenizer_cli.register_cli(sub)
    demo.register_cli(sub)
    models_cli.register_cli(sub)
    inspect_cli.register_cli(sub)
    embed_cli.register_cli(sub)
    data_cli.register_cli(sub)
    train_cli.register_cli(sub)
    generate_cli.register_cli(sub)
    serve_cli.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # User mistakes and unavailable assets: one clear line, no traceback.
        print(f"lucidlm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
