"""Molecules as training data and samples: lucidlm.chem.data / files / sample / draw, the rows
layout of token datasets (lucidlm.data.rows), and `lucidlm chem` on bad input.

References: the MOSES SMILES themselves (tokens joined give the string back), rows and loss masks
written out by hand, a scripted model whose next token is fixed, ``lucidlm.generate.generate``
(the library's own decoding loop) for greedy sampling, and ``generate.sampling.process_logits``
row by row for the batched sampler.
"""

from __future__ import annotations

import gzip
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from lucidlm.chem.data import encode_molecules, prepare_smiles
from lucidlm.chem.files import read_samples, read_smiles, write_samples
from lucidlm.chem.sample import process_batch, sample_molecules
from lucidlm.cli import main
from lucidlm.data import TokenDataset
from lucidlm.data.rows import pad_rows, write_rows_dataset
from lucidlm.generate.sampling import SamplingParams, process_logits
from lucidlm.nn.attention import KVCache
from lucidlm.tokenizers.simple import SMILES_SPECIAL_TOKENS, SmilesTokenizer

MOSES_FIRST = ["CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1", "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O"]


@pytest.fixture(scope="module")
def moses_test() -> list[str]:
    """The first 600 molecules of MOSES test (the asset's smallest split)."""
    from lucidlm.assets import asset_path

    try:
        path = asset_path("moses", "test")
    except Exception as exc:  # offline and not cached
        pytest.skip(f"the moses asset cannot be had: {exc}")
    return read_smiles(path, limit=600)


def test_read_smiles_reads_the_moses_csv(moses_test):
    assert moses_test[:2] == MOSES_FIRST  # research note: the test split's first rows
    assert len(moses_test) == 600 and all(moses_test)


# ----------------------------------------------------------------------------------------------
# encoding and the rows dataset


def test_rows_round_trip_real_molecules(moses_test, tmp_path):
    meta = prepare_smiles(tmp_path / "ds", moses_test[:500], val=moses_test[500:], progress=False)
    assert meta["layout"] == "rows" and meta["pad_id"] == 0
    tok = TokenDataset(tmp_path / "ds", "train").tokenizer()
    assert isinstance(tok, SmilesTokenizer) and tok.tokens[:4] == list(SMILES_SPECIAL_TOKENS)
    for split, mols in (("train", moses_test[:500]), ("val", moses_test[500:])):
        ds = TokenDataset(tmp_path / "ds", split)
        L = ds.row_length
        assert L == meta["row_length"] == 2 + max(len(tok.tokenize(s)) for s in moses_test)
        rows = np.asarray(ds.data).reshape(-1, L)
        assert len(rows) == len(mols)
        for row, smiles in zip(rows.tolist(), mols):  # the rows keep the file's order
            n = len(tok.tokenize(smiles))
            assert row[0] == tok.bos_id and row[n + 1] == tok.eos_id
            assert row[n + 2:] == [tok.pad_id] * (L - n - 2)
            assert "".join(tok.id_to_token(i) for i in row[1 : n + 1]) == smiles


def _hand_tokenizer() -> SmilesTokenizer:
    # ids: <pad>=0 <bos>=1 <eos>=2 <unk>=3 C=4 O=5 c=6 1=7 N=8 #=9
    return SmilesTokenizer([*SMILES_SPECIAL_TOKENS, "C", "O", "c", "1", "N", "#"])


def test_loss_mask_covers_the_molecule_and_eos_by_hand(tmp_path):
    tok = _hand_tokenizer()
    mols = ["CCO", "c1ccccc1", "C#N"]
    rows = encode_molecules(tok, mols)
    assert rows == [[1, 4, 4, 5, 2], [1, 6, 7, 6, 6, 6, 6, 6, 7, 2], [1, 4, 9, 8, 2]]
    write_rows_dataset(tmp_path / "ds", {"train": pad_rows(rows, 0), "val": pad_rows(rows[:1], 0, 10)}, tok,
                       pad_id=0)
    ds = TokenDataset(tmp_path / "ds", "train")
    assert ds.row_length == 10
    (x, y), = list(ds.iter_batches(3, block_size=9))
    X = -100  # no loss
    assert x.tolist() == [[1, 4, 4, 5, 2, 0, 0, 0, 0],
                          [1, 6, 7, 6, 6, 6, 6, 6, 7],
                          [1, 4, 9, 8, 2, 0, 0, 0, 0]]
    assert y.tolist() == [[4, 4, 5, 2, X, X, X, X, X],  # C C O <eos>: the molecule and its end, never <bos>
                          [6, 7, 6, 6, 6, 6, 6, 7, 2],
                          [4, 9, 8, 2, X, X, X, X, X]]
    # a batch without the long molecule is cut after its longest one: no all-padding columns
    x, y = ds._rows([0, 2])
    assert x.tolist() == [[1, 4, 4, 5], [1, 4, 9, 8]] and y.tolist() == [[4, 4, 5, 2], [4, 9, 8, 2]]
    # random batches: every target is a molecule token or <eos>; -100 only after <eos>
    x, y = ds.get_batch(16, 55, torch.Generator().manual_seed(0))
    for xr, yr in zip(x.tolist(), y.tolist()):
        n = yr.index(2) + 1 if 2 in yr else len(yr)
        assert all(t != X for t in yr[:n]) and all(t == X for t in yr[n:]) and xr[0] == 1


