"""``lucidlm inspect walkthrough | attention | logit-lens``: look inside one forward pass.

The checks on what the user asked for (layer and head indices, --top, an empty text, an encoder
given to the logit lens) live in the library functions of ``walkthrough.py``, which raise
ValueError; ``lucidlm.cli.main`` prints it as one line.
"""

from __future__ import annotations

import argparse

from lucidlm.cli.args import starts_fast, startup_done


def _load(args: argparse.Namespace):
    from lucidlm.loading.load import check_pretrained, load_model

    check_pretrained(args.model, random_init=args.random_init)  # a preset's random weights explain nothing
    model, tokenizer = load_model(args.model)
    if tokenizer is None:
        raise ValueError(f"{args.model} has no tokenizer beside its weights (tokenizer.json): inspect needs one "
                         "to turn the text into token ids")
    startup_done()
    return model.eval(), tokenizer


def _indices(value: str, flag: str) -> list[int] | None:
    """"0,2,-1" -> [0, 2, -1]; "" -> None (all)."""
    if not value.strip():
        return None
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise ValueError(f"{flag} {value!r}: expected comma-separated whole numbers, e.g. {flag} 0,2 "
                         f"or {flag}=-1") from None


@starts_fast
def cmd_walkthrough(args: argparse.Namespace) -> int:
    from lucidlm.inspection.walkthrough import walkthrough

    model, tok = _load(args)
    if args.all_layers:
        layers = None
    else:  # the default, 2, shrinks to fit a smaller model; a number given must fit
        layers = args.layers if args.layers is not None else min(2, len(model.layers))
    print(walkthrough(model, tok, args.text, layers=layers))
    return 0


@starts_fast
def cmd_attention(args: argparse.Namespace) -> int:
    from lucidlm.inspection.walkthrough import attention_heatmaps

    layers, heads = _indices(args.layers, "--layers"), _indices(args.heads, "--heads")
    model, tok = _load(args)
    for path in attention_heatmaps(model, tok, args.text, args.out, layers, heads):
        print(path)
    return 0


@starts_fast
def cmd_logit_lens(args: argparse.Namespace) -> int:
    from lucidlm.inspection.walkthrough import logit_lens

    model, tok = _load(args)
    rows = logit_lens(model, tok, args.text, top=args.top)
    print(f"top token read from the residual stream after each layer, last position of {args.text!r}:")
    for layer, best in rows:
        shown = "   ".join(f"{t!r} {p:.1%}" for t, p in best)
        print(f"  layer {layer:>3}: {shown}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="look inside one forward pass of a model")
    sub = p.add_subparsers(dest="inspect_command", metavar="ACTION", required=True)

    def common(sp):
        sp.add_argument("text", help="the input text (at least one token)")
        sp.add_argument("--model", "-m", default="smollm2-135m-instruct",
                        help="model asset (smollm2-135m-instruct, all-minilm-l6-v2), checkpoint directory, "
                             "HF directory or .gguf file (default: smollm2-135m-instruct)")
        sp.add_argument("--random-init", action="store_true",
                        help="run an architecture preset (gpt2, smollm2-135m, ...) with random weights")

    w = sub.add_parser("walkthrough", help="each stage of the forward pass: shape, values, equation")
    common(w)
    w.add_argument("--layers", type=int, default=None,
                   help="how many blocks to show in full, 1..number of layers (default 2)")
    w.add_argument("--all-layers", action="store_true", help="show every block")
    w.set_defaults(func=cmd_walkthrough)

    a = sub.add_parser("attention", help="write attention heatmap PNGs, one per layer (a panel per head)")
    common(a)
    a.add_argument("--out", default="runs/attention", help="output directory (default runs/attention)")
    a.add_argument("--layers", default="",
                   help="comma-separated layer indices, from 0; negative ones count from the end as in Python "
                        "(write --layers=-1 for the last layer). Default: all")
    a.add_argument("--heads", default="",
                   help="comma-separated head indices to draw, from 0; negative ones count from the end "
                        "(--heads=-1 is the last head). Default: all")
    a.set_defaults(func=cmd_attention)

    lens = sub.add_parser("logit-lens", help="the top token decoded from the residual stream after every layer "
                                             "(decoders only)")
    common(lens)
    lens.add_argument("--top", type=int, default=3,
                      help="tokens to show per layer, 1..vocabulary size (default 3)")
    lens.set_defaults(func=cmd_logit_lens)
