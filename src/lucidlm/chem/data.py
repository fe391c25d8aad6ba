"""MOSES SMILES as training data: one molecule per row, ``[BOS] tokens [EOS]``, padding masked.

The MOSES splits (Polykovskiy et al. 2020; the ``moses`` asset: train 1,584,663 / test 176,074 /
test_scaffolds 176,225 RDKit-canonical SMILES) are tokenized with the Molecular Transformer's regex
(``SmilesTokenizer``: 24 distinct tokens on MOSES, at most 54 per molecule) and written as a
token dataset in the "rows" layout (``lucidlm.data.rows``), which ``lucidlm train`` reads:

    "CCO"   ->   <bos> C C O <eos> <pad> <pad> ...     one row of 56 ids (54 + BOS + EOS)
    x       =    <bos> C C O <eos> <pad> ...            the row without its last id
    y       =      C   C O <eos> -100  -100 ...         the row shifted by one; padding has no loss

Why rows, not a packed stream ``<bos> a <eos> <bos> b <eos> ...``? Packing wastes no compute on
padding, but each molecule would then attend to the molecules before it in the window, while
sampling starts from a lone ``<bos>`` at position 0. With rows, training sees exactly what
sampling does: every molecule starts at position 0 after ``<bos>``, and the model learns when to
stop (``<eos>`` is a target) rather than being cut off. This avoids the pitfalls of the
tutorial this follows (Jablonka 2024): a loss on the last token only, left padding with absolute
positions, no end token, and every sample forced to start with "C".

With ``condition="logP"`` (or QED, SAS, TPSA) each row starts with the molecule's property as a
token, ``<logP=2.25> <bos> C C O <eos>`` (``conditions.py``), so the model learns to write a
molecule to order; with ``condition="scaffold"``, with ``<scaffold>`` and the molecule's own
Bemis-Murcko scaffold in SMILES tokens (``scaffolds.py``). The dataset is then a random ``subset``
of train (computing QED or SAS takes about a millisecond a molecule) and holds no test splits.

Validation is a random ``val_size`` molecules held out of MOSES train (seeded), not MOSES test:
choosing the best checkpoint on test would leak into the test metrics (FCD/Test, SNN/Test).
MOSES test and test_scaffolds are written too, for their losses; the metrics read the asset.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lucidlm.chem.files import read_smiles

MOSES_SPLITS = ("train", "test", "test_scaffolds")  # the moses asset's members
DEFAULT_VAL_SIZE = 10_000
DEFAULT_CONDITION_SUBSET = 300_000  # molecules of a conditioned dataset: more than an hour of CPU training sees


# ----------------------------------------------------------------------------------------------
# molecules -> ids


def build_tokenizer(smiles: Iterable[str]):
    """A SmilesTokenizer whose vocabulary is the tokens of ``smiles``, most frequent first, after
    ``<pad> <bos> <eos> <unk>``: 28 ids on MOSES. A string that cannot be tokenized adds nothing
    here; ``encode_molecules`` reports it."""
    from lucidlm.tokenizers.simple import SMILES_SPECIAL_TOKENS, SmilesTokenizer, tokenize_smiles

    counts: Counter[str] = Counter()
    for s in smiles:
        try:
            counts.update(tokenize_smiles(s))
        except ValueError:
            continue
    kept = sorted((t for t in counts if t not in SMILES_SPECIAL_TOKENS), key=lambda t: (-counts[t], t))
    return SmilesTokenizer([*SMILES_SPECIAL_TOKENS, *kept])


def encode_molecules(tokenizer, smiles: Sequence[str], *, where: str = "molecules",
                     progress: bool = False, prefixes: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Each SMILES as ``[bos, *tokens, eos]`` (``[*prefix, bos, *tokens, eos]`` with ``prefixes``,
    ids per molecule: its condition token, or its scaffold). A token the vocabulary lacks is an error, never a
    silent ``<unk>`` (the model would learn to write it); so is an empty string or one with
    characters no SMILES token matches. The error counts every bad molecule and shows the first."""
    from tqdm.auto import tqdm

    stoi, bos, eos = tokenizer.stoi, tokenizer.bos_id, tokenizer.eos_id
    out: list[list[int]] = []
    bad: list[tuple[int, str]] = []
    for i, s in enumerate(tqdm(smiles, desc=f"tokenizing {where}", unit=" mol", disable=not progress,
                               mininterval=1.0)):
        try:
            tokens = tokenizer.tokenize(s) if s else None
        except ValueError as exc:
            bad.append((i, str(exc)))
            continue
        if tokens is None:
            bad.append((i, "an empty SMILES"))
            continue
        unknown = [t for t in tokens if t not in stoi]
        if unknown:
            bad.append((i, f"{s!r} has token {unknown[0]!r}, which is not in the vocabulary of the training "
                           f"molecules ({tokenizer.vocab_size} tokens)"))
            continue
        out.append([*(() if prefixes is None else prefixes[i]), bos, *(stoi[t] for t in tokens), eos])
    if bad:
        i, why = bad[0]
        raise ValueError(f"{where}: {len(bad)} of {len(smiles)} molecules cannot be encoded; the first, molecule "
                         f"{i + 1}: {why}")
    return out


