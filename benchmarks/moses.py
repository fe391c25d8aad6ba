"""lucidlm's molecule GPT on the MOSES benchmark, beside the MOSES table (issue 14).

    python benchmarks/moses.py runs/moses_cpu/best                # 3 seeds x 30,000 samples, as MOSES prescribes
    python benchmarks/moses.py runs/moses_cpu/best --seeds 0 -n 10000  # a quicker look (FCD is biased up at small n)
    python benchmarks/moses.py runs/moses_cpu/best --temperature 0.9 --constrained   # colder, syntax-constrained

For each seed: sample n molecules from ``<bos>`` with the model's own distribution (temperature 1,
no top-k/top-p: what MOSES does with its models; ``--temperature`` and ``--constrained``, the
syntax-constrained sampler of ``lucidlm.chem.syntax``, change that and go to OUT/T0.9_constrained/
and the like), write them to OUT/samples_seedS.smi, score them
with ``lucidlm.chem.metrics.moses_metrics`` (checked equal to MOSES's own code in
tests/test_chem_metrics.py) into OUT/metrics_seedS.json. A seed whose metrics file exists is
read, not recomputed, so an interrupted run continues. Then the table: mean +- sd over the seeds
beside the rows of the final MOSES README (molsets 0.3.1) and MolGPT's paper.

Cost on a 2-core machine: ~1 min to sample 30k with a 1.8M-parameter model; ~20 min to score
30k (the first run also re-canonicalises MOSES train for Novelty, ~15 min, cached after).
Run under the benchmark lock: flock /tmp/lucidlm-bench.lock python benchmarks/moses.py ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

COLUMNS = ["valid", "unique@1000", "unique@10000", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF", "Frag/Test",
           "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters", "Novelty"]
HEADER = ["Valid", "Uniq@1k", "Uniq@10k", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF", "Frag/Test",
          "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters", "Novelty"]
# The final MOSES README table (means; molsets 0.3.1), copied number for number from
# ../shared/research/molecules.md, and MolGPT's paper (Bagal et al. 2022: only these columns).
ANCHORS = {
    "Train (MOSES)": [1.0, 1.0, 1.0, 0.008, 0.4755, 0.6419, 0.5859, 1.0, 0.9986, 0.9907, 0.0, 0.8567, 0.8508, 1.0, 1.0],
    "CharRNN": [0.9748, 1.0, 0.9994, 0.0732, 0.5204, 0.6015, 0.5649, 0.9998, 0.9983, 0.9242, 0.1101, 0.8562, 0.8503,
                0.9943, 0.8419],
    "AAE": [0.9368, 1.0, 0.9973, 0.5555, 1.0572, 0.6081, 0.5677, 0.991, 0.9905, 0.9022, 0.0789, 0.8557, 0.8499, 0.996,
            0.7931],
    "VAE": [0.9767, 1.0, 0.9984, 0.099, 0.567, 0.6257, 0.5783, 0.9994, 0.9984, 0.9386, 0.0588, 0.8558, 0.8498, 0.997,
            0.6949],
    "JTN-VAE": [1.0, 1.0, 0.9996, 0.3954, 0.9382, 0.5477, 0.5194, 0.9965, 0.9947, 0.8964, 0.1009, 0.8551, 0.8493, 0.976,
                0.9143],
    "LatentGAN": [0.8966, 1.0, 0.9968, 0.2968, 0.8281, 0.5371, 0.5132, 0.9986, 0.9972, 0.8867, 0.1072, 0.8565, 0.8505,
                  0.9735, 0.9498],
    "MolGPT (paper)": [0.994, None, 1.0, None, None, None, None, None, None, None, None, 0.857, 0.851, None, 0.797],
}
# issue 14's CPU recipe goals: (column, bound, higher is better)
GOALS = [("valid", 0.95, True), ("unique@10000", 0.999, True), ("Novelty", 0.80, True), ("FCD/Test", 0.5, False)]


def score_seed(model, tokenizer, seed: int, n: int, out: Path, n_jobs: int, batch_size: int,
               temperature: float = 1.0, constrained: bool = False) -> dict:
    from lucidlm.chem.files import write_samples
    from lucidlm.chem.metrics import moses_metrics
    from lucidlm.chem.sample import sample_molecules, summarize
    from lucidlm.generate.sampling import SamplingParams

    metrics_file = out / f"metrics_seed{seed}.json"
    if metrics_file.exists():
        record = json.loads(metrics_file.read_text())
        if record.get("n") == n:
            print(f"seed {seed}: read {metrics_file}", flush=True)
            return record
    start = time.perf_counter()
    molecules = sample_molecules(model, tokenizer, n, params=SamplingParams(seed=seed, temperature=temperature),
                                 batch_size=batch_size, constrained=constrained)
    sampled = time.perf_counter() - start
    write_samples(out / f"samples_seed{seed}.smi", [m.smiles for m in molecules])
    print(f"seed {seed}: sampled {n:,} in {sampled:.0f} s; {summarize(molecules)}", flush=True)
    start = time.perf_counter()
    scores = moses_metrics([m.smiles for m in molecules], n_jobs=n_jobs)
    record = {"seed": seed, "n": n, "temperature": temperature, "constrained": constrained, "sample_seconds": round(sampled, 1),
              "score_seconds": round(time.perf_counter() - start, 1), **scores}
    metrics_file.write_text(json.dumps(record, indent=1))
    print(f"seed {seed}: scored in {record['score_seconds']:.0f} s: "
          + ", ".join(f"{k} {scores[k]:.4f}" for k in COLUMNS), flush=True)
    return record


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def table(records: list[dict], label: str) -> None:
    rows = [[name, *[fmt(v) for v in values]] for name, values in ANCHORS.items()]
    means = [statistics.fmean(r[c] for r in records) for c in COLUMNS]
    sds = [statistics.stdev(r[c] for r in records) if len(records) > 1 else 0.0 for c in COLUMNS]
    rows.append([label, *[f"{m:.4f}+-{s:.4f}" for m, s in zip(means, sds)]])
    cells = [["model", *HEADER], *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    print()
    for k, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print("\nGoals of the CPU recipe (issue 14), on the mean:")
    for column, bound, higher in GOALS:
        mean = means[COLUMNS.index(column)]
        met = mean >= bound if higher else mean <= bound
        print(f"  {column:<13} {mean:.4f}  {'>=' if higher else '<='} {bound}: {'met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a model trained by `lucidlm chem train` (e.g. runs/moses_cpu/best)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("-n", type=int, default=30_000, help="samples per seed (MOSES: 30,000)")
    ap.add_argument("--out", help="where samples and metrics go (default: CHECKPOINT/../moses_bench)")
    ap.add_argument("--n-jobs", type=int, default=2, help="processes for RDKit")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2, help="torch threads while sampling")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (MOSES: 1)")
    ap.add_argument("--constrained", action="store_true",
                    help="sample with the SMILES syntax constraint (no unclosed ring or branch; lucidlm.chem.syntax)")
    args = ap.parse_args(argv)

    import torch

    from lucidlm.chem.sample import load_molecule_model

    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "moses_bench"
    if args.temperature != 1.0 or args.constrained:  # never mixed with the plain samples' cached metrics
        out = out / (f"T{args.temperature:g}" + ("_constrained" if args.constrained else ""))
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_molecule_model(args.checkpoint)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.checkpoint}: {params / 1e6:.2f}M parameters; seeds {args.seeds}, {args.n:,} samples each; "
          f"outputs in {out}", flush=True)
    records = [score_seed(model, tokenizer, seed, args.n, out, args.n_jobs, args.batch_size, args.temperature,
                          args.constrained) for seed in args.seeds]
    how = "" if out.name == "moses_bench" else f", {out.name}"
    table(records, f"lucidlm ({len(records)} seed{'s' if len(records) > 1 else ''}{how})")
    (out / "summary.json").write_text(json.dumps({"checkpoint": str(args.checkpoint), "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
