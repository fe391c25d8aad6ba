"""``lucidlm quantize``: a model's matrices in llama.cpp's blocks, with what it costs in quality.

    lucidlm quantize runs/my-model/best --to q8_0 --out runs/my-model-q8
    lucidlm quantize smollm2-135m-instruct --to q4_1 --out smollm2-q4 --text my_notes.txt

Every matrix whose rows fill whole blocks of 32 (and the token embedding) becomes Q8_0 (8 bits a
weight + one fp16 scale per 32: ~3.8x smaller), Q4_1 (4 bits + scale and minimum: ~6.4x) or Q4_0
(4 bits + scale: ~7.1x), with the bytes llama.cpp's own quantisers write. The result is a lucidlm
checkpoint directory that every command loads (``generate``, ``serve``, ``eval``, ...), decoded
straight from the blocks. The quality cost is measured, not assumed: perplexity on held-out text
before and after (default: the last 10 KB of Tiny Shakespeare, which the demo's training split
leaves out), written to ``quantization.json`` beside the weights.
"""

from __future__ import annotations

import argparse

HELD_OUT_BYTES = 10_000


def cmd_quantize(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lucidlm.evaluation.perplexity import perplexity
    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.loading.load import check_pretrained, load_model
    from lucidlm.loading.quantize import quantize_model
    from lucidlm.nn.quantized import weight_bytes

    check_pretrained(args.model, random_init=False)  # a preset's random weights have no quality to keep
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    if args.text:
        text = Path(args.text).read_text(encoding="utf-8")
        source = args.text
    else:
        from lucidlm.tokenizers.corpus import tiny_shakespeare

        text = tiny_shakespeare()[-HELD_OUT_BYTES:]
        source = f"the last {HELD_OUT_BYTES:,} bytes of Tiny Shakespeare"
    if not text.strip():
        raise ValueError(f"{source} is empty: give --text a file with some text to measure perplexity on")
    model, tokenizer = load_model(args.model)
    if tokenizer is None:
        raise ValueError(f"{args.model} has no tokenizer: quantize needs one to measure perplexity on text")
    if getattr(model.cfg, "arch", None) != "decoder":
        raise ValueError(f"{args.model} is not a decoder-only language model (arch={model.cfg.arch!r}); "
                         "quantize measures perplexity, which needs next-token logits")
    context = min(args.context, model.cfg.max_seq_len)
    print(f"lucidlm: perplexity on {source}, windows of {context} tokens")
    before_bytes = weight_bytes(model)
    before = perplexity(model, tokenizer, text, context=context, stride=context // 2)
    print(f"  float32: {before.perplexity:.3f} ({before_bytes / 1e6:.1f} MB of weights)")
    plan = quantize_model(model, args.to)
    if not plan:
        raise ValueError(f"{args.model} has no matrix whose rows fill whole blocks of 32 weights: nothing to quantise")
    after_bytes = weight_bytes(model)
    after = perplexity(model, tokenizer, text, context=context, stride=context // 2)
    change = after.perplexity / before.perplexity - 1
    print(f"  {args.to}: {after.perplexity:.3f} ({after_bytes / 1e6:.1f} MB of weights): perplexity {change:+.2%}, "
          f"{before_bytes / after_bytes:.1f}x smaller")
    report = {"model": str(args.model), "to": args.to, "text": source, "context": context, "tokens": after.tokens,
              "perplexity_float32": before.perplexity, "perplexity_quantized": after.perplexity, "perplexity_change": change,
              "weight_bytes_float32": before_bytes, "weight_bytes_quantized": after_bytes,
              "quantized_layers": len(plan)}

    def write_report(folder: Path) -> None:
        (folder / "quantization.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    save_checkpoint(model, out, tokenizer, overwrite=args.overwrite, extra=write_report)
    print(f"wrote {out}/ ({len(plan)} layers in {args.to}; quantization.json has these figures)")
    print(f"  lucidlm generate --model {out} \"...\"")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("quantize", help="keep a model's matrices in llama.cpp's blocks (q8_0, q4_1, q4_0)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a checkpoint directory, model asset, Hugging Face directory or .gguf")
    p.add_argument("--to", choices=["q8_0", "q4_1", "q4_0"], required=True,
                   help="q8_0: ~3.8x smaller, near-lossless; q4_1 ~6.4x, q4_0 ~7.1x, some quality lost")
    p.add_argument("--out", required=True, help="the checkpoint directory to write")
    p.add_argument("--text", default=None, metavar="FILE",
                   help="held-out text for the perplexity before/after (default: the last 10 KB of Tiny Shakespeare)")
    p.add_argument("--context", type=int, default=512, help="tokens per perplexity window (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_quantize)
