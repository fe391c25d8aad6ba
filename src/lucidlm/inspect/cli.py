"""``lucidlm inspect walkthrough | attention | logit-lens``: look inside one forward pass."""

from __future__ import annotations

import argparse


def _load(args: argparse.Namespace):
    from lucidlm.models.load import load_model

    model, tokenizer = load_model(args.model)
    return model.eval(), tokenizer


def cmd_walkthrough(args: argparse.Namespace) -> int:
    from lucidlm.inspect.walkthrough import walkthrough

    model, tok = _load(args)
    print(walkthrough(model, tok, args.text, layers=None if args.all_layers else args.layers))
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from lucidlm.inspect.walkthrough import attention_heatmaps

    model, tok = _load(args)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    for path in attention_heatmaps(model, tok, args.text, args.out, layers):
        print(path)
    return 0


def cmd_logit_lens(args: argparse.Namespace) -> int:
    from lucidlm.inspect.walkthrough import logit_lens

    model, tok = _load(args)
    print(f"top token read from the residual stream after each layer, last position of {args.text!r}:")
    for layer, best in logit_lens(model, tok, args.text, top=args.top):
        shown = "   ".join(f"{t!r} {p:.1%}" for t, p in best)
        print(f"  layer {layer:>3}: {shown}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="look inside one forward pass of a model")
    sub = p.add_subparsers(dest="inspect_command", metavar="ACTION", required=True)

    def common(sp):
        sp.add_argument("text", help="the input text")
        sp.add_argument("--model", "-m", default="smollm2-135m-instruct",
                        help="preset, asset name, checkpoint directory, HF directory or .gguf file")

    w = sub.add_parser("walkthrough", help="each stage of the forward pass: shape, values, equation")
    common(w)
    w.add_argument("--layers", type=int, default=2, help="blocks to show in full (default 2)")
    w.add_argument("--all-layers", action="store_true", help="show every block")
    w.set_defaults(func=cmd_walkthrough)

    a = sub.add_parser("attention", help="write attention heatmap PNGs, one per layer (all heads)")
    common(a)
    a.add_argument("--out", default="runs/attention", help="output directory")
    a.add_argument("--layers", default="", help="comma-separated layer indices (default: all)")
    a.set_defaults(func=cmd_attention)

    lens = sub.add_parser("logit-lens", help="the top token decoded from the residual stream after every layer")
    common(lens)
    lens.add_argument("--top", type=int, default=3)
    lens.set_defaults(func=cmd_logit_lens)
