"""The reference side of the MOSES metrics: test-set statistics and the training set, made once and kept.

A generated sample is compared with two reference sets, MOSES's Test and TestSF (scaffold test):
ChemNet's mean and covariance (FCD), every molecule's fingerprint (SNN) and the counts of BRICS
fragments (Frag) and Bemis-Murcko scaffolds (Scaf). Novelty compares it with the training set.
Computing these for 176,000 molecules takes minutes and gives the same numbers every time, so they
are kept as plain arrays in lucidlm's derived-file cache (``lucidlm.files.derived_cache``: beside
the asset cache, used only while their source file is unchanged), and a second evaluation reads
them back in about a second.

The default reference statistics are MOSES's own, shipped in the molsets wheel as
``test_stats.npz`` and ``test_scaffolds_stats.npz`` (the ``moses`` asset's ``test_stats`` and
``test_scaffolds_stats``). Those files hold one *pickled* Python dict, and unpickling can run any
code a file names. So they are never ``np.load(allow_pickle=True)``-ed: ``read_moses_stats``
unpickles them with an allowlist of the five names their pickle uses (numpy's array
reconstruction, ``numpy.dtype``, ``numpy.ndarray``, ``_codecs.encode`` for raw bytes,
``collections.Counter``) and refuses any other; the arrays are then cached as a plain ``.npz``
(loaded with ``allow_pickle=False``). This is the approach of ``torch.load(weights_only=True)``.
Reference sets of your own (a file or a list of SMILES) are computed here with the same code as the
generated side.

The training set for novelty is re-canonicalised with the installed RDKit (MOSES compares the raw
strings, canonical under RDKit 2019: 0.07% of them are written differently today), once, and kept.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lucidlm.assets import asset_path
from lucidlm.chem import features
from lucidlm.chem.fcd import chemnet_activations, fcd_statistics
from lucidlm.files import derived_cache

FORMAT = "lucidlm-moses-reference"  # name + version of the cached files' layout
VERSION = 1
SPLITS = ("test", "test_scaffolds")


@dataclass
class ReferenceStats:
    """What the metrics need of one reference set."""

    fcd_mu: np.ndarray  # (512,) mean ChemNet activation
    fcd_sigma: np.ndarray  # (512, 512) their covariance
    fingerprints: np.ndarray  # (N, 128) uint8: N Morgan fingerprints, 1024 bits packed (np.packbits)
    fragments: dict[str, int]  # BRICS fragment SMILES -> count over the set
    scaffolds: dict[str, int]  # scaffold SMILES (>= 2 rings) -> count


# --- plain-array files -------------------------------------------------------------------------
def _pack_strings(strings: Sequence[str]) -> np.ndarray:
    """Strings as one uint8 array of UTF-8, newline-separated (SMILES hold no newline): compact,
    and loadable without pickle, unlike an object array."""
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def _unpack_strings(packed: np.ndarray) -> list[str]:
    text = packed.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def _save(path: Path, key: dict, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a temp file's name
        np.savez_compressed(f, key=_pack_strings([json.dumps(key, sort_keys=True)]), **arrays)


def _load(path: Path, key: dict) -> dict[str, np.ndarray] | None:
    """The arrays of a cached file if it was made from this source by this code, else None."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if _unpack_strings(data["key"]) != [json.dumps(key, sort_keys=True)]:
                return None
            return {name: data[name] for name in data.files if name != "key"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # missing, truncated or foreign: derived again


def _cached(source: Path, name: str, derive) -> dict[str, np.ndarray]:
    """``derive()``'s arrays, kept as ``name`` in the derived cache of ``source``."""
    key = {"format": FORMAT, "version": VERSION, "source": derived_cache.source_key(source)}
    path = derived_cache.entry_dir(source) / name
    if derived_cache.enabled() and (arrays := _load(path, key)) is not None:
        return arrays
    arrays = derive()
    if derived_cache.enabled():
        derived_cache.write_derived(source, name, lambda tmp: _save(tmp, key, arrays))
    return arrays


def _to_arrays(stats: ReferenceStats) -> dict[str, np.ndarray]:
    return {"fcd_mu": stats.fcd_mu, "fcd_sigma": stats.fcd_sigma, "fingerprints": stats.fingerprints,
            "fragments": _pack_strings(list(stats.fragments)),
            "fragment_counts": np.array(list(stats.fragments.values()), dtype=np.int64),
            "scaffolds": _pack_strings(list(stats.scaffolds)),
            "scaffold_counts": np.array(list(stats.scaffolds.values()), dtype=np.int64)}


def _from_arrays(a: dict[str, np.ndarray]) -> ReferenceStats:
    return ReferenceStats(a["fcd_mu"], a["fcd_sigma"], a["fingerprints"],
                          dict(zip(_unpack_strings(a["fragments"]), a["fragment_counts"].tolist())),
                          dict(zip(_unpack_strings(a["scaffolds"]), a["scaffold_counts"].tolist())))


# --- MOSES's shipped statistics, read without running pickled code -------------------------------
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),  # NumPy 1, 2
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "Counter")}


