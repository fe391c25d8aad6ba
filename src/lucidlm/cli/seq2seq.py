"""``lucidlm seq2seq tasks | train | eval | translate | plot``: the original Transformer, trained.

    lucidlm seq2seq tasks                                   # the tasks, one example each
    lucidlm seq2seq train --task reverse --minutes 10       # -> runs/seq2seq/reverse/best
    lucidlm seq2seq train --task date --norm post --lr 5e-4
    lucidlm seq2seq eval runs/seq2seq/reverse --beam 4      # exact match on the held-out test set
    lucidlm seq2seq translate runs/seq2seq/date "3 March 2021"
    lucidlm seq2seq plot runs/seq2seq/reverse "abcdefg" --out reverse.png

Thin front ends over ``lucidlm.train.seq2seq`` and ``lucidlm.generate.seq2seq_decode``; building
the parser imports no torch.
"""

from __future__ import annotations

from lucidlm.cli.args import positive_int

# Training flags: (flag, Seq2SeqConfig field, type, help). Unset flags keep the task's recommended
# value (lucidlm.train.seq2seq.TASK_CONFIGS), so only what the user typed overrides it.
_TRAIN_FLAGS = (
    ("--norm", "norm", str, "pre (x + f(norm(x)), GPT-2 and later) or post (norm(x + f(x)), the 2017 paper)"),
    ("--minutes", "minutes", float, "wall-clock budget; training also stops when validation reaches --stop-at"),
    ("--max-steps", "max_steps", int, "step budget (0: none)"),
    ("--layers", "n_layer", int, "blocks in the encoder, and as many in the decoder"),
    ("--width", "n_embd", int, "the residual stream's width (d_model)"),
    ("--heads", "n_head", int, "attention heads"),
    ("--ffn", "ffn", int, "the MLP's hidden width"),
    ("--lr", "lr", float, "peak learning rate of the inverse-square-root (Noam) schedule"),
    ("--warmup", "warmup_steps", int, "warmup steps of the schedule"),
    ("--batch-size", "batch_size", int, "examples per step"),
    ("--label-smoothing", "label_smoothing", float, "label smoothing epsilon (the paper: 0.1)"),
    ("--dropout", "dropout", float, "dropout rate"),
    ("--grad-clip", "grad_clip", float, "clip the gradient norm (0: off)"),
    ("--position-shift", "position_shift", int, "shift training positions by a random 0..N (longer inputs)"),
    ("--init", "init", str, "weight initialisation: xavier (Glorot uniform) or gpt2 (N(0, 0.02))"),
    ("--ema", "ema", float, "decay of the weight average that is evaluated and saved (0: off)"),
    ("--stop-at", "stop_at", float, "validation exact match that ends training (default 1.0)"),
    ("--eval-every", "eval_every", int, "steps between validation decodes"),
    ("--seed", "seed", int, "random seed (model, data order)"),
)


def cmd_tasks(args) -> int:
    import random

    from lucidlm.data.seq2seq_tasks import TASKS, get_task

    for name in TASKS:
        task = get_task(name)
        ex = task.sample(random.Random(1), "train")
        note = f"; {task.note}" if task.note else ""
        print(f"  {name:<13} {ex.source!r} -> {ex.target!r}   ({task.vocab().size} tokens{note})")
    return 0


def cmd_train(args) -> int:
    import torch

    from lucidlm.train.seq2seq import config_for, train_seq2seq

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {field: getattr(args, field) for _, field, _, _ in _TRAIN_FLAGS if getattr(args, field) is not None}
    if args.task_option:
        overrides["task_options"] = dict(_task_option(o) for o in args.task_option)
    cfg = config_for(args.task, **overrides)
    out = args.out or f"runs/seq2seq/{args.task}"
    print(f"training {cfg.task}: {cfg}")
    result = train_seq2seq(cfg, out, log=None if args.quiet else print)
    extra = f", extra {result.extra_exact:.4f}" if result.extra_exact is not None else ""
    print(f"done ({result.stopped}): {result.step} steps in {result.seconds / 60:.2f} min; test exact match "
          f"{result.test_exact:.4f}{extra}; checkpoint {result.checkpoint}")
    return 0


