"""CharTokenizer (against nanoGPT's shakespeare_char numbers) and SmilesTokenizer (against
hand-written token lists, real drug SMILES and, when the asset can be had, the MOSES test set)."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import simple
from lucidlm.tokenizers.simple import SMILES_SPECIAL_TOKENS, CharTokenizer, SmilesTokenizer, tokenize_smiles


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return (importlib.resources.files("lucidlm") / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")


# -- CharTokenizer ------------------------------------------------------------------------------


def test_char_vocab_matches_nanogpt_shakespeare_char(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    # nanoGPT data/shakespeare_char/prepare.py: 65 characters, "\n" first, then " ", "!", ...
    assert tok.vocab_size == 65
    assert "".join(tok.chars) == "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert tok.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]  # Karpathy's "Let's build GPT"
    assert tok.decode(tok.encode(shakespeare)) == shakespeare


def test_char_train_replaces_the_vocab():
    tok = CharTokenizer()
    assert tok.vocab_size == 0
    assert tok.train("banana") is tok
    assert tok.chars == ["a", "b", "n"] and tok.encode("nab") == [2, 0, 1]
    tok.train("xy")
    assert tok.chars == ["x", "y"] and tok.token_to_id("a") is None and tok.id_to_token(1) == "y"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=50))
def test_char_round_trip_any_text(text):
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text))
    assert tok.decode(tok.encode(text)) == text


def test_char_unknown_characters():
    tok = CharTokenizer.from_text("hello world")
    with pytest.raises(ValueError, match=r"'W' \(U\+0057\) at position 6"):
        tok.encode("hello World")
    with pytest.raises(ValueError, match="unknown token id 99"):
        tok.decode([0, 99])
    with pytest.raises(ValueError, match="unknown token id -1"):
        tok.decode([-1])
    with pytest.raises(TypeError):
        tok.encode(None)
    with_unk = CharTokenizer.from_text("hello world", unk_token="<unk>")
    assert with_unk.vocab_size == 9 and with_unk.unk_id == 8
    assert with_unk.decode(with_unk.encode("hello World!")) == "hello <unk>orld<unk>"
    in_vocab_unk = CharTokenizer.from_text("ab?", unk_token="?")
    assert in_vocab_unk.vocab_size == 3 and in_vocab_unk.encode("axb") == [1, 0, 2]


def test_char_bad_vocab():
    with pytest.raises(ValueError, match="one character"):
        CharTokenizer(["a", "bc"])
    with pytest.raises(ValueError, match="twice"):
        CharTokenizer(["a", "a"])


def test_char_save_load(tmp_path):
    tok = CharTokenizer.from_text("To be, or not to be: that is the question.\n", unk_token="<unk>")
    path = tok.save(tmp_path / "char.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "lucidlm-char" and data["version"] == 1
    for again in (CharTokenizer.load(path), simple.load(path)):
        assert isinstance(again, CharTokenizer)
        assert again.chars == tok.chars and again.unk_token == "<unk>"
        assert again.encode("not to be?") == tok.encode("not to be?")
    assert [p.name for p in tmp_path.iterdir()] == ["char.json"]  # no temp files left behind


# -- SMILES tokenization ------------------------------------------------------------------------

# fmt: off
EXPECTED_TOKENS = {
    # bracket atoms: chirality, hydrogens, charges, isotopes
    "C[C@@H](O)c1ccccc1": ["C", "[C@@H]", "(", "O", ")", "c", "1", "c", "c", "c", "c", "c", "1"],
    "N[C@H](C)C(=O)O": ["N", "[C@H]", "(", "C", ")", "C", "(", "=", "O", ")", "O"],
    "c1cc[nH]c1": ["c", "1", "c", "c", "[nH]", "c", "1"],
    "[O-][N+](=O)c1ccccc1": ["[O-]", "[N+]", "(", "=", "O", ")", "c", "1", "c", "c", "c", "c", "c", "1"],
    "[13CH3]O": ["[13CH3]", "O"],
    "[2H]O[2H]": ["[2H]", "O", "[2H]"],
    "[Na+].[Cl-]": ["[Na+]", ".", "[Cl-]"],
    "[Fe+2]": ["[Fe+2]"],
    # two-letter atoms, and the one-letter atoms they must not swallow
    "ClCCBr": ["Cl", "C", "C", "Br"],
    "BrC(Cl)Cl": ["Br", "C", "(", "Cl", ")", "Cl"],
    "B(O)O": ["B", "(", "O", ")", "O"],
    "Sc1ccccc1": ["S", "c", "1", "c", "c", "c", "c", "c", "1"],  # thiophenyl, not scandium
    "CCN": ["C", "C", "N"],
    # ring closures, including two-digit ones
    "C1CC2CCC1C2": ["C", "1", "C", "C", "2", "C", "C", "C", "1", "C", "2"],
    "C%10CCCCC%10": ["C", "%10", "C", "C", "C", "C", "C", "%10"],
    "C%12%13CC%12C%13": ["C", "%12", "%13", "C", "C", "%12", "C", "%13"],
    # aromatic atoms
    "c1ccoc1": ["c", "1", "c", "c", "o", "c", "1"],
    "c1ccsc1": ["c", "1", "c", "c", "s", "c", "1"],
    "c1ncncn1": ["c", "1", "n", "c", "n", "c", "n", "1"],
    "c1ccc2[se]ccc2c1": ["c", "1", "c", "c", "c", "2", "[se]", "c", "c", "c", "2", "c", "1"],
    # bonds, stereo bonds, dot, reaction arrow, wildcard
    "F/C=C/F": ["F", "/", "C", "=", "C", "/", "F"],
    "F/C=C\\F": ["F", "/", "C", "=", "C", "\\", "F"],
    "C#N": ["C", "#", "N"],
    "O=C=O": ["O", "=", "C", "=", "O"],
    "c1ccccc1-c1ccccc1": ["c", "1", "c", "c", "c", "c", "c", "1", "-", "c", "1", "c", "c", "c", "c", "c", "1"],
    "CC(=O)O.OCC>>CC(=O)OCC": ["C", "C", "(", "=", "O", ")", "O", ".", "O", "C", "C", ">", ">", "C", "C", "(", "=", "O", ")", "O", "C", "C"],
    "*C(*)=O": ["*", "C", "(", "*", ")", "=", "O"],
    "": [],
}
# fmt: on


@pytest.mark.parametrize("smiles", EXPECTED_TOKENS)
def test_smiles_tokens_by_hand(smiles):
    assert tokenize_smiles(smiles) == EXPECTED_TOKENS[smiles]


@pytest.mark.parametrize(
    ("smiles", "named"),
    [
        ("CCH", "'H' at position 2"),  # H outside brackets
        ("C[C", "'[' at position 1"),  # unclosed bracket
        ("CC CC", "' ' at position 2"),  # whitespace
        ("CC%1", "'%' at position 2"),  # % needs two digits
        ("CcZ", "'Z' at position 2"),
        ("NaCl", "'a' at position 1"),  # sodium needs brackets: [Na+].[Cl-]
    ],
)
def test_smiles_untokenizable_characters_are_named(smiles, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        tokenize_smiles(smiles)


# Real molecules, stereo included (PubChem isomeric SMILES, written out by hand).
DRUGS = {
    "caffeine": "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "caffeine (aromatic)": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "aspirin": "CC(=O)OC1=CC=CC=C1C(=O)O",
    "ibuprofen": "CC(C)CC1=CC=C(C=C1)C(C)C(=O)O",
    "paracetamol": "CC(=O)NC1=CC=C(C=C1)O",
    "penicillin G": "CC1([C@@H](N2[C@H](S1)[C@@H](C2=O)NC(=O)CC3=CC=CC=C3)C(=O)O)C",
    "morphine": "CN1CC[C@]23[C@@H]4[C@H]1CC5=C2C(=C(C=C5)O)O[C@H]3[C@H](C=C4)O",
    "nicotine": "CN1CCC[C@H]1C2=CN=CC=C2",
    "diazepam": "CN1C(=O)CN=C(C2=C1C=CC(=C2)Cl)C3=CC=CC=C3",
    "fluoxetine": "CNCCC(C1=CC=CC=C1)OC2=CC=C(C=C2)C(F)(F)F",
    "metformin": "CN(C)C(=N)N=C(N)N",
    "atorvastatin": "CC(C)C1=C(C(=C(N1CC[C@H](C[C@H](CC(=O)O)O)O)C2=CC=C(C=C2)F)C3=CC=CC=C3)C(=O)NC4=CC=CC=C4",
    "sildenafil": "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C",
    "omeprazole": "CC1=CN=C(C(=C1OC)C)CS(=O)C2=NC3=C(N2)C=C(C=C3)OC",
    "cisplatin": "N.N.Cl[Pt]Cl",
    "tamoxifen": "CC/C(=C(\\C1=CC=CC=C1)/C2=CC=C(C=C2)OCCN(C)C)/C3=CC=CC=C3",
    "dopamine": "C1=CC(=C(C=C1CCN)O)O",
    "serotonin": "C1=CC2=C(C=C1O)C(=CN2)CCN",
    "adrenaline": "CNC[C@@H](C1=CC(=C(C=C1)O)O)O",
    "testosterone": "C[C@]12CC[C@H]3[C@H]([C@@H]1CC[C@@H]2O)CCC4=CC(=O)CC[C@]34C",
    "cholesterol": "C[C@H](CCCC(C)C)[C@H]1CC[C@@H]2[C@@]1(CC[C@H]3[C@H]2CC=C4[C@@]3(CC[C@@H](C4)O)C)C",
    "glucose": "C([C@@H]1[C@H]([C@@H]([C@H](C(O1)O)O)O)O)O",
    "ascorbic acid": "C([C@@H]([C@@H]1C(=C(C(=O)O1)O)O)O)O",
    "lidocaine": "CCN(CC)CC(=O)NC1=C(C=CC=C1C)C",
    "ciprofloxacin": "C1CC1N2C=C(C(=O)C3=CC(=C(C=C32)N4CCNCC4)F)C(=O)O",
    "warfarin": "CC(=O)CC(C1=CC=CC=C1)C2=C(C3=CC=CC=C3OC2=O)O",
    "chloramphenicol": "C1=CC(=CC=C1[C@H]([C@@H](CO)NC(=O)C(Cl)Cl)O)[N+](=O)[O-]",
    "sulfamethoxazole": "CC1=CC(=NO1)NS(=O)(=O)C2=CC=C(C=C2)N",
    "bromobenzene": "BrC1=CC=CC=C1",
    "phenylboronic acid": "B(C1=CC=CC=C1)(O)O",
    "adamantane": "C1C2CC3CC1CC(C2)C3",
    "lithium carbonate": "[Li+].[Li+].C(=O)([O-])[O-]",
}


@pytest.mark.parametrize("name", DRUGS)
def test_smiles_round_trip_real_molecules(name):
    smiles = DRUGS[name]
    assert "".join(tokenize_smiles(smiles)) == smiles
    tok = SmilesTokenizer.from_corpus(DRUGS.values())
    ids = tok.encode(smiles)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == smiles
    assert tok.decode(tok.encode(smiles, add_special_tokens=True)) == smiles


def test_smiles_vocab():
    tok = SmilesTokenizer.from_corpus(["CCO", "c1ccccc1", "C[C@@H](Cl)O"])
    assert tok.tokens[:4] == list(SMILES_SPECIAL_TOKENS)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    # most frequent first (c x6, C x3, 1 and O x2, ...), ties in code point order: reproducible ids
    assert tok.tokens[4:] == ["c", "C", "1", "O", "(", ")", "Cl", "[C@@H]"]
    assert tok.vocab_size == 12
    assert tok.encode("CCO", add_special_tokens=True) == [1, 5, 5, 7, 2]
    assert tok.decode([1, 5, 5, 7, 2, 0, 0]) == "CCO"
    assert tok.decode([1, 5, 2], skip_special_tokens=False) == "<bos>C<eos>"
    # a token the corpus never had is <unk>, and shows as such
    assert tok.encode("CBr") == [5, 3]
    assert tok.decode(tok.encode("CBr")) == "C<unk>"
    rare = SmilesTokenizer.from_corpus(["CCO", "CCN"], min_frequency=2)
    assert rare.tokens[4:] == ["C"]


def test_smiles_bad_inputs(tmp_path):
    tok = SmilesTokenizer.from_corpus(["CCO"])
    with pytest.raises(ValueError, match="'H' at position 1"):
        tok.encode("CH4")
    with pytest.raises(ValueError, match="unknown token id 42"):
        tok.decode([4, 42])
    with pytest.raises(ValueError, match="unknown token id -1"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="special tokens"):
        SmilesTokenizer(["C", "O"])
    with pytest.raises(TypeError):
        tokenize_smiles(123)


def test_smiles_save_load(tmp_path):
    tok = SmilesTokenizer.from_corpus(DRUGS.values())
    path = tok.save(tmp_path / "smiles.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "lucidlm-smiles" and data["version"] == 1
    for again in (SmilesTokenizer.load(path), simple.load(path)):
        assert isinstance(again, SmilesTokenizer)
        assert again.tokens == tok.tokens
        assert again.encode(DRUGS["penicillin G"]) == tok.encode(DRUGS["penicillin G"])


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        simple.load(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        SmilesTokenizer.load(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "lucidlm-bpe", "version": 1}))
    with pytest.raises(ValueError, match="'lucidlm-bpe'"):
        simple.load(wrong)
    with pytest.raises(ValueError, match="not a lucidlm-char file"):
        CharTokenizer.load(wrong)
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"format": "lucidlm-char", "version": 99, "chars": ["a"]}))
    with pytest.raises(ValueError, match="version 99"):
        CharTokenizer.load(future)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "lucidlm-smiles", ')
    with pytest.raises(ValueError, match="not valid JSON"):
        simple.load(broken)


def _moses_test_path() -> Path:
    try:
        from lucidlm.assets import asset_path
    except ImportError as exc:
        pytest.skip(f"lucidlm.assets is not available ({exc})")
    try:
        return asset_path("moses", "test")
    except (RuntimeError, OSError, ValueError) as exc:
        pytest.skip(f"the MOSES test set cannot be had (offline? set LUCIDLM_WHEELHOUSE): {exc}")


def test_smiles_round_trip_moses_test_set():
    """Every SMILES of the MOSES test split (~176k drug-like molecules) tokenizes and round-trips."""
    with gzip.open(_moses_test_path(), "rt", encoding="utf-8") as f:
        lines = f.read().split()
    assert lines[0] == "SMILES"
    corpus = lines[1:]
    assert len(corpus) > 100_000
    tok = SmilesTokenizer.from_corpus(corpus)
    assert tok.vocab_size < 40  # MOSES is a small alphabet: C N O F S Cl Br, rings, a few brackets
    for smiles in corpus[:20_000]:
        assert tok.decode(tok.encode(smiles)) == smiles
