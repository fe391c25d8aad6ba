"""What RDKit says about one molecule, for the MOSES metrics: the work done once per molecule.

MOSES scores a set of generated SMILES from a few per-molecule facts (``moses/metrics/utils.py``
of molsets 0.3.1, read line by line):

    parse        Chem.MolFromSmiles, then Chem.SanitizeMol; the empty string is invalid
    canonical    Chem.MolToSmiles(mol): RDKit's canonical, isomeric SMILES
    fingerprint  Morgan, radius 2, 1024 bits (SNN and IntDiv)
    fragments    the SMILES of the pieces left by cutting every BRICS bond (Frag)
    scaffold     the Bemis-Murcko scaffold's SMILES, kept only with >= 2 rings (Scaf)
    filters      no ring of >= 8 atoms, no charge, only C N S O F Cl Br H, and none of the
                 MCF + PAINS SMARTS matches the molecule with explicit hydrogens (Filters)

``describe`` computes all of them for one SMILES; ``describe_all`` runs it over many SMILES in
``n_jobs`` processes with a progress bar. Like MOSES, every fact after validity is taken from the
molecule parsed back from its canonical SMILES (RDKit's canonical form is a fixed point for all but
a handful of molecules; doing as MOSES does keeps even those equal).

The filters are the slow part: 502 substructure searches on a molecule with its hydrogens, ~12 ms
a molecule. ``passes_filters`` first screens with RDKit's pattern fingerprints: a query can only
match a molecule whose pattern fingerprint has every bit of the query's set, so the ~95% of
(query, molecule) pairs that fail this test are skipped without a search (~3 ms a molecule).
``passes_filters_reference`` is MOSES's plain loop; tests/test_chem_metrics.py checks that both
agree, on molecules that do and do not match.

RDKit is optional: ``pip install 'lucidlm[chem]'``.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FP_BITS = 1024  # Morgan fingerprint length and radius, as in MOSES's `fingerprint(..., 'morgan')`
FP_RADIUS = 2
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})  # MOSES's `mol_passes_filters`
CHUNK = 128  # molecules per task sent to a worker process


def rdkit():
    """The ``rdkit.Chem`` module, or an ImportError that names the pip extra."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise ImportError("the MOSES metrics need RDKit: pip install 'lucidlm[chem]' (or pip install rdkit)") from None
    RDLogger.DisableLog("rdApp.*")  # one "SMILES Parse Error" line per invalid sample is noise here
    return Chem


def parse(smiles: str):
    """MOSES's ``get_mol``: the sanitized molecule of ``smiles``, or None. The empty string is
    invalid (RDKit itself returns a molecule of 0 atoms for it)."""
    if not smiles:
        return None
    Chem = rdkit()
    mol = Chem.MolFromSmiles(smiles)  # parses and sanitizes; None when either fails
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)  # a no-op after MolFromSmiles; kept because MOSES does it
    except ValueError:
        return None
    return mol


def canonical(smiles: str) -> str | None:
    """RDKit's canonical SMILES of ``smiles``, or None when it is invalid.

    >>> canonical("OCC"), canonical("C1CC"), canonical("")
    ('CCO', None, None)
    """
    mol = parse(smiles)
    return None if mol is None else rdkit().MolToSmiles(mol)