def _condition_prefixes(tokenizer, name: str, splits: dict[str, Sequence[str] | None], *, n_jobs: int,
                        progress: bool):
    """The tokenizer with ``name``'s condition tokens appended, each split's condition ids, and
    what was fitted (for meta.json)."""
    from lucidlm.chem.conditions import compute_properties, fit_condition
    from lucidlm.tokenizers.simple import SmilesTokenizer

    values = {split: compute_properties(mols, [name], n_jobs=n_jobs, progress=progress)[name]
              for split, mols in splits.items() if mols}
    for split, vals in values.items():  # a molecule without a value has no condition token: refuse it
        bad = np.flatnonzero(np.isnan(vals))
        if bad.size:
            raise ValueError(f"{bad.size} molecules of the {split} split have no {name} (RDKit cannot parse them); "
                             f"the first, molecule {bad[0] + 1}: {splits[split][bad[0]]!r}")
    cond = fit_condition(name, values["train"])
    tokenizer = SmilesTokenizer([*tokenizer.tokens, *(t for t in cond.tokens() if t not in tokenizer.stoi)])
    prefixes = {split: [[tokenizer.stoi[cond.token(v)]] for v in vals] for split, vals in values.items()}
    fitted = {"name": name, "step": cond.step, "lo": cond.lo, "hi": cond.hi, "tokens": len(cond.tokens()),
              "train_mean": round(float(values["train"].mean()), 4),
              "train_sd": round(float(values["train"].std()), 4)}
    return tokenizer, prefixes, fitted


def _scaffold_prefixes(tokenizer, splits: dict[str, Sequence[str] | None], *, n_jobs: int, progress: bool):
    """The tokenizer with ``<scaffold>`` appended, and each split's prefixes: ``<scaffold>`` and the
    molecule's own Bemis-Murcko scaffold in SMILES tokens (``scaffolds.py``)."""
    from lucidlm.chem.scaffolds import SCAFFOLD_TOKEN, scaffolds_of
    from lucidlm.tokenizers.simple import SmilesTokenizer

    scaffolds = {split: scaffolds_of(mols, n_jobs=n_jobs, progress=progress) for split, mols in splits.items() if mols}
    for split, found in scaffolds.items():
        bad = [i for i, sc in enumerate(found) if sc is None]
        if bad:
            raise ValueError(f"{len(bad)} molecules of the {split} split have no scaffold (RDKit cannot parse them); "
                             f"the first, molecule {bad[0] + 1}: {splits[split][bad[0]]!r}")
    spelled = {split: [tokenizer.tokenize(sc) if sc else [] for sc in found] for split, found in scaffolds.items()}
    seen = {t for rows in spelled.values() for tokens in rows for t in tokens}
    new = sorted(seen - set(tokenizer.stoi))  # a scaffold may spell an atom its molecules never do ([nH])
    tokenizer = SmilesTokenizer([*tokenizer.tokens, *new, SCAFFOLD_TOKEN])
    marker, stoi = tokenizer.stoi[SCAFFOLD_TOKEN], tokenizer.stoi
    prefixes = {split: [[marker, *(stoi[t] for t in tokens)] for tokens in rows] for split, rows in spelled.items()}
    return tokenizer, prefixes


# ----------------------------------------------------------------------------------------------
# the dataset


