"""The original Transformer on every synthetic task, and pre-LN against post-LN (issue 15, part 1).

    python benchmarks/seq2seq_tasks.py                  # every task: steps, minutes, test exact match
    python benchmarks/seq2seq_tasks.py --tasks addition # one task (addition also reports one more digit)
    python benchmarks/seq2seq_tasks.py --ln-sweep       # the largest stable learning rate, pre-LN vs post-LN

Tasks: each trains with its recommended settings (``lucidlm.train.seq2seq.config_for``, what
``lucidlm seq2seq train --task NAME`` uses) until the validation set is decoded exactly right or
the budget ends, then greedy-decodes the held-out test set. Goal: >= 99% exact match on every
task, each within 10 minutes on a 2-core machine. ``--threads`` (default 1) is the torch threads.

LN sweep: the same task and step budget for each norm placement and peak learning rate (the Noam
schedule's peak at the end of warmup). A run is *stable* if its loss stays finite and it learns
the task (validation exact match >= 0.9) within the budget; the table shows the largest stable
learning rate of each placement. Post-LN's gradients near the output are larger at
initialisation (Xiong et al. 2020), so it should tolerate a smaller peak.

Run under the benchmark lock (make bench-long does): flock /tmp/lucidlm-bench.lock python ...
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402
from lucidlm.data.seq2seq_tasks import TASKS  # noqa: E402
from lucidlm.train.seq2seq import config_for, train_seq2seq  # noqa: E402

GOAL_EXACT, GOAL_MINUTES = 0.99, 10.0


def run_tasks(tasks: list[str], minutes: float, seed: int) -> list[dict]:
    rows = []
    for task in tasks:
        cfg = config_for(task, minutes=minutes, seed=seed)
        print(f"== {task}: {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.norm}-LN, lr {cfg.lr:g}, "
              f"batch {cfg.batch_size}, budget {minutes:g} min", flush=True)
        res = train_seq2seq(cfg, None, log=lambda line: print("   " + line, flush=True) if "valid" in line else None)
        row = {"task": task, "steps": res.step, "minutes": round(res.seconds / 60, 2), "stopped": res.stopped,
               "valid": res.valid_exact, "test": res.test_exact, "extra": res.extra_exact}
        row["goal"] = row["test"] >= GOAL_EXACT and row["minutes"] <= GOAL_MINUTES
        rows.append(row)
        print(f"   -> {json.dumps(row)}", flush=True)
    print_table(f"Held-out test exact match (goal >= {GOAL_EXACT:.0%} within {GOAL_MINUTES:g} min; greedy decoding)",
                ["task", "steps", "minutes", "stopped", "valid", "test", "one more digit", "goal"],
                [[r["task"], r["steps"], r["minutes"], r["stopped"], r["valid"], r["test"],
                  "-" if r["extra"] is None else r["extra"], "met" if r["goal"] else "MISSED"] for r in rows])
    return rows


def _keep_loss(line: str, losses: list[float]) -> None:
    """Collect the loss of a training log line ("step 50 | loss 1.2345 | ...")."""
    if line.startswith("step") and "| loss" in line:
        losses.append(float(line.split("| loss", 1)[1].split("|", 1)[0]))


def run_ln_sweep(task: str, lrs: list[float], steps: int, warmup: int, grad_clip: float, seed: int,
                 layers: int | None = None, norms: tuple[str, ...] = ("pre", "post")) -> list[dict]:
    rows = []
    for norm in norms:
        for lr in lrs:
            cfg = config_for(task, norm=norm, lr=lr, warmup_steps=warmup, grad_clip=grad_clip, max_steps=steps,
                             eval_every=steps, minutes=60, seed=seed, stop_at=1.0,
                             **({"n_layer": layers} if layers else {}))
            start = time.perf_counter()
            losses: list[float] = []

            res = train_seq2seq(cfg, None, log=lambda line, losses=losses: _keep_loss(line, losses))
            diverged = res.stopped == "diverged" or any(not math.isfinite(x) for x in losses)
            row = {"norm": norm, "lr": lr, "steps": res.step, "last_loss": losses[-1] if losses else float("nan"),
                   "valid": res.valid_exact, "diverged": diverged,
                   "stable": not diverged and res.valid_exact >= 0.9,
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(f"   {json.dumps(row)}", flush=True)
    print_table(f"{task}, {cfg.n_layer} + {cfg.n_layer} layers, {steps} steps, warmup {warmup}, grad clip "
                f"{grad_clip or 'off'}: stable = finite loss and "
                "validation exact match >= 0.9", ["norm", "peak lr", "last loss", "valid", "stable"],
                [[r["norm"], f"{r['lr']:g}", r["last_loss"], r["valid"],
                  "diverged" if r["diverged"] else ("yes" if r["stable"] else "no")] for r in rows])
    for norm in norms:
        stable = [r["lr"] for r in rows if r["norm"] == norm and r["stable"]]
        print(f"  largest stable peak lr, {norm}-LN: {max(stable):g}" if stable else
              f"  largest stable peak lr, {norm}-LN: none of {lrs}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), metavar="TASK")
    ap.add_argument("--minutes", type=float, default=GOAL_MINUTES, help="budget per task")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ln-sweep", action="store_true", help="pre-LN vs post-LN learning-rate sweep instead")
    ap.add_argument("--sweep-task", default="date", choices=list(TASKS))
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    ap.add_argument("--steps", type=int, default=600, help="steps per sweep run")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--grad-clip", type=float, default=1.0, help="0: off")
    ap.add_argument("--layers", type=int, default=None, help="encoder (and decoder) blocks (default: the task's)")
    ap.add_argument("--norms", nargs="+", default=["pre", "post"], choices=["pre", "post"])
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}")
    if args.ln_sweep:
        rows = run_ln_sweep(args.sweep_task, args.lrs, args.steps, args.warmup, args.grad_clip, args.seed,
                            args.layers, tuple(args.norms))
    else:
        rows = run_tasks(args.tasks, args.minutes, args.seed)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
