"""The MOSES metrics (lucidlm.chem.metrics) against independent references.

Fast: each metric on a tiny case worked out by hand or with RDKit directly; the filters' screened
fast path against MOSES's plain loop; ChemNet against fcd_torch's own model; MOSES's statistics
files read without pickle, equal to what an (unsafe) pickle load gives.
Slow: the whole metric set against molsets 0.3.1's own ``get_all_metrics`` (imported from the
wheel the ``moses`` asset is pinned to, with the two shims it needs today) on 2,000 samples:
real test molecules, duplicates, corrupted strings, molecules the filters reject, odd cases.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import random
import sys
import types
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

Chem = pytest.importorskip("rdkit.Chem")  # the test extra installs RDKit; skip cleanly without it
from rdkit import DataStructs  # noqa: E402
from rdkit.Chem import rdFingerprintGenerator  # noqa: E402

from lucidlm.chem import features, metrics, reference  # noqa: E402
from lucidlm.chem.metrics import moses_metrics  # noqa: E402


def _moses_file(key: str) -> Path:
    from lucidlm.assets import asset_path

    try:
        return asset_path("moses", key)
    except Exception as exc:  # offline and not cached
        pytest.skip(f"the moses asset cannot be had (offline? set LUCIDLM_WHEELHOUSE): {exc}")


def _tanimoto(a: str, b: str) -> float:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fa, fb = (gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


def _packed(smiles: list[str]) -> np.ndarray:
    return np.stack([np.frombuffer(features.describe(s, None).fingerprint, np.uint8) for s in smiles])


# --- fast: each metric by hand ------------------------------------------------------------------
def test_validity_uniqueness_novelty_counted_by_hand():
    samples = ["CCO", "OCC", "", "C1CC", "c1ccccc1", "CCO", "not a smiles", "C(C)(C)(C)(C)C"]  # valence 5: invalid
    canon = [features.canonical(s) for s in samples]
    assert canon == ["CCO", "CCO", None, None, "c1ccccc1", "CCO", None, None]
    assert metrics.fraction_valid(canon) == 4 / 8
    valid = [c for c in canon if c is not None]  # CCO CCO c1ccccc1 CCO
    assert metrics.fraction_unique(valid, k=2) == 1 / 2  # first two: both ethanol
    with pytest.warns(UserWarning, match="only 4 valid"):
        assert metrics.fraction_unique(valid, k=10) == 2 / 4  # MOSES: fewer than k -> divide by all
    assert metrics.novelty(valid, {"CCO", "CCN"}) == 1 / 2  # distinct {CCO, benzene}; benzene is new


def test_internal_diversity_and_snn_from_rdkit_tanimoto():
    a, b = "CCOC(=O)c1ccccc1", "CCN(CC)C(=O)c1ccccc1"
    t = _tanimoto(a, b)
    assert 0 < t < 1
    # Ordered pairs with self-pairs: (a,a)=1, (b,b)=1, (a,b)=(b,a)=t
    int_div, int_div2 = metrics.internal_diversity(_packed([a, b]), progress=False)
    assert int_div == pytest.approx(1 - (2 + 2 * t) / 4, abs=1e-6)  # float32 Tanimoto, as MOSES
    assert int_div2 == pytest.approx(1 - math.sqrt((1 + t * t) / 2), abs=1e-6)
    ref = [b, "c1ccncc1", "CCCCCC"]
    expected = np.mean([max(_tanimoto(g, r) for r in ref) for g in (a, "CCCCCC")])
    got = metrics.nearest_neighbour_similarity(_packed([a, "CCCCCC"]), _packed(ref), progress=False)
    assert got == pytest.approx(expected, abs=1e-6)


def test_sparse_blocks_agree_with_the_plain_matrix(monkeypatch):
    """SNN and IntDiv (sparse sums, blocks) against MOSES's way: one dense x @ y.T Tanimoto matrix."""
    rng = np.random.default_rng(0)
    bits = (rng.random((37, 1024)) < 0.05).astype(np.uint8)
    bits[3] = bits[20] = 0  # empty fingerprints: MOSES counts T(empty, empty) as 1
    ref = (rng.random((29, 1024)) < 0.05).astype(np.uint8)
    ref[7] = 0
    gen_p, ref_p = np.packbits(bits, axis=1), np.packbits(ref, axis=1)
    full = metrics._tanimoto(metrics.unpack_fingerprints(gen_p), metrics.unpack_fingerprints(gen_p)).double()
    assert full[3, 20] == 1 and full[3, 4] == 0
    int_div = (1 - full.mean().item(), 1 - (full ** 2).mean(1).sqrt().mean().item())
    snn = metrics._tanimoto(metrics.unpack_fingerprints(gen_p), metrics.unpack_fingerprints(ref_p)).max(1).values
    monkeypatch.setattr(metrics, "GEN_BLOCK", 8)  # 5 blocks a side: diagonal, upper and ragged ones
    monkeypatch.setattr(metrics, "REF_BLOCK", 8)
    assert metrics.internal_diversity(gen_p, progress=False) == pytest.approx(int_div, abs=1e-9)
    got = metrics.nearest_neighbour_similarity(gen_p, ref_p, progress=False)
    assert got == pytest.approx(snn.double().mean().item(), abs=1e-9)


