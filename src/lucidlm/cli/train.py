"""``lucidlm train`` and ``lucidlm plot``: thin wrappers over ``lucidlm.train``.

    lucidlm train --config run.toml --lr=3e-4 --model.n_layer=6
    lucidlm train --config lora.toml --task=chat    # fine-tune init_from on data = chats.jsonl
    torchrun --standalone --nproc_per_node=2 -m lucidlm.cli train --config run.toml
    lucidlm plot out/shakespeare-char          # writes out/shakespeare-char/loss.png
"""

from __future__ import annotations

import argparse
import os
import sys


def cmd_train(args, overrides: list[str]) -> int:
    from lucidlm.train.config import TrainConfig
    from lucidlm.train.loop import train

    cfg = TrainConfig.from_toml(args.config, overrides)
    if cfg.finetunes:  # task = "chat" and/or a [lora] table: the config says so, not the file name
        from lucidlm.train.instruct import finetune

        result = finetune(cfg, resume=args.resume, overwrite=args.overwrite, handle_signals=True)
    else:
        result = train(cfg, resume=args.resume, overwrite=args.overwrite, handle_signals=True)
    if result.stopped == "done" and result.is_main:
        best = f", best val loss {result.best_val_loss:.4f}" if result.val_losses else ""
        print(f"done: {result.step} steps{best}; checkpoint {result.checkpoint}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, leave without the interpreter's shutdown: gloo's C++ threads can still
        # hold tensors whose release then needs the GIL of a half-finalised interpreter, which
        # aborts the process (SIGABRT, "terminate called without an active exception") after a
        # run that finished and saved. Everything is written and closed by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_plot(args) -> int:
    from lucidlm.train.metrics import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0


class _HelpWithSettings(argparse.Action):
    """``lucidlm train --help``: the description lists TrainConfig's settings, read only when help
    is asked for (importing lucidlm.train loads torch, which ``lucidlm --help`` must not)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from lucidlm.train.config import TrainConfig

        keys = ", ".join(f.name for f in TrainConfig.__dataclass_fields__.values())
        parser.description += " Settings: " + keys
        parser.print_help()
        parser.exit()


def register_cli(subparsers) -> None:
    """Add ``lucidlm train`` and ``lucidlm plot`` to the top-level parser's subparsers."""
    t = subparsers.add_parser(
        "train", help="train a language model on a prepared token dataset", add_help=False,
        description="Train per a TOML config; any setting can be overridden with --key=value "
                    "(--model.FIELD=value for the model).",
        epilog="task = \"lm\" trains on a prepared token dataset; task = \"chat\" fine-tunes init_from on a "
               ".jsonl of chats (loss on the assistant's replies); the default, task = \"auto\", means chat when "
               "data ends in .jsonl, else lm. A [lora] table trains LoRA adapters (either task). "
               "Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves out_dir/last and exits; "
               "continue with --resume. Run under torchrun for data-parallel training.")
    t.add_argument("-h", "--help", action=_HelpWithSettings, help="show this help (and every setting) and exit")
    t.add_argument("--config", metavar="FILE.toml", help="training config (TOML); without it, the defaults")
    t.add_argument("--resume", action="store_true", help="continue step-exactly from out_dir/last")
    t.add_argument("--overwrite", action="store_true",
                   help="start over in an out_dir that holds a checkpoint (replaced when this run first saves)")
    t.set_defaults(func=_train_with_overrides)
    _collect_overrides(t)

    p = subparsers.add_parser("plot", help="draw a run's train/val loss curves into RUN_DIR/loss.png")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a training out_dir (holds metrics.jsonl)")
    p.add_argument("--out", help="where to write the PNG (default: RUN_DIR/loss.png)")
    p.set_defaults(func=cmd_plot)


def _train_with_overrides(args) -> int:
    return cmd_train(args, list(getattr(args, "overrides", [])))


def _collect_overrides(parser: argparse.ArgumentParser) -> None:
    """Let ``parser`` keep the arguments it does not know as ``args.overrides``.

    argparse cannot know the config's keys in advance (``--model.n_layer`` names a ModelConfig
    field), so ``--key=value`` / ``--key value`` pass through to ``TrainConfig.from_toml``, which
    rejects unknown keys by name. The top-level parser hands a subcommand its arguments through
    ``parse_known_args``; this instance's version files the leftovers instead of refusing them.
    """
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = original(args, namespace)
        overrides, i = [], 0
        while i < len(extras):
            item = extras[i]
            if item.startswith("--") and "=" not in item and i + 1 < len(extras) and not extras[i + 1].startswith("--"):
                item, i = f"{item}={extras[i + 1]}", i + 1  # --lr 3e-4 -> --lr=3e-4
            overrides.append(item)
            i += 1
        namespace.overrides = overrides
        return namespace, []

    parser.parse_known_args = parse_known_args
