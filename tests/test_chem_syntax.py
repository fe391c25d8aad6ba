"""The SMILES syntax constraint (lucidlm.chem.syntax) against RDKit, the independent reference:
it never rules out a string RDKit parses (MOSES molecules and hand-picked corner cases), it rules
out each kind of string RDKit rejects for its syntax, and what a random model writes under it
parses."""

from __future__ import annotations

import pytest
import torch

from lucidlm.chem.sample import sample_molecules
from lucidlm.chem.syntax import SmilesSyntax, token_kind
from lucidlm.generate.sampling import SamplingParams
from lucidlm.nn.attention import KVCache
from lucidlm.tokenizers.simple import SMILES_SPECIAL_TOKENS, SmilesTokenizer, tokenize_smiles

Chem = pytest.importorskip("rdkit.Chem")
pytest.importorskip("rdkit.RDLogger").DisableLog("rdApp.*")

VOCAB = [*SMILES_SPECIAL_TOKENS, "C", "c", "N", "n", "O", "o", "s", "F", "Cl", "[nH]", "[NH+]", "[O-]", "(", ")",
         "=", "#", "-", "1", "2", "3", "%10", "."]
VALID = ["C", "CCO", "c1ccccc1", "C1CC1", "C(C)(C)C", "C(=O)O", "C1CC(C1)", "C(C)1CC1", "C=1CC1", "C1CC=1",
         "C1.C1", "C1CC2CC1C2", "C12CC1C2", "C%10CC%10", "CC.O", "C(-C)N", "c1cc[nH]c1", "C[NH+](C)C.[O-]Cl",
         "C1CC1C1CC1", "N#CC(C#N)=C(F)Cl", "C1CCC2(CC1)OCCO2", "O=C1CCC(=O)N1"]
# (string, why RDKit refuses it): each breaks exactly one rule of syntax.py
INVALID = [("(C)C", "a branch before any atom"), (".C", "a dot first"), ("C..C", "two dots"), ("C.", "ends on a dot"),
           ("C(", "unclosed branch"), ("C((C))", "a branch opening a branch"), ("C()C", "an empty branch"),
           ("C(.C)", "a dot opening a branch"), ("C(1)C", "a ring label opening a branch"),
           ("C(=1)CC1", "a ring label after a branch's bond"), ("C=)", "a bond closing a branch"),
           ("C=(C)", "a bond before a branch"), ("C=", "ends on a bond"), ("CC)", "a ')' outside any branch"),
           ("C1", "an unclosed ring"), ("C1CC2CC1", "an unclosed ring"), ("C11", "a ring closing onto its own atom"),
           ("C1C1", "a ring bond doubling a chain bond"), ("C12CC12", "two ring bonds between the same atoms"),
           ("C1(C)1", "a ring closing onto its own atom after a branch"), ("", "nothing at all")]


@pytest.fixture(scope="module")
def syntax() -> SmilesSyntax:
    return SmilesSyntax(VOCAB, eos_id=2)


def _walk(syntax: SmilesSyntax, smiles: str) -> int | None:
    """Feed ``smiles`` token by token; the position of the first token the constraint forbids
    (len(tokens) for a forbidden end), or None when every token and the end were allowed."""
    stoi = {t: i for i, t in enumerate(syntax.vocab)}
    ids = [stoi[t] for t in tokenize_smiles(smiles)] if smiles else []
    rows = syntax.start(1)
    for k, i in enumerate([*ids, syntax.eos_id]):
        if not syntax.mask(rows)[0, i]:
            return k
        syntax.push(rows, [i])
    return None


def test_token_kinds():
    assert [token_kind(t) for t in ["C", "[nH]", "Br", "*", "(", ")", ".", "=", "#", "-", "/", "1", "%12", "<eos>",
                                    "<logP=2.25>", "+", "@"]] == [
        "atom", "atom", "atom", "atom", "open", "close", "dot", "bond", "bond", "bond", "bond", "ring", "ring",
        "special", "special", "bad", "bad"]


def test_the_constraint_never_rules_out_what_rdkit_parses(syntax):
    for smiles in VALID:
        assert Chem.MolFromSmiles(smiles) is not None, smiles  # the reference agrees it is valid
        assert _walk(syntax, smiles) is None, smiles