def test_rows_dataset_refuses_what_would_train_wrongly(tmp_path):
    tok = _hand_tokenizer()
    rows = pad_rows([[1, 4, 2], [1, 5, 5, 5, 2]], 0)
    with pytest.raises(ValueError, match="pad id 0 occurs before the end"):
        write_rows_dataset(tmp_path / "a", {"train": np.array([[1, 0, 4, 2]]), "val": rows[:, :4]}, tok, pad_id=0)
    with pytest.raises(ValueError, match="non-empty 'val' split"):
        write_rows_dataset(tmp_path / "b", {"train": rows}, tok, pad_id=0)
    write_rows_dataset(tmp_path / "c", {"train": rows, "val": rows}, tok, pad_id=0)
    ds = TokenDataset(tmp_path / "c", "train")
    with pytest.raises(ValueError, match="block_size must be >= 4"):
        ds.get_batch(2, 3)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode_molecules(tok, ["CCO", "C[Si]C", "CS"], where="my file")


# ----------------------------------------------------------------------------------------------
# training and sampling


def test_a_short_training_run_lowers_the_loss(moses_test, tmp_path):
    from lucidlm.train import TrainConfig, train

    prepare_smiles(tmp_path / "ds", moses_test[:560], val=moses_test[560:], progress=False)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), data=str(tmp_path / "ds"), batch_size=32, block_size=55,
                      max_steps=40, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=40, eval_iters=2,
                      log_interval=10, progress=False, save_best=False,
                      model={"n_layer": 2, "n_head": 2, "n_embd": 64, "max_seq_len": 64, "positions": "rope",
                             "norm": "rmsnorm", "bias": False})
    result = train(cfg)
    first, last = result.losses[1], result.losses[40]
    assert first == pytest.approx(math.log(28), abs=0.5)  # about uniform over the 28 ids at the start
    assert last < first - 1.2 and result.val_losses[40] < first - 1.0


class ScriptedBigram(nn.Module):
    """A model whose next-token distribution is a fixed table over the previous token (a bigram
    written by hand), with the interface the sampler uses: cfg, new_cache, forward(ids, cache)."""

    def __init__(self, table: torch.Tensor, max_seq_len: int = 12) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(max_seq_len=max_seq_len, arch="decoder")
        self.logits = nn.Parameter(table.log())  # (V, V): row = previous token
        self.inputs: list[torch.Tensor] = []

    def new_cache(self, batch: int, max_len: int):
        return KVCache(1, batch, 1, max_len, 1)

    def forward(self, ids, *, cache, last_only):
        self.inputs.append(ids.clone())
        cache.layers[0].append(*[torch.zeros(ids.shape[0], 1, ids.shape[1], 1)] * 2)  # positions advance
        return self.logits[ids[:, -1:]]  # (B, 1, V)


def test_sampling_starts_at_bos_and_stops_at_eos():
    tok = _hand_tokenizer()  # <bos>=1 <eos>=2 C=4 O=5 N=8
    V = tok.vocab_size
    table = torch.full((V, V), 1e-9)
    table[1, 4] = table[1, 8] = 0.5  # <bos> -> C or N, even odds
    table[4, 2] = 1.0  # C -> <eos>
    table[8, 5] = 1.0  # N -> O
    table[5, 2] = 1.0  # O -> <eos>
    model = ScriptedBigram(table / table.sum(1, keepdim=True))
    mols = sample_molecules(model, tok, 300, params=SamplingParams(seed=0), batch_size=100, progress=False)
    assert all(step0.tolist() == [[1]] * 100 for step0 in model.inputs[::3])  # each batch's first input: <bos>
    assert len(model.inputs) == 9  # 3 steps per batch: the longest molecule, N O <eos>, then stop
    assert {m.smiles for m in mols} == {"C", "NO"}
    assert 100 < sum(m.smiles == "C" for m in mols) < 200  # 0.5 each: 150 +- 3 sd of 8.7
    for m in mols:
        assert m.ended == "eos" and m.token_ids[-1] == 2
        assert m.logprob == pytest.approx(math.log(0.5), abs=1e-6)
    # a row that never writes <eos> is kept as written, and says so
    table = torch.full((V, V), 1e-9)
    table[:, 4] = 1.0  # always C
    model = ScriptedBigram(table / table.sum(1, keepdim=True), max_seq_len=6)
    (m,) = sample_molecules(model, tok, 1, progress=False)
    assert (m.smiles, m.ended, len(m.token_ids)) == ("CCCCC", "length", 5)