class _AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dicts, lists, strings, numbers and Counters, and
    nothing else: any other global the file names raises before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: MOSES's statistics files name only "
                                         "numpy arrays, dtypes, bytes and collections.Counter")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):  # NumPy 2 renamed numpy.core
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_moses_stats(path: str | os.PathLike) -> ReferenceStats:
    """MOSES's ``<split>_stats.npz``: one 0-d object array ``stats`` holding a dict
    ``{"FCD": {"mu", "sigma"}, "SNN": {"fps"}, "Frag": {"frag"}, "Scaf": {"scaf"}, "logP": ..., ...}``
    (the property lists are not needed here)."""
    with zipfile.ZipFile(path) as zf, zf.open("stats.npy") as raw:
        stream = io.BytesIO(raw.read())
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _fortran_order, dtype = read_header(stream)
    if dtype != np.dtype(object) or shape != ():
        raise ValueError(f"{path}: expected MOSES's pickled statistics (a 0-d object array), got {dtype} {shape}")
    stats = _AllowlistUnpickler(stream, encoding="latin1").load().item()  # latin1: Python 2-era bytes
    fps = np.asarray(stats["SNN"]["fps"], dtype=np.uint8)  # (N, 1024) of 0/1
    return ReferenceStats(fcd_mu=np.asarray(stats["FCD"]["mu"], dtype=np.float64),
                          fcd_sigma=np.asarray(stats["FCD"]["sigma"], dtype=np.float64),
                          fingerprints=np.packbits(fps, axis=1),
                          fragments=dict(stats["Frag"]["frag"]), scaffolds=dict(stats["Scaf"]["scaf"]))


def moses_reference(split: str) -> ReferenceStats:
    """MOSES's statistics of ``split`` ("test" or "test_scaffolds"), from the ``moses`` asset."""
    if split not in SPLITS:
        raise ValueError(f"unknown MOSES reference split {split!r}; choose from {', '.join(SPLITS)}")
    source = asset_path("moses", f"{split}_stats")
    return _from_arrays(_cached(source, "reference.npz", lambda: _to_arrays(read_moses_stats(source))))


# --- reference statistics of any SMILES --------------------------------------------------------
def compute_reference(smiles: Sequence[str], *, n_jobs: int = 2, device: str = "cpu", progress: bool = True,
                      name: str = "reference") -> ReferenceStats:
    """The statistics of a reference set of SMILES, computed as for generated molecules (MOSES's
    ``compute_intermediate_statistics``). Invalid SMILES are left out, with a warning that counts them."""
    described = features.map_molecules("describe", smiles, n_jobs=n_jobs, progress=progress, desc=name)
    valid = [d for d in described if d is not None]
    if len(valid) < len(described):
        warnings.warn(f"{name}: {len(described) - len(valid)} of {len(described)} SMILES are invalid and left out",
                      stacklevel=2)
    if len(valid) < 2:
        raise ValueError(f"{name}: a reference set needs at least 2 valid molecules, got {len(valid)}")
    mu, sigma = fcd_statistics(chemnet_activations([d.canonical for d in valid], device=device, progress=progress))
    fingerprints = np.frombuffer(b"".join(d.fingerprint for d in valid), dtype=np.uint8).reshape(len(valid), -1)
    return ReferenceStats(mu, sigma, fingerprints,
                          dict(Counter(f for d in valid for f in d.fragments)),
                          dict(Counter(d.scaffold for d in valid if d.scaffold is not None)))


def reference_stats(ref: str | os.PathLike | Sequence[str] | None, split: str, *, n_jobs: int = 2,
                    device: str = "cpu", progress: bool = True) -> ReferenceStats:
    """The statistics of one reference set: ``None``: MOSES's shipped ones for ``split``; a path: the
    SMILES file's (``lucidlm.chem.files.read_smiles`` formats), computed once and cached; a list of
    SMILES: computed now."""
    if ref is None:
        return moses_reference(split)
    if isinstance(ref, (str, os.PathLike)):
        path = _existing(ref, split)
        derive = lambda: _to_arrays(compute_reference(_read_smiles(path), n_jobs=n_jobs, device=device,  # noqa: E731
                                                      progress=progress, name=path.name))
        return _from_arrays(_cached(path, "reference.npz", derive))
    return compute_reference(list(ref), n_jobs=n_jobs, device=device, progress=progress, name=split)


# --- the training set, for novelty ---------------------------------------------------------------
def canonical_train(train: str | os.PathLike | Sequence[str] | None, *, n_jobs: int = 2,
                    progress: bool = True) -> set[str]:
    """The canonical SMILES of the training set (None: MOSES's 1,584,663 molecules; a path: a
    SMILES file; a list), each re-written by the installed RDKit. From a file, kept in the cache."""
    if train is not None and not isinstance(train, (str, os.PathLike)):
        canon = features.map_molecules("canonical", list(train), n_jobs=n_jobs, progress=progress, desc="train")
        return {c for c in canon if c is not None}
    path = asset_path("moses", "train") if train is None else _existing(train, "train")

    def derive() -> dict[str, np.ndarray]:
        raw = _read_smiles(path)
        canon = features.map_molecules("canonical", raw, n_jobs=n_jobs, progress=progress,
                                       desc=f"canonicalising {path.name} (once; cached)")
        return {"canonical": _pack_strings([c for c in canon if c is not None])}

    return set(_unpack_strings(_cached(path, "canonical.npz", derive)["canonical"]))


def _existing(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist; give a .smi/.csv of SMILES or leave it out "
                                "to use MOSES's")
    return path.resolve()


def _read_smiles(path: Path) -> list[str]:
    """MOSES's split files (``SMILES`` header) fast; any other SMILES file through chem.files."""
    try:
        return features.read_smiles_column(path)
    except ValueError:
        from lucidlm.chem.files import read_smiles

        return read_smiles(path)