def test_the_constraint_never_rules_out_a_moses_molecule(moses_path):
    from lucidlm.assets import asset_path
    from lucidlm.chem.files import read_smiles

    molecules = read_smiles(asset_path("moses", "test"), limit=2000)
    tok = SmilesTokenizer([*SMILES_SPECIAL_TOKENS, *sorted({t for s in molecules for t in tokenize_smiles(s)})])
    moses = SmilesSyntax(tok.tokens, tok.eos_id)
    assert [s for s in molecules if _walk(moses, s) is not None] == []


@pytest.mark.parametrize(("smiles", "why"), INVALID)
def test_each_rule_rules_out_what_rdkit_rejects(syntax, smiles, why):
    assert Chem.MolFromSmiles(smiles, sanitize=False) is None or smiles == "", why  # RDKit: not even parsable
    assert _walk(syntax, smiles) is not None, why


def test_special_tokens_are_never_drawn(syntax):
    rows = syntax.start(1)
    syntax.push(rows, [VOCAB.index("C")])
    allowed = {VOCAB[i] for i in syntax.mask(rows)[0].nonzero().flatten().tolist()}
    assert allowed == set(VOCAB[4:]) - {")"} | {"<eos>"}


class RandomBigram(torch.nn.Module):
    """A model whose next-token logits depend only on the last token: a fixed random table."""

    def __init__(self, V: int, max_seq_len: int = 40) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(2 * torch.randn(V, V, generator=g))
        with torch.no_grad():
            self.table[:, 2] += 1.5  # <eos> likely enough that most rows end
        self.cfg = type("Cfg", (), {"vocab_size": V, "max_seq_len": max_seq_len})()

    def new_cache(self, batch, max_len):
        return KVCache(1, batch, 1, max_len, 1)

    def forward(self, ids, cache=None, last_only=False):
        cache.layers[0].append(*[torch.zeros(ids.shape[0], 1, ids.shape[1], 1)] * 2)
        return self.table[ids[:, -1:]]  # (B, 1, V)


def test_what_a_random_model_writes_under_the_constraint_parses():
    tok = SmilesTokenizer(VOCAB)
    model = RandomBigram(tok.vocab_size)
    free = sample_molecules(model, tok, 300, params=SamplingParams(seed=0), progress=False)
    constrained = sample_molecules(model, tok, 300, params=SamplingParams(seed=0), constrained=True, progress=False)

    def parses(m):
        return m.ended == "eos" and m.smiles != "" and Chem.MolFromSmiles(m.smiles, sanitize=False) is not None

    assert sum(map(parses, free)) < 30  # without it, almost nothing a random model writes is SMILES
    finished = [m for m in constrained if m.ended == "eos"]
    assert len(finished) > 60
    assert [m.smiles for m in finished if not parses(m)] == []
    # the recorded log-probability is still the model's own, before the mask
    m = finished[0]
    logp = torch.log_softmax(model.table.detach(), dim=-1)
    ids = [tok.bos_id, *m.token_ids]
    assert m.logprob == pytest.approx(sum(logp[a, b].item() for a, b in zip(ids, ids[1:])), abs=1e-4)


def test_cli_sample_constrained(tmp_path, capsys):
    from lucidlm.cli import main
    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    tok = SmilesTokenizer(VOCAB)
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, max_seq_len=24))
    with torch.no_grad():  # an untrained model that ends its rows often enough
        model.lm_head.weight[2] += 2 * model.lm_head.weight.abs().mean()
    save_checkpoint(model, tmp_path / "ckpt", tokenizer=tok)
    out = tmp_path / "s.csv"
    code = main(["chem", "sample", str(tmp_path / "ckpt"), "-n", "64", "--out", str(out), "--constrained",
                 "--seed", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    import csv

    rows = list(csv.DictReader(out.open()))
    finished = [r["SMILES"] for r in rows if r["ended"] == "eos"]
    assert len(rows) == 64 and finished
    assert [s for s in finished if not s or Chem.MolFromSmiles(s, sanitize=False) is None] == []