def test_greedy_sampling_equals_the_generate_loop():
    from lucidlm.generate import generate
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    tok = _hand_tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, max_seq_len=24,
                                    positions="rope", norm="rmsnorm"))
    with torch.no_grad():  # make <eos> likely enough that some rows end early
        model.lm_head.weight[2] += 0.5 * model.lm_head.weight.mean(0)
    mols = sample_molecules(model, tok, 3, params=SamplingParams(temperature=0), progress=False)
    ref = generate(model, tok, [tok.bos_id], max_tokens=23, params=SamplingParams(temperature=0))
    for m in mols:
        assert m.token_ids == ref.token_ids
        assert m.ended == ("eos" if ref.finish_reason == "stop" else "length")


def test_each_molecule_is_what_the_model_scores_it():
    """Rows leave the batch as they finish (the KV cache shrinks): each molecule's log-probability,
    summed as it was sampled, must equal a plain forward pass over <bos> + its tokens."""
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    tok = _hand_tokenizer()
    torch.manual_seed(1)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, max_seq_len=20,
                                    positions="rope", norm="rmsnorm"))
    with torch.no_grad():
        model.lm_head.weight[2] += 0.8 * model.lm_head.weight.mean(0)  # <eos> at varied lengths
    mols = sample_molecules(model, tok, 40, params=SamplingParams(seed=3), batch_size=40, progress=False)
    lengths = {len(m.token_ids) for m in mols}
    assert len(lengths) > 5 and any(m.ended == "length" for m in mols)  # rows finished at many steps
    for m in mols:
        ids = torch.tensor([[tok.bos_id, *m.token_ids]])  # (1, 1 + n)
        with torch.no_grad():
            logp = torch.log_softmax(model(ids)[0, :-1].double(), dim=-1)  # (n, V) predicting each token
        want = logp.gather(1, ids[0, 1:, None]).sum().item()
        assert m.logprob == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0.7), SamplingParams(top_k=3), SamplingParams(top_p=0.6),
    SamplingParams(min_p=0.2), SamplingParams(temperature=1.3, top_k=5, top_p=0.9, min_p=0.05),
    SamplingParams(temperature=0), SamplingParams(repetition_penalty=1.5, frequency_penalty=0.5),
    SamplingParams(temperature=0, logit_bias={3: 50.0}), SamplingParams(top_k=4, logit_bias={0: -100, 5: 2.5}),
], ids=lambda p: ",".join(f"{k}={v}" for k, v in vars(p).items() if v != getattr(SamplingParams(), k)) or "plain")
def test_batched_processing_equals_the_reference_per_row(params):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 28, generator=g) * 2  # (B, V)
    logits[0, :4] = 3.0  # ties at the top: top-k keeps the lower ids, as the reference does
    previous = [[4, 4, 5], [], [7], [1, 2, 3], [9, 9], [10]]
    got = process_batch(logits, params, previous)
    for b in range(6):
        want = process_logits(logits[b], params, previous[b])
        assert torch.equal(torch.isinf(got[b]), torch.isinf(want))
        torch.testing.assert_close(got[b][~torch.isinf(want)], want[~torch.isinf(want)])


# ----------------------------------------------------------------------------------------------
# sample files


def test_sample_files_keep_every_generation(tmp_path):
    smi = write_samples(tmp_path / "s.smi", ["CCO", "", "c1ccccc1", "C(", "hello"])
    assert smi.read_text() == "CCO\n\nc1ccccc1\nC(\nhello\n"
    got = read_samples(smi)
    assert got.smiles == ["CCO", "", "c1ccccc1", "C(", "hello"]  # the empty generation stays: it is invalid
    assert got.n_empty == 1 and got.bad_lines == [(5, "hello")]  # 'h' is no SMILES token
    assert "1 lines are not SMILES" in got.report() and "line 5" in got.report()
    csv_path = write_samples(tmp_path / "s.csv", ["CCO", ""], {"ended": ["eos", "eos"]})
    assert csv_path.read_text() == 'SMILES,ended\nCCO,eos\n,eos\n'
    assert read_samples(csv_path).smiles == ["CCO", ""]
    (tmp_path / "h.smi").write_text("SMILES\nCCO\nCCN name\n")
    got = read_samples(tmp_path / "h.smi")
    assert got.header and got.smiles == ["CCO", "CCN"]


