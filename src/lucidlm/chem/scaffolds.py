"""Molecules around a given scaffold: the Bemis-Murcko scaffold as a prefix (MolGPT's scaffold condition).

A molecule's Bemis-Murcko scaffold is its ring systems and the chains that link them, side chains
removed (``features.murcko_scaffold``): ``CCc1ccc(Cc2ccccn2)cc1`` -> ``c1ccc(Cc2ccccn2)cc1``. To
train a GPT that writes molecules around a scaffold the user chooses, each training row starts
with its molecule's own scaffold, spelled in the same SMILES tokens after a marker token:

    <scaffold> c 1 c c c ( C c 2 c c c c n 2 ) c c 1 <bos> C C c 1 c c c ( C c 2 c c c c n 2 ) c c 1 <eos>

and sampling starts from ``<scaffold> (the scaffold's tokens) <bos>``. An acyclic molecule has an
empty scaffold (``<scaffold> <bos> ...``). The measure, as MolGPT's: among valid samples, the
share whose own scaffold is exactly the one asked for ("same scaffold"), and the share that
contain it as a substructure; with validity, uniqueness and novelty as for any sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lucidlm.chem import features

SCAFFOLD_TOKEN = "<scaffold>"


def scaffold_of(smiles: str) -> str | None:
    """The canonical Bemis-Murcko scaffold of a SMILES ("" when it has no ring), or None when
    RDKit cannot parse it.

    >>> scaffold_of("CCc1ccc(Cc2ccccn2)cc1"), scaffold_of("CCO"), scaffold_of("C1CC")
    ('c1ccc(Cc2ccccn2)cc1', '', None)
    """
    mol = features.parse(smiles)
    if mol is None:
        return None
    return features.murcko_scaffold(mol, min_rings=0) or ""


def _scaffolds_chunk(chunk: list[str]) -> list[str | None]:
    return [scaffold_of(s) for s in chunk]


def scaffolds_of(smiles: Sequence[str], *, n_jobs: int = 1, progress: bool = True) -> list[str | None]:
    """``scaffold_of`` of every SMILES, in ``n_jobs`` processes."""
    return features.map_molecules(_scaffolds_chunk, list(smiles), n_jobs=n_jobs, progress=progress, desc="scaffolds")


def scaffold_prefix(tokenizer, scaffold: str) -> tuple[list[int], str]:
    """The ids to sample from for molecules around ``scaffold``: ``<scaffold>`` and the scaffold's
    tokens, RDKit-canonical as in training (so "C1=CC=CC=C1" asks for "c1ccccc1"); and that
    canonical scaffold. The model must have been trained with scaffolds (``chem prepare
    --condition scaffold``); a scaffold that is not one, or has a token the model never saw, is an error."""
    if SCAFFOLD_TOKEN not in tokenizer.stoi:
        raise ValueError("this model was not trained with scaffolds; train one with "
                         "`lucidlm chem prepare --condition scaffold`")
    if not scaffold:
        raise ValueError("the scaffold is empty; give the SMILES of a ring system, e.g. c1ccccc1")
    mol = features.parse(scaffold)
    if mol is None:
        raise ValueError(f"{scaffold!r} is not a valid SMILES (RDKit cannot parse it)")
    canonical = features.rdkit().MolToSmiles(mol)
    if scaffold_of(canonical) != canonical:
        raise ValueError(f"{scaffold!r} is not a Bemis-Murcko scaffold (its scaffold is "
                         f"{scaffold_of(canonical)!r}): give ring systems and their linkers, no side chains")
    tokens = tokenizer.tokenize(canonical)
    unknown = [t for t in tokens if t not in tokenizer.stoi]
    if unknown:
        raise ValueError(f"{canonical!r} has token {unknown[0]!r}, which this model never saw")
    return [tokenizer.stoi[SCAFFOLD_TOKEN], *(tokenizer.stoi[t] for t in tokens)], canonical


def scaffold_metrics(smiles: Sequence[str], scaffold: str, *, train=None, n_jobs: int = 2,
                     progress: bool = True) -> dict[str, float]:
    """For molecules asked to be built around ``scaffold`` (canonical, as ``scaffold_prefix``
    returns it): validity, uniqueness, novelty (against ``train``: None for MOSES train), and,
    among the valid ones, the share whose scaffold is exactly ``scaffold`` and the share that
    contain it as a substructure."""
    from lucidlm.chem.metrics import sample_scores

    valid, out = sample_scores(smiles, train=train, n_jobs=n_jobs, progress=progress)
    if not valid:
        return out | {"same scaffold": math.nan, "contains scaffold": math.nan}
    theirs = scaffolds_of(valid, n_jobs=n_jobs, progress=progress)
    out["same scaffold"] = sum(s == scaffold for s in theirs) / len(valid)
    pattern = features.parse(scaffold)
    out["contains scaffold"] = sum(features.parse(s).HasSubstructMatch(pattern) for s in valid) / len(valid)
    return out
