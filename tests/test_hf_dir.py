"""Every lucidlm tokenizer as a Hugging Face tokenizer directory (lucidlm.tokenizers.hf_dir):
``transformers.AutoTokenizer.from_pretrained(dir)``, the reference, gives lucidlm's ids and text
back on hypothesis strings; checkpoints and datasets hold HF's tokenizer.json and never lucidlm's
format under that name, and older checkpoints still load."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucidlm.tokenizers import CharTokenizer, load_tokenizer, train_bpe
from lucidlm.tokenizers.corpus import tiny_shakespeare
from lucidlm.tokenizers.filenames import LUCIDLM_TOKENIZER_FILE
from lucidlm.tokenizers.hf_dir import save_hf_tokenizer
from lucidlm.tokenizers.simple import SMILES_SPECIAL_TOKENS, SmilesTokenizer

transformers = pytest.importorskip("transformers")
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SMILES_TOKENS = ["C", "c", "N", "n", "O", "o", "(", ")", "=", "#", "1", "2", "%10", "[nH]", "[NH+]", "Cl", "Br", "F"]


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    tok = train_bpe(tiny_shakespeare()[:60_000], 400, pattern="cl100k",
                    special_tokens={"<|endoftext|>": None, "<|im_start|>": None, "<|im_end|>": None}, name="t")
    tok.chat_template = TEMPLATE
    folder = save_hf_tokenizer(tok, tmp_path_factory.mktemp("bpe"))
    return tok, transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def smiles_dir(tmp_path_factory):
    tok = SmilesTokenizer([*SMILES_SPECIAL_TOKENS, *SMILES_TOKENS, "<logP=2.25>"])
    folder = save_hf_tokenizer(tok, tmp_path_factory.mktemp("smiles"))
    return tok, transformers.AutoTokenizer.from_pretrained(str(folder)), folder


@pytest.fixture(scope="module")
def char_dir(tmp_path_factory):
    tok = CharTokenizer.from_text(tiny_shakespeare()[:20_000], unk_token="<unk>")
    folder = save_hf_tokenizer(tok, tmp_path_factory.mktemp("char"))
    return tok, transformers.AutoTokenizer.from_pretrained(str(folder))


@SETTINGS
@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs", "Cn")), max_size=200))
def test_bpe_directory_encodes_like_lucidlm(bpe_dir, text):
    ours, hf = bpe_dir
    ids = ours.encode(text)
    assert hf.encode(text, add_special_tokens=False) == ids
    assert hf.decode(ids) == ours.decode(ids)


def test_bpe_directory_has_the_specials_and_chat_template(bpe_dir):
    ours, hf = bpe_dir
    assert hf.chat_template == TEMPLATE
    messages = [{"role": "user", "content": "Is this a dagger?"}]
    text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nIs this a dagger?<|im_end|>\n<|im_start|>assistant\n"
    assert hf.encode(text, add_special_tokens=False) == ours.encode(text, allowed_special="all")
    assert hf("Is this")["input_ids"] == ours.encode("Is this")  # the plain class: no <s> added of its own


@SETTINGS
@given(pieces=st.lists(st.sampled_from(SMILES_TOKENS), max_size=60))
def test_smiles_directory_encodes_like_lucidlm(smiles_dir, pieces):
    ours, hf, _ = smiles_dir
    text = "".join(pieces)
    ids = ours.encode(text)
    assert hf.encode(text, add_special_tokens=False) == ids
    assert hf.decode(ids) == text


def test_smiles_directory_specials_and_condition_tokens(smiles_dir):
    ours, hf, folder = smiles_dir
    assert (hf.bos_token, hf.eos_token, hf.pad_token, hf.unk_token) == ("<bos>", "<eos>", "<pad>", "<unk>")
    assert hf.encode("<logP=2.25><bos>CCO<eos>", add_special_tokens=False) == [
        ours.tokens.index("<logP=2.25>"), ours.bos_id, *ours.encode("CCO"), ours.eos_id]
    # lucidlm's own file beside HF's, and loading the folder gives the lucidlm tokenizer back exactly
    assert (folder / LUCIDLM_TOKENIZER_FILE).is_file()
    again = load_tokenizer(folder)
    assert isinstance(again, SmilesTokenizer) and again.tokens == ours.tokens
    assert load_tokenizer(folder / "tokenizer.json").tokens == ours.tokens  # through the file beside it


@SETTINGS
@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs", "Cn")), max_size=120))
def test_char_directory_encodes_like_lucidlm(char_dir, text):
    ours, hf = char_dir
    text = text.replace("<unk>", "")
    ids = ours.encode(text)  # characters it never saw become <unk>, in both
    assert hf.encode(text, add_special_tokens=False) == ids


def test_wordpiece_directory(minilm_dir, tmp_path):
    ours = load_tokenizer(minilm_dir / "tokenizer.json")
    hf = transformers.AutoTokenizer.from_pretrained(str(save_hf_tokenizer(ours, tmp_path)))
    for text in ["Hello, world!", "Tokenization is fun; isn't it?", "naïve café 東京"]:
        assert hf.encode(text) == ours.encode(text)


def test_lucidlm_format_never_goes_under_hf_name(tmp_path):
    tok = SmilesTokenizer([*SMILES_SPECIAL_TOKENS, "C"])
    with pytest.raises(ValueError, match="tokenizer.json is Hugging Face's file name"):
        tok.save(tmp_path / "tokenizer.json")
    bpe = train_bpe("aaab" * 50, 260, name="x")
    with pytest.raises(ValueError, match="tokenizer.lucidlm.json"):
        bpe.save(tmp_path / "tokenizer.json")
    assert not (tmp_path / "tokenizer.json").exists()
    bpe.save(tmp_path / "x.json")
    assert load_tokenizer(tmp_path / "x.json").encode("aaab") == bpe.encode("aaab")


def test_checkpoints_hold_an_hf_directory_and_old_ones_still_load(tmp_path):
    import torch

    from lucidlm.loading import load_model, save_checkpoint
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    tok = SmilesTokenizer([*SMILES_SPECIAL_TOKENS, *SMILES_TOKENS])
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, max_seq_len=32))
    save_checkpoint(model, tmp_path / "new", tokenizer=tok)
    assert {p.name for p in (tmp_path / "new").iterdir()} >= {"tokenizer.json", "tokenizer_config.json",
                                                               LUCIDLM_TOKENIZER_FILE}
    assert json.loads((tmp_path / "new" / "tokenizer.json").read_text())["model"]["type"] == "WordLevel"
    config = json.loads((tmp_path / "new" / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 32 and config["eos_token"] == "<eos>"
    _, again = load_model(tmp_path / "new")
    assert isinstance(again, SmilesTokenizer) and again.tokens == tok.tokens
    # a checkpoint written before: lucidlm's format under tokenizer.json, nothing else
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "model.safetensors"):
        (old / name).write_bytes((tmp_path / "new" / name).read_bytes())
    (old / "tokenizer.json").write_text(json.dumps(tok.to_dict()))
    _, again = load_model(old)
    assert isinstance(again, SmilesTokenizer) and again.tokens == tok.tokens
