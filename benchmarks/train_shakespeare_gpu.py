"""Training on a GPU: real nanoGPT's shakespeare_char recipe, then lucidlm to the same val loss.

    python benchmarks/train_shakespeare_gpu.py --nanogpt-dir ~/nanoGPT [--lr=2e-3 --model.n_layer=6 ...]

1. nanoGPT (a karpathy/nanoGPT checkout, run unmodified as a subprocess, see ``_nanogpt.py``):
   ``train.py config/train_shakespeare_char.py`` as it is: 6 layers, 6 heads, 384 wide, block 256,
   batch 64, dropout 0.2, lr 1e-3 -> 1e-4 cosine over 5000 iterations, an evaluation of 200 train
   and 200 val batches every 250, bf16 autocast, torch.compile. Its best val loss is the target
   (nanoGPT's README: 1.4697 in about 3 minutes on an A100).
2. lucidlm (``GPU_MODEL``, ``GPU_TRAIN``): bf16 autocast, fused AdamW, torch.compile and PyTorch's
   SDPA (flash) attention; it evaluates 200 val batches every ``eval_interval`` steps and stops at
   the first val loss <= the target.

Printed: nanoGPT's best val loss, its wall-clock (the whole train.py process, compile included)
and the time to its best evaluation; lucidlm's seconds to the target (``train()``'s call to its
return: dataset, model, compile, steps, evaluations, checkpoint saves); their ratio (goal from
the issue: <= 0.5). Arguments of the form ``--key=value`` after the script's own change lucidlm's
TrainConfig (``--model.key=value`` its ModelConfig), to tune the recipe where a GPU is lent.

``--device cpu --max-iters 3 --smoke`` runs the same plumbing on a CPU in seconds (a 1-layer,
32-wide model for both; its numbers mean nothing).

Not yet measured: no GPU has been lent to this project so far; the recipe below is the CPU
benchmark's (RoPE, RMSNorm, ReLU^2, a higher lr, a shorter schedule) at nanoGPT's GPU size.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _nanogpt import NanoGPTError, check_checkout, commit_of, missing_imports, run_nanogpt  # noqa: E402

PUBLISHED_BEST_VAL = 1.4697  # nanoGPT's README, shakespeare_char on one A100

# nanoGPT's shakespeare_char shape with the modern recipe of train_shakespeare.py
GPU_MODEL = {"n_layer": 6, "n_head": 6, "n_embd": 384, "max_seq_len": 256, "bias": False, "norm_bias": False,
             "positions": "rope", "norm": "rmsnorm", "activation": "relu2", "dropout": 0.2}
GPU_TRAIN = {"batch_size": 64, "block_size": 256, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 100, "beta2": 0.99,
             "weight_decay": 0.1, "grad_clip": 1.0, "eval_interval": 250, "eval_iters": 200, "precision": "bf16",
             "fused": "auto", "compile": True}
GPU_STEPS = 3000

# --smoke: the smallest shapes that run every line (both runs)
SMOKE_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "max_seq_len": 32}
SMOKE_TRAIN = {"batch_size": 4, "block_size": 32}


def nanogpt_flags(args) -> list[str]:
    """The flags after config/train_shakespeare_char.py: none for the published GPU run."""
    flags = []
    if args.device != "cuda":
        flags.append(f"--device={args.device}")
    if not args.compile:
        flags.append("--compile=False")
    if args.max_iters is not None:
        flags += [f"--max_iters={args.max_iters}", f"--lr_decay_iters={args.max_iters}"]
        if args.max_iters % 250:  # the config evaluates every 250: evaluate at the last one too
            flags.append(f"--eval_interval={args.max_iters}")
    if args.eval_iters is not None:
        flags.append(f"--eval_iters={args.eval_iters}")
    if args.smoke:
        flags += [f"--{key}={value}" for key, value in
                  {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 4, "log_interval": 1}.items()]
    return flags


def lucidlm_config(args, overrides: list[str], data: Path, out_dir: Path):
    """The TrainConfig of lucidlm's run: GPU_TRAIN, the script's flags, then ``overrides``."""
    from lucidlm.train import TrainConfig
    from lucidlm.train.config import apply_overrides

    model = {**GPU_MODEL, **(SMOKE_MODEL if args.smoke else {})}
    train = {**GPU_TRAIN, **(SMOKE_TRAIN if args.smoke else {}), "device": args.device, "compile": args.compile}
    if args.eval_iters is not None:
        train["eval_iters"] = args.eval_iters
    base = {**train, "model": model, "max_steps": args.max_iters or GPU_STEPS, "out_dir": str(out_dir),
            "data": str(data), "progress": False, "save_best": False, "log_interval": 50}
    return TrainConfig.from_dict(apply_overrides(base, overrides), source="lucidlm's GPU recipe")


def run_lucidlm(cfg, target: float) -> dict:
    from lucidlm.data import tiny_shakespeare_path
    from lucidlm.data.prepare import prepare_dataset
    from lucidlm.train.loop import train

    prepare_dataset([tiny_shakespeare_path()], cfg.data, "char", val_fraction=0.1, progress=False)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as log:
        result = train(cfg, stop_when=lambda step, val: val <= target)
    wall = time.perf_counter() - start
    reached = result.stopped == "stop_when"
    for line in log.getvalue().splitlines():
        if "val loss" in line or line.startswith(("model:", "batch:")):
            print(f"  lucidlm {line}")
    return {"best_val": min(result.val_losses.values()), "steps": result.step, "wall_s": wall,
            "reached_s": wall if reached else math.nan}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,  # --key=value pass on
                                     epilog="--key=value / --model.key=value: lucidlm TrainConfig changes")
    parser.add_argument("--nanogpt-dir", required=True, help="a karpathy/nanoGPT checkout")
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark), or cpu for --smoke")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="torch.compile off in both")
    parser.add_argument("--max-iters", type=int, help="steps of both (default: nanoGPT's 5000, lucidlm's "
                                                      f"{GPU_STEPS})")
    parser.add_argument("--eval-iters", type=int, help="batches per evaluation in both (default: the config's 200)")
    parser.add_argument("--target", type=float, help="lucidlm's stopping val loss (default: nanoGPT's best)")
    parser.add_argument("--smoke", action="store_true", help="a tiny model in both: the plumbing, not a benchmark")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    bad = [item for item in overrides if not (item.startswith("--") and "=" in item)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (lucidlm changes look like --key=value)")
    if args.max_iters is not None and args.max_iters < 1:
        parser.error(f"--max-iters must be >= 1, got {args.max_iters}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("train_shakespeare_gpu.py: error: --device cuda, but this torch sees no GPU "
                 "(--device cpu --max-iters 3 --smoke checks the plumbing)")
    try:
        missing = missing_imports(check_checkout(args.nanogpt_dir))
        if missing:
            raise NanoGPTError(f"nanoGPT imports {', '.join(missing)}, which this Python lacks: "
                               f"{sys.executable} -m pip install {' '.join(missing)}")
    except NanoGPTError as exc:
        sys.exit(f"train_shakespeare_gpu.py: error: {exc}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            cfg = lucidlm_config(args, overrides, tmp / "shakespeare_char", tmp / "lucidlm")
        except ValueError as exc:
            sys.exit(f"train_shakespeare_gpu.py: error: {exc}")
        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
        print(f"device: {device}; torch {torch.__version__}; nanoGPT {commit_of(Path(args.nanogpt_dir))[:12]}")
        from lucidlm.data import tiny_shakespeare_path

        try:
            nano = run_nanogpt(args.nanogpt_dir, tmp, nanogpt_flags(args), text_path=tiny_shakespeare_path(), log=print)
        except NanoGPTError as exc:
            sys.exit(f"train_shakespeare_gpu.py: error: {exc}")
        best_step, _, best_val, best_at = min(nano.evals, key=lambda e: e[2])
        target = args.target if args.target is not None else best_val
        print(f"nanoGPT: best val {best_val:.4f} at step {best_step} ({best_at:.1f} s); {nano.wall_s:.1f} s in all; "
              f"published: {PUBLISHED_BEST_VAL} in ~3 min on an A100")
        ours = run_lucidlm(cfg, target)
    print(f"\nTiny Shakespeare (char) on {device}; target val loss {target:.4f}")
    print(f"  nanoGPT: best val {best_val:.4f}, {nano.wall_s:.1f} s (whole process), {best_at:.1f} s to its best "
          f"evaluation, {nano.median_ms():.1f} ms/step")
    print(f"  lucidlm: best val {ours['best_val']:.4f} after {ours['steps']} steps, {ours['reached_s']:.1f} s to the "
          f"target ({ours['wall_s']:.1f} s in all)")
    print(f"  ratio: {ours['reached_s'] / nano.wall_s:.3f} of nanoGPT's wall-clock, {ours['reached_s'] / best_at:.3f} "
          "of its time to its best evaluation (goal <= 0.5; nan: the target was not reached)")


if __name__ == "__main__":
    main()
