"""Prompting techniques measured on a task with known answers: SmolLM2-135M-Instruct on one-step
arithmetic word problems ("Sam has 13 cookies and loses 10. How many cookies does Sam have now?",
``lucidlm.data.word_problems``), one core, fp32.

    flock /tmp/lucidlm-bench.lock .venv/bin/python benchmarks/prompting.py [--items 100] [--sc-items 30] [--k 5]

The defaults take about 10 minutes on one core; ``--items 120 --sc-items 40`` took 13.

Techniques (``lucidlm.generate.prompting``); every greedy one runs on the same ``--items`` problems:
- zero-shot: the question alone; the answer is the last number of the reply (or the one after
  "Answer:" when the model writes it);
- few-shot: 3 solved examples as earlier chat turns, answered with the bare number;
- few-shot CoT (Wei et al. 2022): the same 3 examples answered "13 - 2 = 11. Answer: 11";
- zero-shot CoT (Kojima et al. 2022): "Let's think step by step." and a final "Answer:" line;
- self-consistency (Wang et al. 2022): k sampled paths at temperature 0.7, majority vote, for
  both CoT prompts; k times the cost, so on the first ``--sc-items`` problems only, and compared
  with its greedy prompt on those same problems.
Accuracy carries a 95% Wilson interval; the paired table counts the items one technique got right
and the other wrong, with the exact McNemar p-value (small p: the difference is unlikely to be
luck). The few-shot examples are drawn with another seed and excluded from the test problems.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, pin_to_one_core, print_table  # noqa: E402
from lucidlm import load_model  # noqa: E402
from lucidlm.data.word_problems import word_problems  # noqa: E402
from lucidlm.generate import prompting as P  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100, help="problems for the greedy techniques")
    parser.add_argument("--sc-items", type=int, default=30, help="problems for self-consistency (the first ones)")
    parser.add_argument("--k", type=int, default=5, help="sampled reasoning paths per problem")
    parser.add_argument("--temperature", type=float, default=0.7, help="self-consistency sampling temperature")
    parser.add_argument("--shots", type=int, default=3, help="few-shot examples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test problems")
    parser.add_argument("--batch-size", type=int, default=40, help="prompts decoded together")
    parser.add_argument("--show", type=int, default=1, help="print this many completions per technique")
    args = parser.parse_args()
    if not 1 <= args.sc_items <= args.items:
        parser.error("--sc-items must be between 1 and --items")

    core = pin_to_one_core()
    torch.set_num_threads(1)
    model, tok = load_model("smollm2-135m-instruct")
    model.eval().use_fast_decode()

    shots = word_problems(args.shots, seed=1000)
    problems = word_problems(args.items, seed=args.seed, exclude=tuple(s.question for s in shots))
    questions = [p.question for p in problems]
    bare = [(s.question, str(s.answer)) for s in shots]
    worked = [(s.question, f"{s.a} {s.op} {s.b} = {s.answer}. Answer: {s.answer}") for s in shots]
    run = dict(batch_size=args.batch_size)
    sc = dict(k=args.k, temperature=args.temperature, seed=0, **run)
    n_sc = args.sc_items

    techniques = {  # name -> (number of problems, function giving their predictions)
        "zero-shot": (args.items, lambda: P.zero_shot_predictions(model, tok, questions, max_tokens=48, **run)),
        f"few-shot ({args.shots})": (args.items, lambda: P.few_shot_predictions(
            model, tok, questions, bare, max_tokens=8, **run)),
        f"few-shot CoT ({args.shots})": (args.items, lambda: P.few_shot_predictions(
            model, tok, questions, worked, max_tokens=24, **run)),
        "zero-shot CoT": (args.items, lambda: P.cot_predictions(model, tok, questions, max_tokens=128, **run)),
        f"self-consistency, zero-shot CoT (k={args.k})": (n_sc, lambda: P.self_consistency_predictions(
            model, tok, [P.chain_of_thought(q) for q in questions[:n_sc]], max_tokens=128, **sc)),
        f"self-consistency, few-shot CoT (k={args.k})": (n_sc, lambda: P.self_consistency_predictions(
            model, tok, [P.few_shot(worked, q) for q in questions[:n_sc]], max_tokens=24, **sc)),
    }

    right: dict[str, list[bool]] = {}
    rows = []
    for name, (n, fn) in techniques.items():
        start = time.perf_counter()
        preds = fn()
        seconds = time.perf_counter() - start
        right[name] = [pred.answer == str(p.answer) for pred, p in zip(preds, problems)]
        k = sum(right[name])
        lo, hi = P.wilson_interval(k, n)
        missing = sum(pred.answer is None for pred in preds)
        rows.append([name, n, k, f"{k / n:.1%}", f"[{lo:.1%}, {hi:.1%}]", missing, f"{seconds:.0f}",
                     f"{seconds / n:.2f}"])
        for pred, p in list(zip(preds, problems))[:args.show]:
            votes = f" votes={dict(pred.votes)}" if pred.votes is not None else ""
            print(f"[{name}] {p.question} (answer {p.answer})\n  -> {pred.texts[0]!r}\n  extracted "
                  f"{pred.answer!r}{votes}", flush=True)

    print(f"\nSmolLM2-135M-Instruct, fp32, core {core}, {machine_line()}; test seed {args.seed}, "
          f"few-shot examples seed 1000; greedy decoding except self-consistency (T={args.temperature})")
    print_table("Accuracy on one-step word problems (answers 1..30)",
                ["technique", "items", "right", "accuracy", "95% Wilson", "no answer", "seconds", "s/item"], rows)

    names = list(techniques)
    zero, fs, fs_cot, cot, sc_cot, sc_fs = names
    pairs = [(fs, zero, args.items), (fs_cot, zero, args.items), (cot, zero, args.items),
             (fs_cot, cot, args.items), (sc_cot, cot, n_sc), (sc_fs, fs_cot, n_sc), (sc_fs, zero, n_sc)]
    paired = []
    for a, b, n in pairs:
        a_only, b_only = P.paired_counts(right[a][:n], right[b][:n])
        paired.append([f"{a}  vs  {b}", n, a_only, b_only, f"{P.mcnemar_p(a_only, b_only):.2g}"])
    print_table("Paired comparison on the same problems (A right & B wrong, B right & A wrong)",
                ["A vs B", "items", "A only", "B only", "McNemar p"], paired)


if __name__ == "__main__":
    main()
