"""Molecules around a scaffold: how often a scaffold-conditioned model keeps the scaffold asked for (issue 14).

    lucidlm chem prepare --out data/moses_scaffold --condition scaffold     # 300k MOSES molecules, scaffold prefixes
    lucidlm chem train --config configs/moses_scaffold.toml
    python benchmarks/moses_scaffolds.py runs/moses_scaffold/best [--scaffolds 5] [-n 500]

Scaffolds asked for, two groups: the most common Bemis-Murcko scaffolds (with a ring) of MOSES test,
which the training molecules also have, and the most common of MOSES test_scaffolds, a split whose
scaffolds no training molecule has (so the model never saw a row start with them). For each:
n molecules sampled from ``<scaffold> SCAFFOLD <bos>`` (temperature 1), then validity, uniqueness,
novelty against MOSES train, and among the valid ones the share whose own scaffold is exactly the
one asked for and the share that contain it (``chem.scaffolds.scaffold_metrics``). Beside them,
what a model that ignored the prefix would score: the share of MOSES train with that exact scaffold.

Run under the benchmark lock: flock /tmp/lucidlm-bench.lock python benchmarks/moses_scaffolds.py ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def common_scaffolds(smiles: list[str], k: int, n_jobs: int) -> list[tuple[str, int]]:
    from lucidlm.chem.scaffolds import scaffolds_of

    counts = Counter(s for s in scaffolds_of(smiles, n_jobs=n_jobs, progress=False) if s)
    return counts.most_common(k)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a model trained on a `chem prepare --condition scaffold` dataset")
    ap.add_argument("--scaffolds", type=int, default=5, help="scaffolds per group (default: %(default)s)")
    ap.add_argument("-n", type=int, default=500, help="molecules per scaffold (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from lucidlm.assets import asset_path
    from lucidlm.chem.files import read_smiles
    from lucidlm.chem.sample import load_molecule_model, sample_molecules, summarize
    from lucidlm.chem.scaffolds import scaffold_metrics, scaffold_prefix, scaffolds_of
    from lucidlm.generate.sampling import SamplingParams

    torch.set_num_threads(args.threads)
    model, tokenizer = load_molecule_model(args.checkpoint)
    rng = np.random.default_rng(0)

    def some(split: str, n: int) -> list[str]:
        mols = read_smiles(asset_path("moses", split))
        return [mols[i] for i in rng.choice(len(mols), size=min(n, len(mols)), replace=False)]

    groups = {"in train (MOSES test)": common_scaffolds(some("test", 20_000), args.scaffolds, args.n_jobs),
              "unseen (MOSES test_scaffolds)": common_scaffolds(some("test_scaffolds", 20_000), args.scaffolds,
                                                                args.n_jobs)}
    train_sample = some("train", 100_000)
    train_scaffolds = Counter(scaffolds_of(train_sample, n_jobs=args.n_jobs, progress=False))
    print(f"{args.checkpoint}: {args.n:,} molecules per scaffold", flush=True)
    rows = []
    for group, scaffolds in groups.items():
        for scaffold, _ in scaffolds:
            prefix, canonical = scaffold_prefix(tokenizer, scaffold)
            molecules = sample_molecules(model, tokenizer, args.n, params=SamplingParams(seed=args.seed),
                                         prefix=prefix, progress=False)
            scores = scaffold_metrics([m.smiles for m in molecules], canonical, n_jobs=args.n_jobs, progress=False)
            rows.append({"group": group, "scaffold": canonical, **scores,
                         "train share": train_scaffolds[canonical] / len(train_sample)})
            print(f"  {canonical}: {summarize(molecules)}\n   {json.dumps(rows[-1])}", flush=True)
    print(f"\n{'group':<31} {'scaffold':<34} valid  unique novelty  same   contains  (train share)")
    for r in rows:
        print(f"{r['group']:<31} {r['scaffold']:<34} {r['valid']:.3f}  {r['unique']:.3f}  {r['novelty']:.3f}   "
              f"{r['same scaffold']:.3f}  {r['contains scaffold']:.3f}     ({r['train share']:.4f})")
    for group in groups:
        mine = [r for r in rows if r["group"] == group]
        means = {k: float(np.nanmean([r[k] for r in mine])) for k in ("valid", "unique", "novelty", "same scaffold",
                                                                       "contains scaffold")}
        print(f"mean, {group}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
