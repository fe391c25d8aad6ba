"""``lucidlm export``: take a model to the tools people deploy with.

    lucidlm export runs/my-llama/best --to hf --out my-llama-hf          # transformers, vLLM, lm-eval
    lucidlm export runs/my-llama/best --to gguf --out my-llama.gguf --weights q8_0   # llama.cpp, ollama

``--to hf`` writes a Hugging Face directory: config.json, model.safetensors, tokenizer.json and
tokenizer_config.json (with the chat template), for GPT-2, Llama and BERT shapes. ``--to gguf``
writes one llama.cpp file, weights and tokenizer, for Llama shapes (RoPE, RMSNorm, SwiGLU).
"""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lucidlm.loading.load import check_pretrained, load_model

    check_pretrained(args.model, random_init=args.random_init)  # a preset's random weights are nothing to ship
    out = Path(args.out)
    if args.to == "gguf" and out.suffix != ".gguf":
        raise ValueError(f"--out {out}: a GGUF export is one file; name it something.gguf")
    if args.to == "hf" and out.suffix:
        raise ValueError(f"--out {out}: a Hugging Face export is a directory; give a name without a suffix")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    model, tokenizer = load_model(args.model)
    try:
        return _export(args, out, model, tokenizer)
    except ValueError as exc:
        if "cannot export as" not in str(exc):
            raise
        raise ValueError(f"{exc}. Other tools run two shapes: GPT-2's (positions = \"learned\", norm = \"layernorm\", "
                         "activation = \"gelu_tanh\", bias = true) and Llama's (positions = \"rope\", norm = \"rmsnorm\", "
                         "mlp = \"swiglu\", activation = \"silu\", bias = false): train with one of them in the "
                         "config's [model] to export the model") from None


def _export(args: argparse.Namespace, out, model, tokenizer) -> int:
    if args.to == "hf":
        from lucidlm.loading.hf import save_hf

        if args.weights != "f32":
            raise ValueError("--weights applies to GGUF; a Hugging Face export keeps float32 (transformers loads it "
                             "in the dtype you ask for)")
        save_hf(model, out, tokenizer)
        print(f"wrote {out}/ (config.json, model.safetensors"
              + (", tokenizer.json, tokenizer_config.json" if tokenizer is not None else ", no tokenizer") + ")")
        print(f"  transformers: AutoModelForCausalLM.from_pretrained({str(out)!r})")
        return 0
    from lucidlm.loading.gguf_export import export_gguf

    export_gguf(model, tokenizer, out, weights=args.weights)
    size = out.stat().st_size
    print(f"wrote {out}: {size / 1e6:.1f} MB, matrices in {args.weights}")
    also = f"   |   lucidlm generate --model {out}" if model.cfg.positions == "rope" else ""  # lucidlm reads llama GGUFs
    print(f"  llama.cpp: llama-cli -m {out}{also}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a model as a Hugging Face directory or a llama.cpp GGUF file",
                              description="Write a model as a Hugging Face directory (transformers, vLLM, lm-evaluation-harness) or a GGUF file (llama.cpp).")
    p.add_argument("model", help="a checkpoint directory, model asset, Hugging Face directory or .gguf")
    p.add_argument("--to", choices=["hf", "gguf"], required=True, help="hf: a transformers directory; gguf: one "
                                                                      "llama.cpp file")
    p.add_argument("--out", required=True, help="the directory (hf) or FILE.gguf (gguf) to write")
    p.add_argument("--weights", choices=["f32", "f16", "q8_0", "q4_1", "q4_0"], default="f32",
                   help="GGUF matrix type: f32 exact, q8_0 ~4x smaller, q4_1/q4_0 ~6-7x (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--random-init", action="store_true",
                   help="allow an architecture preset (random weights), e.g. to test a pipeline")
    p.set_defaults(func=cmd_export)
