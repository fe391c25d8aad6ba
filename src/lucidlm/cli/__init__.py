"""The ``lucidlm`` command line: a thin layer over the library's public API.

One module per command group (``tokenizer.py``, ``generation.py``, ``serve.py``, ...), each with a
``register_cli(subparsers)`` that adds its commands. The command functions import the library
only when they run, so that building the parser (``lucidlm --help``) imports no torch.
"""

from __future__ import annotations

import argparse
import gc
import sys

from lucidlm.cli import (
    assets,
    chem,
    data,
    demo,
    embeddings,
    evaluation,
    explore,
    export,
    generation,
    inspection,
    models,
    quantize,
    seq2seq,
    serve,
    tokenizer,
    train,
)
from lucidlm.cli.args import pause_gc_for_startup, positive_int, startup_done

__all__ = ["build_parser", "main", "positive_int"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lucidlm", description="Understand LLMs by running one.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (assets, tokenizer, demo, models, inspection, embeddings, data, train, generation, serve,
                  evaluation, explore, export, quantize, chem, seq2seq):
        group.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the `lucidlm` process itself, not a call from Python (a test, a notebook)
        # What is imported so far lives as long as the process; frozen, later full collections skip
        # it. A command that imports torch and loads a model runs with the collector paused until
        # it is loaded, then freezes all that too (cli/args.py, starts_fast).
        gc.freeze()
        if getattr(args.func, "starts_fast", False):
            pause_gc_for_startup()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # User mistakes and unavailable assets: one clear line, no traceback.
        print(f"lucidlm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        startup_done()  # a command that failed before it was loaded