def prepare_smiles(out_dir: str | os.PathLike, train: Sequence[str], *, val: Sequence[str] | None = None,
                   val_size: int = DEFAULT_VAL_SIZE, seed: int = 0, extra: dict[str, Sequence[str]] | None = None,
                   tokenizer=None, condition: str | None = None, n_jobs: int = 2, info: dict | None = None,
                   overwrite: bool = False, progress: bool = True) -> dict:
    """Write a rows dataset of molecules to ``out_dir`` (see the module docstring); returns its
    meta.json. ``val``: the validation molecules; None holds ``val_size`` of ``train`` out (a
    seeded random choice). ``extra``: more splits (MOSES test, test_scaffolds).

    ``tokenizer``: encode with this vocabulary (a model's, to fine-tune it on new molecules); a
    molecule with a token it lacks is then an error. None builds the vocabulary from every split
    given: on MOSES, train alone has all 24 tokens, but a trial on its first molecules may not.

    ``condition``: a property name (``conditions.PROPERTIES``): each row starts with its value's
    token, the tokens fitted to the training molecules' values (``n_jobs`` processes compute them)."""
    from lucidlm.data.rows import pad_rows, write_rows_dataset

    train = list(train)
    if not train:
        raise ValueError("no training molecules")
    if Path(out_dir).expanduser().exists() and not overwrite:  # before minutes of tokenizing, not after
        raise ValueError(f"{out_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    if tokenizer is None:
        tokenizer = build_tokenizer([*train, *(val or ()), *(s for mols in (extra or {}).values() for s in mols)])
    prefixes = {}  # split -> ids before <bos> per molecule: its condition token, or its scaffold
    splits = {"train": train, "val": val, **(extra or {})}
    if condition == "scaffold":
        tokenizer, prefixes = _scaffold_prefixes(tokenizer, splits, n_jobs=n_jobs, progress=progress)
        info = {**(info or {}), "condition": {"name": "scaffold"}}
    elif condition is not None:
        tokenizer, prefixes, fitted = _condition_prefixes(tokenizer, condition, splits, n_jobs=n_jobs,
                                                          progress=progress)
        info = {**(info or {}), "condition": fitted}
    # encode before holding val out, so that an error counts the bad molecules of the whole file
    encoded = {"train": encode_molecules(tokenizer, train, where="the training molecules", progress=progress,
                                         prefixes=prefixes.get("train"))}
    held_out = val is None
    if held_out:
        if not 0 < val_size < len(train):
            raise ValueError(f"val_size={val_size} must be between 1 and the {len(train) - 1} molecules "
                             "train can spare")
        order = np.random.default_rng(seed).permutation(len(train))
        held = np.zeros(len(train), dtype=bool)
        held[order[:val_size]] = True
        rows = encoded.pop("train")
        encoded["train"] = [r for r, h in zip(rows, held) if not h]
        encoded["val"] = [r for r, h in zip(rows, held) if h]
    else:
        encoded["val"] = encode_molecules(tokenizer, val, where="the validation molecules", progress=progress,
                                          prefixes=prefixes.get("val"))
    for name, mols in (extra or {}).items():
        encoded[name] = encode_molecules(tokenizer, mols, where=f"the {name} split", progress=progress,
                                         prefixes=prefixes.get(name))
    row_length = max(len(ids) for rows in encoded.values() for ids in rows)
    arrays = {name: pad_rows(rows, tokenizer.pad_id, row_length) for name, rows in encoded.items()}
    bos = tokenizer.bos_id

    def molecule_tokens(ids: list[int]) -> int:  # after any prefix: <bos> tokens <eos>
        return len(ids) - ids.index(bos) - 2

    lengths = np.array([molecule_tokens(ids) for ids in encoded["train"]])
    info = {"molecules": {name: len(rows) for name, rows in encoded.items()},
            "tokens_per_molecule": {"max": int(max(molecule_tokens(ids) for rows in encoded.values() for ids in rows)),
                                    "mean_train": round(float(lengths.mean()), 2)},
            "val_from_train": {"size": len(encoded["val"]), "seed": seed} if held_out else None,
            **(info or {})}
    return write_rows_dataset(out_dir, arrays, tokenizer, pad_id=tokenizer.pad_id, info=info, overwrite=overwrite)


def prepare_moses(out_dir: str | os.PathLike, *, val_size: int = DEFAULT_VAL_SIZE, seed: int = 0,
                  limit: int | None = None, condition: str | None = None, subset: int | None = None,
                  n_jobs: int = 2, overwrite: bool = False, progress: bool = True) -> dict:
    """The MOSES benchmark's splits as a training dataset in ``out_dir`` (a minute or two: 1.9M
    molecules to tokenize). ``limit``: only the first ``limit`` molecules of each split (a trial).

    ``condition``: a property to condition on (see the module docstring); then only train is
    read, and ``subset`` (default 300,000) of its molecules, chosen at random (seeded), are used."""
    from lucidlm.assets import asset_path

    if condition is None:
        if subset is not None:
            raise ValueError("subset goes with condition (the unconditional dataset is the whole of MOSES train)")
        smiles = {name: read_smiles(asset_path("moses", name), limit=limit) for name in MOSES_SPLITS}
    else:
        train = read_smiles(asset_path("moses", "train"), limit=limit)
        subset = min(DEFAULT_CONDITION_SUBSET if subset is None else subset, len(train))
        if subset < 2:
            raise ValueError(f"subset={subset}: at least 2 molecules (one to train on, one to validate)")
        chosen = np.sort(np.random.default_rng(seed).choice(len(train), size=subset, replace=False))
        smiles = {"train": [train[i] for i in chosen]}
    if limit is not None or condition is not None:  # a few molecules: hold out a tenth of them at most
        val_size = min(val_size, max(1, len(smiles["train"]) // 10))
    return prepare_smiles(out_dir, smiles["train"], val_size=val_size, seed=seed,
                          extra={name: smiles[name] for name in ("test", "test_scaffolds") if name in smiles},
                          condition=condition, n_jobs=n_jobs,
                          info={"source": "moses asset (molsets==0.3.1)", "limit": limit, "subset": subset},
                          overwrite=overwrite, progress=progress)
