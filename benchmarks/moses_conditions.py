"""Molecules to order: how close a property-conditioned model lands to the value asked for (issue 14).

    lucidlm chem prepare --out data/moses_logp --condition logP          # 300k MOSES molecules, logP tokens
    lucidlm chem train --config configs/moses_cpu.toml data=data/moses_logp out_dir=runs/moses_logp
    python benchmarks/moses_conditions.py runs/moses_logp/best --values 1 2 3

For each requested value: n molecules sampled from ``<logP=value> <bos>`` (temperature 1, the
model's own distribution), then validity, uniqueness, novelty against MOSES train, and the
property's mean absolute deviation (MAD) from the value, its SD and mean, over the valid
molecules (``chem.conditions.conditioned_metrics``) - the measures MolGPT reports. Beside each
MAD, the baseline a model that ignored the condition would score: the MAD of random MOSES test
molecules from the same value.

Run under the benchmark lock: flock /tmp/lucidlm-bench.lock python benchmarks/moses_conditions.py ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a model trained on a `chem prepare --condition NAME` dataset")
    ap.add_argument("--values", type=float, nargs="+", required=True, help="the property values to ask for")
    ap.add_argument("-n", type=int, default=10_000, help="molecules per value (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from lucidlm.assets import asset_path
    from lucidlm.chem.conditions import (
        compute_properties,
        condition_prefix,
        conditioned_metrics,
        conditions_of,
    )
    from lucidlm.chem.files import read_smiles
    from lucidlm.chem.sample import load_molecule_model, sample_molecules, summarize
    from lucidlm.generate.sampling import SamplingParams

    torch.set_num_threads(args.threads)
    model, tokenizer = load_molecule_model(args.checkpoint)
    conditions = conditions_of(tokenizer)
    if len(conditions) != 1:
        raise SystemExit(f"{args.checkpoint}: expected a model with one condition, found {sorted(conditions)}")
    (name, cond), = conditions.items()
    print(f"{args.checkpoint}: condition {name} from {cond.lo:g} to {cond.hi:g} in steps of {cond.step:g}; "
          f"{args.n:,} molecules per value", flush=True)
    rows = []
    for value in args.values:
        prefix, asked = condition_prefix(tokenizer, (name, value))
        molecules = sample_molecules(model, tokenizer, args.n, params=SamplingParams(seed=args.seed), prefix=prefix)
        print(f"{name}={asked:g}: {summarize(molecules)}", flush=True)
        scores = conditioned_metrics([m.smiles for m in molecules], (name, asked), n_jobs=args.n_jobs)
        rows.append({"asked": asked, **scores})
        print("   " + json.dumps(rows[-1]), flush=True)
    test = read_smiles(asset_path("moses", "test"))
    sample = [test[i] for i in np.random.default_rng(0).choice(len(test), size=min(args.n, len(test)), replace=False)]
    spread = compute_properties(sample, [name], n_jobs=args.n_jobs)[name]
    mean_mad = {r["asked"]: float(np.abs(spread - r["asked"]).mean()) for r in rows}  # asked: the nearest token
    print(f"\n{name}: asked  valid   unique  novelty  MAD     SD      mean    (MAD of MOSES test itself)")
    for r in rows:
        print(f"  {r['asked']:>9g}  {r['valid']:.3f}  {r['unique']:.3f}   {r['novelty']:.3f}    "
              f"{r[f'{name} MAD']:.3f}   {r[f'{name} SD']:.3f}   {r[f'{name} mean']:.3f}   "
              f"({mean_mad[r['asked']]:.3f})")
    print(f"  MOSES test: mean {spread.mean():.3f}, SD {spread.std():.3f} ({len(spread):,} random molecules): the "
          "last column is the MAD of molecules drawn without regard to the condition")
    if args.json:
        Path(args.json).write_text(json.dumps({"property": name, "rows": rows, "test_mean": float(spread.mean()),
                                               "test_sd": float(spread.std()), "unconditioned_mad": mean_mad}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
