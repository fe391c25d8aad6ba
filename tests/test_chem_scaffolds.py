"""Scaffold-conditioned molecules (chem/scaffolds.py, ``chem prepare --condition scaffold``, ``chem sample
--scaffold``, ``chem eval --scaffold``) against RDKit's own Murcko code and hand-counted samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402
from rdkit.Chem.Scaffolds import MurckoScaffold  # noqa: E402

from lucidlm.chem.data import prepare_smiles  # noqa: E402
from lucidlm.chem.scaffolds import SCAFFOLD_TOKEN, scaffold_metrics, scaffold_of, scaffold_prefix  # noqa: E402
from lucidlm.cli import main  # noqa: E402

MOLECULES = ["CCc1ccc(Cc2ccccn2)cc1", "CCO", "O=C(Nc1ccccc1)c1ccc2[nH]ccc2c1", "CC1CCN(C(=O)c2cccs2)CC1",
             "COc1ccc(-c2nc3ccccc3o2)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "N#Cc1ccc(OCC2CC2)cc1", "CCN(CC)CC"]


def rdkit_scaffold(smiles: str) -> str:
    """RDKit's MurckoScaffoldSmiles, written canonically: the independent reference."""
    return Chem.MolToSmiles(Chem.MolFromSmiles(MurckoScaffold.MurckoScaffoldSmiles(smiles)))


@pytest.mark.parametrize("smiles", MOLECULES)
def test_scaffold_of_equals_rdkits(smiles):
    assert scaffold_of(smiles) == rdkit_scaffold(smiles)


def test_scaffold_of_examples():
    assert scaffold_of("CCc1ccc(Cc2ccccn2)cc1") == "c1ccc(Cc2ccccn2)cc1"
    assert scaffold_of("CCO") == ""  # no ring: an empty scaffold
    assert scaffold_of("C1CC") is None  # unparsable


@pytest.fixture(scope="module")
def scaffold_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaf") / "data"
    meta = prepare_smiles(out, MOLECULES * 3, val_size=4, condition="scaffold", n_jobs=1, progress=False)
    return out, meta


def test_every_row_starts_with_its_molecules_scaffold(scaffold_dataset):
    from lucidlm.tokenizers import load_tokenizer

    out, meta = scaffold_dataset
    assert meta["condition"] == {"name": "scaffold"}
    tok = load_tokenizer(out)
    rows = np.fromfile(out / "train.bin", dtype=np.uint16).reshape(-1, meta["row_length"])
    marker = tok.stoi[SCAFFOLD_TOKEN]
    for row in rows:
        ids = [int(i) for i in row if i != tok.pad_id]
        assert ids[0] == marker and ids[-1] == tok.eos_id
        bos = ids.index(tok.bos_id)
        scaffold = "".join(tok.tokens[i] for i in ids[1:bos])
        molecule = "".join(tok.tokens[i] for i in ids[bos + 1 : -1])
        assert scaffold == rdkit_scaffold(molecule)


def test_scaffold_prefix_canonicalises_and_refuses_what_is_not_a_scaffold(scaffold_dataset):
    from lucidlm.tokenizers import load_tokenizer

    tok = load_tokenizer(scaffold_dataset[0])
    ids, canonical = scaffold_prefix(tok, "C1=CC=CC=C1")  # Kekulé benzene
    assert canonical == "c1ccccc1"
    assert [tok.tokens[i] for i in ids] == [SCAFFOLD_TOKEN, "c", "1", "c", "c", "c", "c", "c", "1"]
    with pytest.raises(ValueError, match="not a Bemis-Murcko scaffold"):
        scaffold_prefix(tok, "CCc1ccccc1")  # a side chain
    with pytest.raises(ValueError, match="not a valid SMILES"):
        scaffold_prefix(tok, "c1cc")
    with pytest.raises(ValueError, match="empty"):
        scaffold_prefix(tok, "")
    from lucidlm.chem.data import build_tokenizer

    with pytest.raises(ValueError, match="not trained with scaffolds"):
        scaffold_prefix(build_tokenizer(MOLECULES), "c1ccccc1")


def test_scaffold_metrics_hand_counted():
    # 4 samples: 3 valid; benzene scaffold exactly for 2 (toluene, ethylbenzene); cyclohexane neither
    # has it nor contains it; biphenyl's scaffold is biphenyl, but it contains benzene.
    samples = ["Cc1ccccc1", "CCc1ccccc1", "C1CCCCC1", "c1ccc(-c2ccccc2)cc1", "C1CC"]
    scores = scaffold_metrics(samples, "c1ccccc1", train=["Cc1ccccc1"], n_jobs=1, progress=False)
    assert scores["valid"] == pytest.approx(4 / 5)
    assert scores["same scaffold"] == pytest.approx(2 / 4)
    assert scores["contains scaffold"] == pytest.approx(3 / 4)
    assert scores["novelty"] == pytest.approx(3 / 4)  # toluene is in train
    assert scores["unique"] == 1.0


def test_cli_scaffold_flags(scaffold_dataset, tmp_path, capsys):
    out, meta = scaffold_dataset
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'out_dir = "{tmp_path / "run"}"\ndata = "{out}"\nbatch_size = 4\nblock_size = '
                   f'{meta["row_length"] - 1}\nmax_steps = 2\neval_interval = 1\neval_iters = 1\n'
                   f'[model]\nn_layer = 1\nn_head = 2\nn_embd = 32\nmax_seq_len = {meta["row_length"]}\n',
                   encoding="utf-8")
    assert main(["chem", "train", "--config", str(cfg)]) == 0
    model = str(tmp_path / "run" / "best")
    assert main(["chem", "sample", model, "-n", "4", "--out", str(tmp_path / "a.smi"), "--no-progress"]) == 2
    assert "pass --scaffold SMILES" in capsys.readouterr().err
    assert main(["chem", "sample", model, "-n", "4", "--scaffold", "c1ccccc1", "--condition", "logP=2",
                 "--out", str(tmp_path / "a.smi"), "--no-progress"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["chem", "sample", model, "-n", "4", "--scaffold", "C1=CC=CC=C1", "--seed", "0",
                 "--out", str(tmp_path / "a.smi"), "--no-progress"]) == 0
    assert "around the scaffold c1ccccc1" in capsys.readouterr().err
    assert main(["chem", "eval", str(tmp_path / "a.smi"), "--scaffold", "c1ccccc1", "--json", "--no-progress",
                 "--n-jobs", "1"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(scores) == {"valid", "unique", "novelty", "same scaffold", "contains scaffold"}