def _task_option(text: str) -> tuple[str, object]:
    """'digits=3' -> ('digits', 3); 'lsb_first=false' -> ('lsb_first', False); values are JSON,
    or else plain strings."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--task-option expects KEY=VALUE (e.g. digits=3), got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _load(args):
    from lucidlm.train.seq2seq import load_seq2seq

    model, task, vocab, info = load_seq2seq(args.checkpoint)
    if getattr(args, "task", None) and args.task != task.name:
        raise ValueError(f"{args.checkpoint} was trained on task {task.name!r}, not {args.task!r}")
    return model, task, vocab


def cmd_eval(args) -> int:
    from lucidlm.data.seq2seq_tasks import make_splits
    from lucidlm.train.seq2seq import exact_match

    model, task, vocab = _load(args)
    splits = make_splits(task)
    examples = {"test": splits.test, "valid": splits.valid, "extra": splits.extra}[args.split]
    if not examples:
        raise ValueError(f"task {task.name!r} has no {args.split!r} split")
    if args.limit:
        examples = examples[: args.limit]
    acc, wrong = exact_match(model, vocab, examples, beam=args.beam, alpha=args.alpha)
    how = "greedy" if args.beam == 1 else f"beam {args.beam}, alpha {args.alpha}"
    print(f"{task.name} {args.split}: exact match {acc:.4f} ({len(examples) - len(wrong)}/{len(examples)}, {how})")
    for ex, out in wrong[: args.show]:
        print(f"  {ex.source!r} -> {out!r} (expected {ex.target!r})")
    return 0


def cmd_translate(args) -> int:
    from lucidlm.generate.seq2seq_decode import translate

    model, _, vocab = _load(args)
    for text, out in zip(args.texts, translate(model, vocab, args.texts, beam=args.beam, alpha=args.alpha)):
        print(out if len(args.texts) == 1 else f"{text}\t{out}")
    return 0


def cmd_plot(args) -> int:
    from lucidlm.inspection.seq2seq_attention import cross_attention, plot_alignment

    model, _, vocab = _load(args)
    alignment = cross_attention(model, vocab, args.text, beam=args.beam)
    print(plot_alignment(alignment, args.out, heads=args.heads))
    return 0


def register_cli(subparsers) -> None:
    """Add ``lucidlm seq2seq {tasks,train,eval,translate,plot}``."""
    p = subparsers.add_parser("seq2seq", help="train and run the original encoder-decoder Transformer on a task")
    sub = p.add_subparsers(dest="seq2seq_command", metavar="ACTION", required=True)

    sub.add_parser("tasks", help="list the tasks with an example each").set_defaults(func=cmd_tasks)

    t = sub.add_parser("train", help="train a fresh model on a task; saves OUT/best",
                       description="Train until the validation set is exact (or the budget ends), then report "
                                   "exact match on the held-out test set. Unset flags take the task's "
                                   "recommended settings.")
    t.add_argument("--task", required=True, help="copy, reverse, sort, addition, date, roman-to-int, int-to-roman")
    t.add_argument("--out", help="run directory (default: runs/seq2seq/TASK)")
    t.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--quiet", action="store_true", help="no per-step log lines")
    t.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="a task setting, e.g. digits=3 or lsb_first=false (addition); repeatable")
    for flag, field, kind, text in _TRAIN_FLAGS:
        t.add_argument(flag, dest=field, type=kind, default=None, help=text)
    t.set_defaults(func=cmd_train)

    def checkpoint(q) -> None:
        q.add_argument("checkpoint", metavar="CHECKPOINT", help="a run directory or its best/ checkpoint")

    def decoding(q, beam: int) -> None:
        q.add_argument("--beam", type=positive_int, default=beam, help=f"beam width; 1: greedy (default: {beam})")
        q.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty exponent (default: 0.6)")

    e = sub.add_parser("eval", help="exact match on the task's held-out examples")
    checkpoint(e)
    e.add_argument("--task", help="check that the checkpoint was trained on this task")
    e.add_argument("--split", choices=("test", "valid", "extra"), default="test",
                   help="test (the reported score), valid (used to stop training) or extra (addition: one more "
                        "digit)")
    e.add_argument("--limit", type=positive_int, help="evaluate only the first N examples")
    e.add_argument("--show", type=int, default=5, help="wrong answers to print (default: 5)")
    decoding(e, 1)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("translate", help="decode texts with a trained model")
    checkpoint(r)
    r.add_argument("texts", nargs="+", metavar="TEXT")
    decoding(r, 1)
    r.set_defaults(func=cmd_translate)

    g = sub.add_parser("plot", help="draw the cross-attention alignment of one input as a PNG")
    checkpoint(g)
    g.add_argument("text", metavar="TEXT")
    g.add_argument("--out", required=True, help="the PNG to write")
    g.add_argument("--heads", action="store_true", help="one panel per head instead of the mean per block")
    decoding(g, 1)
    g.set_defaults(func=cmd_plot)
