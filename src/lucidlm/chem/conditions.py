"""Asking for a property: molecules written to order (MolGPT's property conditioning, as tokens).

MolGPT (Bagal et al. 2022) trains its GPT with a molecule's property value fed in front of the
SMILES, then asks for, say, logP = 2.0 and measures how far the generated molecules' logP lands
from 2.0 (the mean absolute deviation, MAD). Here the condition is a token, so the model, the
trainer and the sampler stay the plain GPT of the rest of the project:

    "CCO" with logP -0.0014   ->   <logP=0> <bos> C C O <eos> <pad> ...
    sampling "logP = 2"       ->   start from <logP=2> <bos>, write until <eos>

A property's values are rounded to a step (logP to 0.25, QED to 0.02, SAS to 0.1, TPSA to 4 A^2)
and each step is a token ``<NAME=VALUE>``; values beyond the 0.5th..99.5th percentiles of the
training molecules share the edge tokens. The rounding costs at most half a step of precision (an
error of a quarter step on average), small beside the deviations MolGPT reports. The tokens live
in the tokenizer's vocabulary, after the SMILES tokens, so a saved model carries its conditions:
``conditions_of(tokenizer)`` reads them back.

The four properties of MolGPT, computed with RDKit as MOSES computes them:
- logP: Wildman-Crippen octanol/water partition coefficient (``Crippen.MolLogP``);
- QED: quantitative estimate of drug-likeness, 0..1 (``QED.qed``);
- SAS: synthetic accessibility, 1 (easy) .. 10 (hard) (Ertl & Schuffenhauer; RDKit Contrib's sascorer);
- TPSA: topological polar surface area in A^2 (``rdMolDescriptors.CalcTPSA``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lucidlm.chem import features

# name -> (rounding step, what it is); the functions are looked up inside RDKit when needed.
PROPERTIES: dict[str, tuple[float, str]] = {
    "logP": (0.25, "Wildman-Crippen logP"),
    "QED": (0.02, "drug-likeness, 0..1"),
    "SAS": (0.1, "synthetic accessibility, 1 easy .. 10 hard"),
    "TPSA": (4.0, "topological polar surface area, A^2"),
}
_TOKEN = re.compile(r"^<(?P<name>[A-Za-z]+)=(?P<value>-?[0-9.]+)>$")
_EDGE_PERCENTILES = (0.5, 99.5)


def property_function(name: str):
    """The RDKit function mol -> float of property ``name`` (one of PROPERTIES)."""
    if name not in PROPERTIES:
        raise ValueError(f"unknown property {name!r}: choose from {', '.join(PROPERTIES)}")
    features.rdkit()
    if name == "logP":
        from rdkit.Chem import Crippen

        return Crippen.MolLogP
    if name == "QED":
        from rdkit.Chem import QED

        return QED.qed
    if name == "SAS":
        from rdkit.Contrib.SA_Score import sascorer  # shipped inside the rdkit wheel

        return sascorer.calculateScore
    from rdkit.Chem import rdMolDescriptors

    return rdMolDescriptors.CalcTPSA


def _property_chunk(chunk: list[str], names: tuple[str, ...]) -> list[tuple[float, ...] | None]:
    functions = [property_function(name) for name in names]
    out: list[tuple[float, ...] | None] = []
    for s in chunk:
        mol = features.parse(s)
        out.append(None if mol is None else tuple(float(f(mol)) for f in functions))
    return out


def compute_properties(smiles: Sequence[str], names: Sequence[str], *, n_jobs: int = 1,
                       progress: bool = True) -> dict[str, np.ndarray]:
    """``{name: values}`` for each property of each SMILES (float64 arrays as long as ``smiles``;
    NaN for an invalid SMILES), in ``n_jobs`` processes."""
    names = tuple(names)
    for name in names:
        property_function(name)  # unknown names and a missing RDKit fail here, not in a worker
    rows = features.map_molecules(functools.partial(_property_chunk, names=names), list(smiles), n_jobs=n_jobs,
                                  progress=progress, desc="properties")
    table = np.array([r if r is not None else (math.nan,) * len(names) for r in rows], dtype=np.float64)
    table = table.reshape(len(rows), len(names))
    return {name: table[:, i] for i, name in enumerate(names)}


def _decimals(step: float) -> int:
    """The step's decimal places (0.25 -> 2, 4.0 -> 0): values are rounded to these, so that
    0.1 * 3 is 0.3 and the token reads <SAS=0.3>, not <SAS=0.30000000000000004>."""
    return len(f"{step:g}".partition(".")[2])


@dataclass(frozen=True)
class Condition:
    """A property's tokens: values rounded to ``step``, from ``lo`` to ``hi`` (both multiples of it)."""

    name: str
    step: float
    lo: float
    hi: float

    @property
    def decimals(self) -> int:
        return _decimals(self.step)

    def values(self) -> list[float]:
        n = round((self.hi - self.lo) / self.step)
        return [round(self.lo + i * self.step, self.decimals) for i in range(n + 1)]

    def round(self, value: float) -> float:
        """``value`` on this condition's grid: rounded to the step, clamped to [lo, hi]."""
        if not math.isfinite(value):
            raise ValueError(f"{self.name} = {value}: a condition needs a finite value")
        snapped = round(round(value / self.step) * self.step, self.decimals)
        return min(max(snapped, self.lo), self.hi)

    def token(self, value: float) -> str:
        return f"<{self.name}={self.round(value):g}>"

    def tokens(self) -> list[str]:
        return [f"<{self.name}={v:g}>" for v in self.values()]


