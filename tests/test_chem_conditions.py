"""Molecules to order (lucidlm.chem.conditions): property tokens, conditioned rows, prefixed sampling.

References: property values known by hand (ethanol's TPSA is its one hydroxyl, 20.23 A^2;
Crippen's logP of ethanol, -0.0014, is the sum of its atom contributions), RDKit called directly,
rows written out by hand, a scripted bigram model whose next token depends on the condition, and
lucidlm.generate's own decoding loop from the same prefix.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lucidlm.chem.conditions import (
    PROPERTIES,
    Condition,
    compute_properties,
    condition_prefix,
    conditioned_metrics,
    conditions_of,
    deviation_report,
    fit_condition,
    parse_request,
)
from lucidlm.chem.data import prepare_smiles
from lucidlm.chem.sample import sample_molecules
from lucidlm.cli import main
from lucidlm.cli.chem import CONDITIONS
from lucidlm.data import TokenDataset
from lucidlm.generate.sampling import SamplingParams
from lucidlm.tokenizers.simple import SmilesTokenizer

pytest.importorskip("rdkit")

MOLECULES = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OC(=O)c1ccccc1O", "CCOC(=O)C", "Nc1ccccc1",
             "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "O=C(O)CCC(=O)O", "Clc1ccc(Cl)cc1", "CCCCCCCC", "OCC(O)CO"]


def test_the_cli_offers_exactly_the_properties():
    assert CONDITIONS == tuple(PROPERTIES)


def test_property_values_by_hand_and_by_rdkit():
    from rdkit import Chem
    from rdkit.Chem import QED, Crippen, rdMolDescriptors
    from rdkit.Contrib.SA_Score import sascorer

    values = compute_properties(["CCO", "not a molecule", "c1ccccc1"], list(PROPERTIES), n_jobs=1, progress=False)
    assert values["TPSA"][0] == pytest.approx(20.23)  # one hydroxyl: Ertl's O-H contribution
    assert values["logP"][0] == pytest.approx(-0.0014)  # Crippen: 2 C, 1 O, 6 H contributions summed
    assert values["TPSA"][2] == 0.0  # benzene has no polar atoms
    assert all(math.isnan(values[name][1]) for name in PROPERTIES)  # invalid: NaN, kept in place
    benzene = Chem.MolFromSmiles("c1ccccc1")
    assert values["QED"][2] == pytest.approx(QED.qed(benzene))
    assert values["SAS"][2] == pytest.approx(sascorer.calculateScore(benzene))
    assert values["logP"][2] == pytest.approx(Crippen.MolLogP(benzene))
    assert values["TPSA"][2] == pytest.approx(rdMolDescriptors.CalcTPSA(benzene))
    two = compute_properties(MOLECULES, ["QED"], n_jobs=2, progress=False)["QED"]  # worker processes, same order
    one = compute_properties(MOLECULES, ["QED"], n_jobs=1, progress=False)["QED"]
    np.testing.assert_array_equal(two, one)


def test_condition_grid_rounding_and_tokens():
    c = Condition("logP", 0.25, -1.5, 4.25)
    assert c.round(2.13) == 2.25 and c.round(2.12) == 2.0 and c.round(-9) == -1.5 and c.round(99) == 4.25
    assert c.token(2.13) == "<logP=2.25>" and c.token(0.01) == "<logP=0>"
    assert len(c.tokens()) == 24 and c.tokens()[0] == "<logP=-1.5>" and c.tokens()[-1] == "<logP=4.25>"
    sas = Condition("SAS", 0.1, 0.1, 0.5)
    assert sas.tokens() == ["<SAS=0.1>", "<SAS=0.2>", "<SAS=0.3>", "<SAS=0.4>", "<SAS=0.5>"]  # no 0.30000000000000004
    with pytest.raises(ValueError, match="finite"):
        c.round(float("nan"))
    # fitted: the 0.5th..99.5th percentiles, widened to the step
    values = np.array([*np.linspace(10.0, 30.0, 1001), np.nan])
    fitted = fit_condition("TPSA", values)
    assert (fitted.lo, fitted.hi, fitted.step) == (8.0, 32.0, 4.0)  # 10.1 -> 8, 29.9 -> 32
    with pytest.raises(ValueError, match="unknown property"):
        fit_condition("colour", values)


def test_requests_and_their_errors():
    assert parse_request("logP=2.5") == ("logP", 2.5) and parse_request("TPSA = 60") == ("TPSA", 60.0)
    for bad in ("logP", "logP=", "=2", "logP=high", "logP=nan"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_request(bad)
    report = deviation_report(np.array([1.0, 3.0, np.nan]), 2.0)
    assert report == {"n": 2, "MAD": 1.0, "SD": 1.0, "mean": 2.0}


@pytest.fixture()
def conditioned(tmp_path):
    meta = prepare_smiles(tmp_path / "ds", MOLECULES, val_size=2, condition="TPSA", n_jobs=1, progress=False)
    return tmp_path / "ds", meta


def test_conditioned_rows_by_hand(conditioned):
    path, meta = conditioned
    tok = SmilesTokenizer.load(path / "tokenizer.lucidlm.json")
    cond = conditions_of(tok)["TPSA"]
    assert meta["condition"]["name"] == "TPSA" and meta["vocab_size"] == tok.vocab_size
    assert (cond.lo, cond.hi) == (meta["condition"]["lo"], meta["condition"]["hi"])
    tpsa = compute_properties(MOLECULES, ["TPSA"], n_jobs=1, progress=False)["TPSA"]
    expected = {tuple([tok.stoi[cond.token(v)], tok.bos_id, *tok.encode(s), tok.eos_id]) for s, v in zip(MOLECULES, tpsa)}
    rows = set()
    for split in ("train", "val"):
        data = np.fromfile(path / f"{split}.bin", dtype=np.uint16 if meta["dtype"] == "uint16" else np.uint32)
        for row in data.reshape(-1, meta["row_length"]).tolist():
            rows.add(tuple(i for i in row if i != tok.pad_id))
    assert rows == expected  # every molecule once, its condition token first
    assert meta["row_length"] == max(len(r) for r in expected)
    ds = TokenDataset(path, "train")
    x, y = ds.get_batch(4, meta["row_length"] - 1, generator=torch.Generator().manual_seed(0))
    assert (y[:, 0] == tok.bos_id).all()  # after the condition comes <bos>; the condition is never a target


def test_condition_prefix_picks_the_token_and_refuses_what_it_cannot_do(conditioned):
    path, _ = conditioned
    tok = SmilesTokenizer.load(path / "tokenizer.lucidlm.json")
    cond = conditions_of(tok)["TPSA"]
    ids, value = condition_prefix(tok, f"TPSA={cond.lo + 4.9}")
    assert tok.tokens[ids[0]] == f"<TPSA={cond.lo + 4:g}>" and value == cond.lo + 4
    with pytest.raises(ValueError, match="not trained to condition on 'logP'"):
        condition_prefix(tok, "logP=2")
    with pytest.raises(ValueError, match="outside what this model saw"):
        condition_prefix(tok, f"TPSA={cond.hi + 50}")
    plain = SmilesTokenizer.from_corpus(MOLECULES)
    with pytest.raises(ValueError, match="its conditions: none"):
        condition_prefix(plain, "TPSA=20")


def test_sampling_from_a_prefix_equals_the_generate_loop():
    from lucidlm.generate import generate
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    tok = SmilesTokenizer([*SmilesTokenizer.from_corpus(MOLECULES).tokens, "<TPSA=20>", "<TPSA=24>"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, max_seq_len=24,
                                    positions="rope", norm="rmsnorm"))
    with torch.no_grad():
        model.lm_head.weight[tok.eos_id] += 0.5 * model.lm_head.weight.mean(0)
    for condition in ("<TPSA=20>", "<TPSA=24>"):
        prefix = [tok.stoi[condition]]
        (m,) = sample_molecules(model, tok, 1, params=SamplingParams(temperature=0), prefix=prefix, progress=False)
        ref = generate(model, tok, [*prefix, tok.bos_id], max_tokens=22, params=SamplingParams(temperature=0))
        assert list(m.token_ids) == list(ref.token_ids)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        sample_molecules(model, tok, 1, prefix=[999], progress=False)
    with pytest.raises(ValueError, match="holds 1 prefix ids"):
        sample_molecules(model, tok, 1, prefix=[prefix[0]], max_tokens=23, progress=False)


def test_conditioned_metrics_by_hand():
    smiles = ["CCO", "CCO", "OCC(O)CO", "not a molecule"]
    scores = conditioned_metrics(smiles, "TPSA=40", train=["CCO"], n_jobs=1, progress=False)
    # valid 3 of 4; distinct 2 of 3 valid; novel: glycerol only, 1 of the 2 distinct
    assert scores["valid"] == 0.75 and scores["unique"] == pytest.approx(2 / 3) and scores["novelty"] == 0.5
    tpsa = [20.23, 20.23, 60.69]  # ethanol: one OH; glycerol: three
    assert scores["TPSA MAD"] == pytest.approx(np.mean([abs(v - 40) for v in tpsa]), abs=1e-6)
    assert scores["TPSA mean"] == pytest.approx(np.mean(tpsa), abs=1e-6)


def test_cli_prepare_and_sample_with_a_condition(tmp_path, capsys):
    smi = tmp_path / "mols.smi"
    smi.write_text("\n".join(MOLECULES) + "\n")
    code = main(["chem", "prepare", "--train", str(smi), "--out", str(tmp_path / "ds"), "--val-size", "2",
                 "--condition", "logP", "--n-jobs", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "<logP=...> <bos> SMILES <eos>" in out and "condition logP:" in out
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["condition"]["name"] == "logP"
    code = main(["chem", "prepare", "--train", str(smi), "--out", str(tmp_path / "ds2"), "--subset", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "--subset" in err
    with pytest.raises(SystemExit) as exc:  # argparse's own error: usage and the choices, exit status 2
        main(["chem", "prepare", "--out", str(tmp_path / "ds3"), "--condition", "colour"])
    assert exc.value.code == 2 and "invalid choice: 'colour'" in capsys.readouterr().err


def test_cli_sample_asks_a_conditioned_model_for_its_condition(tmp_path, capsys):
    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    tok = SmilesTokenizer([*SmilesTokenizer.from_corpus(MOLECULES).tokens, "<TPSA=20>", "<TPSA=24>"])
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, max_seq_len=16))
    save_checkpoint(model, tmp_path / "ckpt", tokenizer=tok)
    code = main(["chem", "sample", str(tmp_path / "ckpt"), "-n", "2", "--out", str(tmp_path / "s.smi")])
    assert code == 2 and "pass --condition TPSA=VALUE (20 to 24)" in capsys.readouterr().err
    code = main(["chem", "sample", str(tmp_path / "ckpt"), "-n", "2", "--out", str(tmp_path / "s.smi"),
                 "--condition", "TPSA=24", "--no-progress"])
    assert code == 0 and len((tmp_path / "s.smi").read_text().splitlines()) == 2