def morgan_fingerprint(mol) -> np.ndarray:
    """Morgan (ECFP4-like) bits of ``mol``: (1024,) uint8 of 0/1, the same bits as MOSES's
    ``GetMorganFingerprintAsBitVect(mol, 2, nBits=1024)`` (RDKit's newer generator API)."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = _MORGAN.get("gen")
    if generator is None:  # one generator a process: building it costs more than one fingerprint
        generator = _MORGAN["gen"] = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    return generator.GetFingerprintAsNumPy(mol).astype(np.uint8)


_MORGAN: dict = {}


def brics_fragments(mol) -> list[str]:
    """The SMILES of the fragments left by breaking every BRICS bond of ``mol`` (MOSES's
    ``fragmenter``); the cut points become dummy atoms such as ``[5*]``.

    >>> brics_fragments(parse("CCOC(=O)c1ccccc1"))
    ['[1*]C([6*])=O', '[16*]c1ccccc1', '[3*]O[3*]', '[4*]CC']
    """
    from rdkit.Chem import AllChem

    return rdkit().MolToSmiles(AllChem.FragmentOnBRICSBonds(mol)).split(".")


def murcko_scaffold(mol, min_rings: int = 2) -> str | None:
    """The Bemis-Murcko scaffold of ``mol`` (its ring systems and the chains linking them) as
    SMILES, or None when it has fewer than ``min_rings`` rings (MOSES's ``compute_scaffold``).

    >>> murcko_scaffold(parse("CCc1ccc(Cc2ccccn2)cc1")), murcko_scaffold(parse("CCc1ccccc1"))
    ('c1ccc(Cc2ccccn2)cc1', None)
    """
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = rdkit().MolToSmiles(scaffold)
    if smiles == "" or scaffold.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


# --- Filters -----------------------------------------------------------------------------------
@dataclass
class Filters:
    """The SMARTS of MOSES's Filters metric, compiled, with their pattern fingerprints (for the
    screen in ``passes_filters``): (Q, 2048) bool, one row a query."""

    queries: list
    query_bits: np.ndarray  # (Q, 2048) bool

    @classmethod
    def from_files(cls, mcf_csv: str | os.PathLike, pains_csv: str | os.PathLike) -> Filters:
        """Read ``mcf.csv`` (header ``names,smarts``) and ``wehi_pains.csv`` (no header: a quoted
        SMARTS padded with spaces, then a name) as shipped in the molsets wheel: 22 + 480 SMARTS."""
        with open(mcf_csv, newline="", encoding="utf-8") as f:
            smarts = [row["smarts"].strip() for row in csv.DictReader(f)]
        with open(pains_csv, newline="", encoding="utf-8") as f:
            smarts += [row[0].strip() for row in csv.reader(f) if row]
        return cls.from_smarts(smarts)

    @classmethod
    def from_smarts(cls, smarts: Sequence[str]) -> Filters:
        Chem = rdkit()
        queries = [Chem.MolFromSmarts(s) for s in smarts]
        bad = [s for s, q in zip(smarts, queries) if q is None]
        if bad:
            raise ValueError(f"{len(bad)} filter SMARTS do not parse, e.g. {bad[0]!r}")
        return cls(queries, np.stack([_bits(Chem.PatternFingerprint(q)) for q in queries]))


def _bits(fp) -> np.ndarray:
    """An RDKit ExplicitBitVect as a bool array."""
    return np.frombuffer(fp.ToBitString().encode("ascii"), dtype=np.uint8) == ord("1")


def _simple_checks(mol) -> bool:
    """The cheap half of MOSES's ``mol_passes_filters``: no ring of 8 or more atoms, no formal
    charge, only the allowed elements."""
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return False
    if any(atom.GetSymbol() not in ALLOWED_ATOMS for atom in mol.GetAtoms()):
        return False
    Chem = rdkit()
    plain = Chem.MolToSmiles(mol, isomericSmiles=False)  # MOSES's last check: it must write and read back
    return bool(plain) and Chem.MolFromSmiles(plain) is not None


def passes_filters_reference(mol, filters: Filters) -> bool:
    """MOSES's ``mol_passes_filters``, written plainly: every SMARTS searched in the molecule with
    explicit hydrogens (PAINS patterns name hydrogens, ``[#1]``)."""
    if not _simple_checks(mol):
        return False
    with_h = rdkit().AddHs(mol)
    return not any(with_h.HasSubstructMatch(q) for q in filters.queries)


def passes_filters(mol, filters: Filters) -> bool:
    """``passes_filters_reference``, with the searches that cannot match skipped: a query whose
    pattern-fingerprint bits are not all set in the molecule's is no substructure of it."""
    if not _simple_checks(mol):
        return False
    Chem = rdkit()
    with_h = Chem.AddHs(mol)
    mol_bits = _bits(Chem.PatternFingerprint(with_h))  # (2048,)
    possible = ~(filters.query_bits & ~mol_bits).any(axis=1)  # (Q,): no query bit missing
    return not any(with_h.HasSubstructMatch(filters.queries[i]) for i in np.flatnonzero(possible))


# --- one molecule, and many --------------------------------------------------------------------
@dataclass(frozen=True)
class Described:
    """The facts MOSES uses about one valid molecule (``canonical`` is the SMILES the later
    metrics see: FCD reads it, unique@k and novelty compare it)."""

    canonical: str
    fingerprint: bytes  # the 1024 Morgan bits, packed (np.packbits): 128 bytes
    fragments: tuple[str, ...]
    scaffold: str | None
    passes_filters: bool


def describe(smiles: str, filters: Filters | None) -> Described | None:
    """Everything MOSES computes from one raw SMILES, or None when it is invalid. Without
    ``filters``, ``passes_filters`` is False (reference sets do not need it)."""
    mol = parse(smiles)
    if mol is None:
        return None
    Chem = rdkit()
    # MOSES keeps the canonical SMILES of each valid sample, then parses those again for every
    # later metric; so do we (the canonical form of the re-parsed molecule is what it compares).
    again = parse(Chem.MolToSmiles(mol))
    mol = again if again is not None else mol
    return Described(
        canonical=Chem.MolToSmiles(mol),
        fingerprint=np.packbits(morgan_fingerprint(mol)).tobytes(),
        fragments=tuple(brics_fragments(mol)),
        scaffold=murcko_scaffold(mol),
        passes_filters=passes_filters(mol, filters) if filters is not None else False,
    )


_worker_filters: list = [None]  # set once per worker process by _init_worker


def _init_worker(filters: Filters | None) -> None:
    rdkit()  # silences RDKit's log in this process too
    _worker_filters[0] = filters


def _describe_chunk(chunk: list[str]) -> list[Described | None]:
    return [describe(s, _worker_filters[0]) for s in chunk]


def _canonical_chunk(chunk: list[str]) -> list[str | None]:
    return [canonical(s) for s in chunk]


def map_molecules(fn, smiles: Sequence[str], *, n_jobs: int = 1, progress: bool = True, desc: str = "molecules",
                  filters: Filters | None = None) -> list:
    """``[fn-of-each(s) for s in smiles]`` where ``fn`` is ``"describe"`` or ``"canonical"`` (or a
    picklable function of a list of SMILES that returns a list as long), in ``n_jobs`` processes,
    in order, with a progress bar on stderr (hidden when stderr is no tty).

    Chunks of ``CHUNK`` molecules go to the workers, so a worker's start-up and each message's
    cost are shared by many molecules. Worker processes are forked where the OS can (they start at
    once, with RDKit already imported), else spawned.
    """
    from tqdm.auto import tqdm

    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    work = fn if callable(fn) else {"describe": _describe_chunk, "canonical": _canonical_chunk}[fn]
    chunks = [list(smiles[i:i + CHUNK]) for i in range(0, len(smiles), CHUNK)]
    out: list = []
    with tqdm(total=len(smiles), desc=desc, unit="mol", disable=None if progress else True, leave=False,
              dynamic_ncols=True) as bar:
        if n_jobs == 1 or len(chunks) <= 1:
            _init_worker(filters)
            for chunk in chunks:
                out += work(chunk)
                bar.update(len(chunk))
            return out
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(filters,)) as pool:
            for done in pool.imap(work, chunks):
                out += done
                bar.update(len(done))
    return out


def read_smiles_column(path: str | os.PathLike) -> list[str]:
    """The SMILES of a MOSES split file (``train.csv.gz``: a ``SMILES`` header, one a line)."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or lines[0].strip().upper() != "SMILES":
        raise ValueError(f"{path}: expected a CSV with one column headed SMILES, got {lines[:1]}")
    return [line.strip() for line in lines[1:] if line.strip()]