def fit_condition(name: str, values: np.ndarray) -> Condition:
    """The tokens of property ``name`` for these training values: the grid of its step from the
    0.5th to the 99.5th percentile (NaNs, from invalid molecules, ignored)."""
    if name not in PROPERTIES:
        raise ValueError(f"unknown property {name!r}: choose from {', '.join(PROPERTIES)}")
    step = PROPERTIES[name][0]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"no molecule has a {name} value to condition on")
    lo, hi = np.percentile(finite, _EDGE_PERCENTILES)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return Condition(name, step, round(lo, _decimals(step)), round(max(hi, lo), _decimals(step)))


def conditions_of(tokenizer) -> dict[str, Condition]:
    """The conditions a tokenizer's vocabulary holds (``<NAME=VALUE>`` tokens), by name; {} for a
    model trained without any."""
    found: dict[str, list[float]] = {}
    for token in getattr(tokenizer, "tokens", None) or []:
        m = _TOKEN.match(token)
        if m:
            found.setdefault(m["name"], []).append(float(m["value"]))
    out = {}
    for name, vals in found.items():
        step = PROPERTIES.get(name, (min(np.diff(sorted(vals))) if len(vals) > 1 else 1.0,))[0]
        out[name] = Condition(name, step, min(vals), max(vals))
    return out


def parse_request(text: str) -> tuple[str, float]:
    """``"logP=2.5"`` -> ("logP", 2.5); a clear error for anything else."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name or not math.isfinite(number):
        raise ValueError(f"{text!r}: ask for a property as NAME=VALUE, e.g. logP=2.5 or TPSA=60")
    return name.strip(), number


def condition_prefix(tokenizer, request: str | tuple[str, float]) -> tuple[list[int], float]:
    """The ids to sample from for ``request`` ("logP=2.5"): ``[<logP=2.5>]``, and the value the
    token stands for (the request rounded to the grid). The model must have been trained with
    that property; a value outside its range is an error, not a silent edge token."""
    name, value = parse_request(request) if isinstance(request, str) else request
    conditions = conditions_of(tokenizer)
    if name not in conditions:
        have = ", ".join(f"{c.name} {c.lo:g}..{c.hi:g}" for c in conditions.values()) or "none"
        raise ValueError(f"this model was not trained to condition on {name!r} (its conditions: {have}); "
                         "train one with `lucidlm chem prepare --condition NAME`")
    cond = conditions[name]
    half = cond.step / 2
    if not cond.lo - half <= value <= cond.hi + half:
        raise ValueError(f"{name} = {value:g} is outside what this model saw in training ({cond.lo:g} to {cond.hi:g})")
    token = cond.token(value)
    return [tokenizer.stoi[token]], cond.round(value)


def deviation_report(values: np.ndarray, target: float) -> dict[str, float]:
    """MolGPT's measure for molecules asked for ``target``: the mean absolute deviation of their
    property from it, with the standard deviation and the mean, over the valid ones (finite values)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"n": 0, "MAD": math.nan, "SD": math.nan, "mean": math.nan}
    return {"n": int(finite.size), "MAD": float(np.abs(finite - target).mean()), "SD": float(finite.std()),
            "mean": float(finite.mean())}


def conditioned_metrics(smiles: Sequence[str], request: str | tuple[str, float], *, train=None, n_jobs: int = 2,
                        progress: bool = True) -> dict[str, float]:
    """What MolGPT reports for molecules generated to order: validity, uniqueness, novelty
    (against ``train``: None for MOSES train, as in ``metrics.moses_metrics``), and the property's
    MAD, SD and mean over the valid molecules, for ``request`` ("logP=2")."""
    from lucidlm.chem.metrics import sample_scores

    name, target = parse_request(request) if isinstance(request, str) else request
    property_function(name)
    valid, out = sample_scores(smiles, train=train, n_jobs=n_jobs, progress=progress)
    if not valid:
        return out | {f"{name} MAD": math.nan, f"{name} SD": math.nan, f"{name} mean": math.nan}
    report = deviation_report(compute_properties(valid, [name], n_jobs=n_jobs, progress=progress)[name], target)
    return out | {f"{name} MAD": report["MAD"], f"{name} SD": report["SD"], f"{name} mean": report["mean"]}