def test_fragments_scaffolds_and_cosine_by_hand():
    mol = features.parse("CCOC(=O)c1ccccc1")
    assert sorted(features.brics_fragments(mol)) == ["[1*]C([6*])=O", "[16*]c1ccccc1", "[3*]O[3*]", "[4*]CC"]
    assert features.murcko_scaffold(features.parse("CCc1ccc(Cc2ccccn2)cc1")) == "c1ccc(Cc2ccccn2)cc1"
    assert features.murcko_scaffold(features.parse("CCc1ccccc1")) is None  # one ring: not counted
    # (1*2 + 0*1) / (sqrt(1+1) * sqrt(4+1))
    assert metrics.cosine_similarity({"a": 1, "b": 1}, {"a": 2, "c": 1}) == pytest.approx(2 / math.sqrt(10))
    assert math.isnan(metrics.cosine_similarity({}, {"a": 1}))


@pytest.fixture(scope="module")
def moses_filters():
    return features.Filters.from_files(_moses_file("mcf"), _moses_file("pains"))


def _filter_positives(filters) -> list[str]:
    """Molecules written from the filter SMARTS themselves: most match their own pattern."""
    out = []
    for query in filters.queries:
        mol = Chem.MolFromSmiles(Chem.MolToSmiles(query))
        if mol is not None:
            out.append(Chem.MolToSmiles(mol))
    return out


def test_filters_screen_agrees_with_the_plain_loop(moses_filters):
    assert len(moses_filters.queries) == 502  # 22 MCF + 480 PAINS, as MOSES reads them
    with gzip.open(_moses_file("test"), "rt") as f:
        real = f.read().split()[1:121]
    odd = ["C[NH3+]", "C1CCCCCCC1", "C[Si](C)(C)C", "CC.O", "C=CC#N"]
    mols = [features.parse(s) for s in real + odd + _filter_positives(moses_filters)[::4]]
    fast = [features.passes_filters(m, moses_filters) for m in mols]
    plain = [features.passes_filters_reference(m, moses_filters) for m in mols]
    assert fast == plain
    assert all(fast[:120]) and fast[120:125] == [False, False, False, True, False]  # charge, 8-ring, Si; MCF1
    assert sum(fast) < len(fast) - 60  # the SMARTS-made molecules really are rejected


def test_chemnet_matches_fcd_torch_and_distance_by_hand():
    fcd_torch_utils = pytest.importorskip("fcd_torch.utils")
    import torch

    from lucidlm.chem import fcd

    smiles = ["CCOC(=O)c1ccccc1", "Cl[Si](I)Br", "CC.O", "C" * 400, "c1cc[nH]c1"]
    for s in smiles:
        expected = fcd_torch_utils.get_one_hot(s, 350) / 35
        assert np.array_equal(fcd.one_hot([s])[0].numpy(), expected.astype(np.float32)), s
    path = Path(fcd_torch_utils.__file__).with_name(fcd.WEIGHTS_FILE)
    theirs = fcd_torch_utils.load_imported_model(torch.load(path, weights_only=True)).eval()
    with torch.no_grad():
        expected = theirs(fcd.one_hot(smiles).transpose(1, 2)).numpy()
    assert np.allclose(fcd.chemnet_activations(smiles, progress=False), expected, atol=1e-6)
    # Two 1-d Gaussians: (mu1 - mu2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 1 + 4 + 9 - 12
    d = fcd.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([2.0]), np.array([[9.0]]))
    assert d == pytest.approx(2.0)
    # Against fcd_torch's scipy.linalg.sqrtm route, on covariances of full and of low rank (3 samples)
    rng = np.random.default_rng(0)
    for n in (3, 300):
        a, b = rng.normal(size=(n, 64)), rng.normal(1.0, 2.0, size=(400, 64)) @ rng.normal(size=(64, 64))
        stats = [x.mean(0) for x in (a, b)], [np.cov(x, rowvar=False) for x in (a, b)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SciPy's deprecation of sqrtm(disp=False)
            expected = fcd_torch_utils.calculate_frechet_distance(stats[0][0], stats[1][0], stats[0][1], stats[1][1])
        got = fcd.frechet_distance(stats[0][0], stats[1][0], stats[0][1], stats[1][1])
        assert got == pytest.approx(expected, rel=1e-6)


def _npz_with_pickle(obj) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, stats=np.array(obj, dtype=object))
    return buf.getvalue()