def test_draw_marks_invalid_molecules(tmp_path):
    pytest.importorskip("rdkit")
    from PIL import Image

    from lucidlm.chem.draw import draw_grid

    out = draw_grid(["CCO", "C1CC", "", "c1ccccc1"], tmp_path / "grid.png", cols=2, size=120)
    assert (out["drawn"], out["valid"]) == (4, 2)  # "C1CC" (unclosed ring) and "" are invalid
    assert Image.open(tmp_path / "grid.png").size == (240, 240)


# ----------------------------------------------------------------------------------------------
# the command line on bad input


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_bad_sample_files(tmp_path, capsys):
    code, _, err = _run(["chem", "eval", str(tmp_path / "missing.smi")], capsys)
    assert code == 2 and err.startswith("lucidlm: error: no SMILES file at")
    (tmp_path / "empty.smi").write_text("")
    code, _, err = _run(["chem", "eval", str(tmp_path / "empty.smi")], capsys)
    assert code == 2 and "lucidlm: error:" in err and "is empty" in err
    (tmp_path / "blank.smi").write_text("\n\n")
    code, _, err = _run(["chem", "draw", str(tmp_path / "blank.smi"), "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2 and "holds only 2 blank lines" in err
    (tmp_path / "bin.smi.gz").write_bytes(b"not gzip at all")
    code, _, err = _run(["chem", "eval", str(tmp_path / "bin.smi.gz")], capsys)
    assert code == 2 and "cannot read" in err


def test_cli_eval_passes_every_line_to_the_metrics(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_metrics(smiles, *, n_jobs=2, progress=True):
        seen.update(smiles=list(smiles), n_jobs=n_jobs)
        return {"valid": 0.5}

    monkeypatch.setattr("lucidlm.chem.metrics.moses_metrics", fake_metrics)  # its own tests check the numbers
    (tmp_path / "s.smi").write_text("CCO\n\nxyz\nCCN\n")
    code, out, err = _run(["chem", "eval", str(tmp_path / "s.smi"), "--n-jobs", "1", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"valid": 0.5}
    assert seen == {"smiles": ["CCO", "", "xyz", "CCN"], "n_jobs": 1}
    assert "1 empty" in err and "1 lines are not SMILES" in err and "line 3: 'xyz'" in err


def test_cli_prepare_refuses_molecules_it_cannot_encode(tmp_path, capsys):
    (tmp_path / "train.smi").write_text("CCO\nCCN\nC C\n" + "c1ccccc1\n" * 5)
    (tmp_path / "bad.smi").write_text("CCO\nCXC\nCCN\nCYC\n")
    code, _, err = _run(["chem", "prepare", "--out", str(tmp_path / "ds"), "--train", str(tmp_path / "bad.smi"),
                         "--val-size", "1", "--no-progress"], capsys)
    assert code == 2 and "lucidlm: error:" in err and "2 of 4 molecules cannot be encoded" in err
    assert "'X'" in err
    # with a model's tokenizer, a token outside its vocabulary is an error, never a silent <unk>
    _hand_tokenizer().save(tmp_path / "tok.json")
    (tmp_path / "si.smi").write_text("CCO\nC[Si](C)C\nCCN\n")
    code, _, err = _run(["chem", "prepare", "--out", str(tmp_path / "ds2"), "--train", str(tmp_path / "si.smi"),
                         "--tokenizer", str(tmp_path / "tok.json"), "--val-size", "1", "--no-progress"], capsys)
    assert code == 2 and "'[Si]'" in err and "not in the vocabulary" in err
    code, out, _ = _run(["chem", "prepare", "--out", str(tmp_path / "ok"), "--train", str(tmp_path / "train.smi"),
                         "--val-size", "2", "--no-progress"], capsys)
    assert code == 0 and "train 6, val 2 molecules" in out  # "C C": a .smi line's first field is "C"


def test_cli_train_wants_a_molecule_dataset(tmp_path, capsys):
    from lucidlm.data import prepare_dataset

    (tmp_path / "t.txt").write_text("hello world " * 50)
    prepare_dataset(tmp_path / "t.txt", tmp_path / "text", "char", progress=False)
    (tmp_path / "c.toml").write_text(f'data = "{tmp_path / "text"}"\n')
    code, _, err = _run(["chem", "train", "--config", str(tmp_path / "c.toml")], capsys)
    assert code == 2 and "not a molecule dataset" in err


def test_moses_csv_gz_is_read_like_the_asset(tmp_path):
    with gzip.open(tmp_path / "m.csv.gz", "wt") as f:
        f.write("SMILES,SPLIT\n" + "".join(f"{s},test\n" for s in MOSES_FIRST))
    assert read_smiles(tmp_path / "m.csv.gz") == MOSES_FIRST
    (tmp_path / "nocol.csv").write_text("name\nx\n")
    with pytest.raises(ValueError, match="has no SMILES column"):
        read_smiles(tmp_path / "nocol.csv")