def test_moses_stats_read_without_running_pickled_code(tmp_path):
    rng = np.random.default_rng(0)
    stats = {"FCD": {"mu": rng.random(512, dtype=np.float32), "sigma": rng.random((512, 512))},
             "SNN": {"fps": (rng.random((5, 1024)) < 0.1).astype(np.uint8)},
             "Frag": {"frag": Counter({"[5*]N[5*]": 3, "[4*]CC": 1})}, "Scaf": {"scaf": Counter({"c1ccccc1": 2})},
             "logP": {"values": [1.5, 2.5]}}
    good = tmp_path / "good.npz"
    good.write_bytes(_npz_with_pickle(stats))
    got = reference.read_moses_stats(good)
    assert np.array_equal(got.fcd_mu, stats["FCD"]["mu"]) and np.array_equal(got.fcd_sigma, stats["FCD"]["sigma"])
    assert np.array_equal(np.unpackbits(got.fingerprints, axis=1), stats["SNN"]["fps"])
    assert got.fragments == {"[5*]N[5*]": 3, "[4*]CC": 1} and got.scaffolds == {"c1ccccc1": 2}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.npz"
    bad.write_bytes(_npz_with_pickle({"FCD": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        reference.read_moses_stats(bad)


def test_moses_shipped_stats_convert_exactly():
    path = _moses_file("test_scaffolds_stats")
    with np.load(path, allow_pickle=True) as data:  # the unsafe way, on the hash-pinned file, to compare
        expected = data["stats"].item()
    got = reference.read_moses_stats(path)
    assert np.array_equal(np.unpackbits(got.fingerprints, axis=1), expected["SNN"]["fps"])
    assert np.array_equal(got.fcd_sigma, expected["FCD"]["sigma"])
    assert got.fragments == dict(expected["Frag"]["frag"]) and got.scaffolds == dict(expected["Scaf"]["scaf"])


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="sample is empty"):
        moses_metrics([])
    with pytest.raises(ValueError, match="must be a SMILES string"):
        moses_metrics(["CCO", None])


def test_moses_metrics_small_sample_end_to_end():
    """A tiny sample against tiny reference sets, every number worked out independently."""
    samples = ["CCOC(=O)c1ccccc1", "CCN(CC)C(=O)c1ccccc1", "", "C1CC", "CCOC(=O)c1ccccc1", "C[NH3+]"]
    test = ["CCN(CC)C(=O)c1ccccc1", "c1ccc(Cc2ccccn2)cc1", "CCOc1ccccc1"]
    train = ["O=C(OCC)c1ccccc1"]  # ethyl benzoate written another way: re-canonicalised, it matches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer than k molecules; 2-molecule FCD
        got = moses_metrics(samples, train=train, test=test, test_scaffolds=test, n_jobs=1, progress=False,
                            ks=(3,))
    valid = ["CCOC(=O)c1ccccc1", "CCN(CC)C(=O)c1ccccc1", "CCOC(=O)c1ccccc1", "C[NH3+]"]
    assert got["valid"] == pytest.approx(4 / 6)
    assert got["unique@3"] == 2 / 3
    assert got["Novelty"] == 2 / 3  # distinct: ester, amide, methylammonium; the ester is in train
    assert got["Filters"] == 3 / 4  # the charged one fails
    snn = np.mean([max(_tanimoto(g, r) for r in test) for g in valid])
    assert got["SNN/Test"] == pytest.approx(snn, abs=1e-6) and got["SNN/TestSF"] == got["SNN/Test"]
    pairs = [_tanimoto(x, y) for x in valid for y in valid]
    assert got["IntDiv"] == pytest.approx(1 - np.mean(pairs), abs=1e-6)
    assert math.isnan(got["Scaf/Test"])  # no sample has a 2-ring scaffold: MOSES's NaN
    assert list(got) == ["valid", "unique@3", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF", "Frag/Test",
                         "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters", "Novelty"]


# --- slow: everything against molsets's own code ----------------------------------------------------
@pytest.fixture(scope="module")
def moses_package(tmp_path_factory):
    """molsets 0.3.1's ``moses`` package, unpacked from the wheel the ``moses`` asset pins (its code
    and filter CSVs only), importable with two shims for today's libraries:
    ``rdkit.six`` (gone from RDKit; SA_Score imports ``iteritems``) and ``DataFrame.append`` (gone
    from pandas 2; metrics/utils.py joins the filter tables with it)."""
    pytest.importorskip("fcd_torch")
    pd = pytest.importorskip("pandas")
    from lucidlm.assets import _archive, get_asset

    tmp = tmp_path_factory.mktemp("molsets")
    errs: list[str] = []
    try:
        wheel = _archive(get_asset("moses").pypi, tmp, None, errs)
    except Exception as exc:
        pytest.skip(f"the molsets wheel cannot be had (offline? set LUCIDLM_WHEELHOUSE): {exc} {errs}")
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("moses/") and name.endswith((".py", ".csv")):
                zf.extract(name, tmp / "src")
    mp = pytest.MonkeyPatch()
    six = types.ModuleType("rdkit.six")
    six.iteritems = lambda d: iter(d.items())
    mp.setitem(sys.modules, "rdkit.six", six)
    mp.setattr(pd.DataFrame, "append", lambda self, other, sort=False: pd.concat([self, other], sort=sort),
               raising=False)
    mp.syspath_prepend(str(tmp / "src"))
    import moses.metrics.metrics as moses_metrics_module

    # The four property distances (logP, SA, QED, weight) are not in lucidlm's set: skip them (SA would
    # unpickle MOSES's fragment scores).
    class NoProperty:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            return float("nan")

    mp.setattr(moses_metrics_module, "WassersteinMetric", NoProperty)
    yield moses_metrics_module
    mp.undo()
    for name in [m for m in sys.modules if m == "moses" or m.startswith("moses.")]:
        del sys.modules[name]


def _corrupt(smiles: str, rng: random.Random) -> str:
    """A SMILES with one character deleted, doubled or swapped for another: often invalid, not always."""
    i = rng.randrange(len(smiles))
    how = rng.choice(["delete", "double", "swap"])
    if how == "delete":
        return smiles[:i] + smiles[i + 1:]
    if how == "double":
        return smiles[:i] + smiles[i] + smiles[i:]
    return smiles[:i] + rng.choice("CNOcn()=#123[]") + smiles[i + 1:]


def _mixed_sample() -> tuple[list[str], list[str]]:
    """(samples, train): 2,000 samples of real test molecules, duplicates, corrupted strings, molecules
    the filters reject and odd cases, shuffled; a train holding some of them (so novelty is below 1)."""
    rng = random.Random(0)
    with gzip.open(_moses_file("test"), "rt") as f:
        test = f.read().split()[1:]
    with gzip.open(_moses_file("test_scaffolds"), "rt") as f:
        scaffold_test = f.read().split()[1:]
    filters = features.Filters.from_files(_moses_file("mcf"), _moses_file("pains"))
    real = rng.sample(test, 1340) + rng.sample(scaffold_test, 100)
    odd = ["", "C", "CC.O", "[NH4+]", "C1CCCCCCC1", "C[C@H](N)O", "Cl[Si](C)(C)Br", "C" * 80, "c1ccccc1" * 3, "[H]"]
    samples = (real + rng.choices(real, k=150) + [_corrupt(s, rng) for s in rng.sample(real, 300)]
               + rng.sample(_filter_positives(filters), 100) + odd)  # 2,000
    rng.shuffle(samples)
    train = [features.canonical(s) for s in rng.sample(real, 400)] + test[-3000:]
    return samples, train


@pytest.mark.slow
def test_every_metric_matches_molsets(moses_package):
    samples, train = _mixed_sample()
    with pytest.warns(UserWarning, match="unique@10000: only 1765 valid"):  # as MOSES: all of them
        ours = moses_metrics(samples, train=train, n_jobs=2, progress=False)

    def moses_stats(split: str) -> dict:
        ref = reference.moses_reference(split)  # MOSES's own statistics, read without pickle
        return {"FCD": {"mu": ref.fcd_mu, "sigma": ref.fcd_sigma},
                "SNN": {"fps": np.unpackbits(ref.fingerprints, axis=1)},
                "Frag": {"frag": Counter(ref.fragments)}, "Scaf": {"scaf": Counter(ref.scaffolds)},
                **{name: {"values": []} for name in ("logP", "SA", "QED", "weight")}}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = moses_package.get_all_metrics(samples, n_jobs=2, train=train, test=["C"], ptest=moses_stats("test"),
                                               test_scaffolds=["C"], ptest_scaffolds=moses_stats("test_scaffolds"))
    theirs = {k: v for k, v in theirs.items() if k not in ("logP", "SA", "QED", "weight")}
    assert set(ours) == set(theirs)
    for key in ours:
        tolerance = 0.01 * abs(theirs[key]) if key.startswith("FCD") else 1e-3
        assert abs(ours[key] - theirs[key]) <= tolerance, (key, ours[key], theirs[key])
    assert 0.7 < ours["valid"] < 0.95 and ours["Filters"] < 0.99 and ours["Novelty"] < 0.9  # the mix bites
