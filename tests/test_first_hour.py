"""What a new user meets first: sampling defaults that give sense, presets that say they are
random, and error messages that say what happened and what to do (issue 10).

The references are independent of the code under test: the SmolLM2 model card's published
settings, files written by ``transformers`` and by the ``gguf`` package, parameter counts of
the published GPT-2, and hand-computed context arithmetic.
"""

from __future__ import annotations

import pytest
import torch

from lucidlm.cli import main
from lucidlm.generate.decode import PREFILL_CHUNK, _prefill, generate
from lucidlm.generate.defaults import FALLBACK, model_sampling_defaults, resolve_sampling
from lucidlm.generate.sampling import SamplingParams
from lucidlm.models import DecoderLM, ModelConfig
from lucidlm.tokenizers.simple import CharTokenizer

SMOL = "smollm2-135m-instruct"


def tiny_decoder(vocab_size: int, max_seq_len: int = 64, seed: int = 0) -> DecoderLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, max_seq_len=max_seq_len,
                      positions="rope", norm="rmsnorm", mlp="swiglu", activation="silu", bias=False)
    return DecoderLM(cfg).eval()


@pytest.fixture(scope="module")
def char_checkpoint(tmp_path_factory):
    """A model like the demo's: characters of plain text, no chat template, no ChatML tokens."""
    from lucidlm.loading.checkpoint import save_checkpoint

    tok = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;!?'\n")))
    path = tmp_path_factory.mktemp("ckpt") / "char"
    save_checkpoint(tiny_decoder(tok.vocab_size), path, tok)
    return path


# ----------------------------------------------------------------------------------------------
# sampling defaults


def test_smollm2_uses_its_model_cards_settings():
    # huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct: temperature=0.2, top_p=0.9, do_sample=True
    params = model_sampling_defaults(SMOL).params()
    assert (params.temperature, params.top_p, params.top_k, params.min_p) == (0.2, 0.9, 0, 0.0)


def test_default_sampling_answers_the_readme_question():
    """The README's first example. With the old default (temperature 1, no filter) 0 of 4 answers
    named Paris; with the model card's settings most do (15 of seeds 0..19 when measured)."""
    from lucidlm.generate.chat import render_chat
    from lucidlm.loading.load import load_model

    model, tok = load_model(SMOL)
    model.use_fast_decode()
    prompt = render_chat([{"role": "user", "content": "What is the capital of France?"}], tokenizer=tok)
    card = model_sampling_defaults(SMOL).params()
    answers = [generate(model, tok, prompt, max_tokens=10, add_special=False,
                        params=SamplingParams(temperature=card.temperature, top_p=card.top_p, seed=seed)).text
               for seed in range(8)]
    assert sum("Paris" in a for a in answers) >= 5, answers


def test_generation_config_json_as_transformers_writes_it(tmp_path):
    from transformers import GenerationConfig

    GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9).save_pretrained(tmp_path)
    hf = GenerationConfig.from_pretrained(tmp_path)
    top_k = hf.top_k  # transformers 5 leaves unset fields None and fills them when it generates:
    if top_k is None:
        top_k = GenerationConfig._get_default_generation_params()["top_k"]
    params = model_sampling_defaults(tmp_path).params()
    assert (params.temperature, params.top_p, params.top_k) == (hf.temperature, hf.top_p, top_k) == (0.6, 0.9, 50)
    GenerationConfig(do_sample=False).save_pretrained(tmp_path)  # the model asks for greedy decoding
    assert model_sampling_defaults(tmp_path).params().greedy


def test_gguf_general_sampling_metadata(tmp_path):
    import gguf

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_float32("general.sampling.temp", 0.7)
    writer.add_int32("general.sampling.top_k", 20)
    writer.add_float32("general.sampling.top_p", 0.8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    d = model_sampling_defaults(path)
    assert d.values == pytest.approx({"temperature": 0.7, "top_k": 20, "top_p": 0.8})
    assert "general.sampling" in d.source


def test_no_recommendation_falls_back_to_llama_cpp_defaults(char_checkpoint):
    d = model_sampling_defaults(char_checkpoint)
    assert d.values == FALLBACK == {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
    params, text = resolve_sampling(d, top_k=5, seed=3)
    assert (params.temperature, params.top_k, params.seed) == (0.8, 5, 3)
    assert text == "temperature 0.8, top-k 5, top-p 0.95, min-p 0.05, seed 3 (llama.cpp's defaults: " \
                   "the model ships no recommendation; yours: top-k)"


def test_generate_prints_its_settings_first_and_options_win(char_checkpoint, capsys):
    assert main(["generate", "--model", str(char_checkpoint), "-n", "4", "-t", "0", "To be"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "lucidlm: sampling: greedy (temperature 0 from your options)"


def test_generate_help_names_the_default_source(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "the model's recommended value, else llama.cpp's 0.8" in help_text


def test_show_probs_also_prints_the_whole_text(char_checkpoint, capsys):
    assert main(["generate", "--model", str(char_checkpoint), "-n", "6", "-t", "0", "--show-probs", "2",
                 "--ignore-eos", "To be"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if "p=" in line]
    assert len(rows) == 6
    text = out[-1]
    assert text.startswith("text: To be") and len(text) == len("text: To be") + 6  # one character per token
    chosen = [eval(row.split()[1]) for row in rows]  # noqa: S307 - the repr() of each token, from our own output
    assert text == "text: To be" + "".join(chosen)


# ----------------------------------------------------------------------------------------------
# presets are architectures: random weights


@pytest.mark.parametrize("command", [["generate", "hi"], ["chat"], ["serve", "--port", "0"],
                                     ["inspect", "logit-lens", "hi"]])
def test_presets_are_refused_without_random_init(command, capsys):
    assert main([*command, "--model", "gpt2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "architecture preset" in err and "random" in err
    assert SMOL in err and "--random-init" in err


def test_random_init_runs_a_preset_anyway(capsys):
    assert main(["generate", "--model", "smollm2-135m", "--random-init", "-n", "2", "-t", "0", "hi"]) == 0


def test_models_lists_pretrained_apart_from_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    pretrained, presets = out.split("Architecture presets")
    assert SMOL in pretrained and "all-minilm-l6-v2" in pretrained and "gpt2 " not in pretrained
    # GPT-2 small has 124,439,808 parameters (OpenAI's release; transformers' GPT2LMHeadModel)
    assert any(line.split()[0] == "gpt2" and "124M parameters" in line for line in presets.splitlines() if line.strip())
    assert main(["assets", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "model (pretrained)" in rows[SMOL] and "tokenizer" in rows["gpt2"]


# ----------------------------------------------------------------------------------------------
# messages that point the right way


def test_prompt_longer_than_the_context_says_so(char_checkpoint, capsys):
    prompt = "to be or not " * 10  # 130 characters, context 64
    assert main(["generate", "--model", str(char_checkpoint), "-n", "8", prompt]) == 2
    err = capsys.readouterr().err
    assert "the prompt is 130 tokens, longer than the model's context of 64" in err
    assert "at most 56 tokens" in err and "lower max_tokens" not in err  # 64 - 8 = 56
    assert main(["generate", "--model", str(char_checkpoint), "-n", "8", "--truncate", prompt]) == 0


def test_max_tokens_that_fill_the_context_says_so(char_checkpoint, capsys):
    assert main(["generate", "--model", str(char_checkpoint), "-n", "64", "hi"]) == 2
    assert "max_tokens=64 alone fills the model's context of 64 tokens" in capsys.readouterr().err


def test_chat_with_a_plain_text_model_explains_instead_of_failing(char_checkpoint, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("hello\n"))
    assert main(["chat", "--model", str(char_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "no chat template" in err and "no ChatML tokens" in err and "lucidlm generate" in err
    assert "using ChatML" not in err


def test_nan_weights_are_named_not_torchs_message():
    model = tiny_decoder(40)
    with torch.no_grad():
        model.lm_head.weight[3, 0] = float("nan")
    with pytest.raises(ValueError, match="logits contain NaN at generation step 0: its weights are probably corrupt"):
        generate(model, None, [1, 2, 3], max_tokens=2)


def test_chunked_prefill_equals_one_pass_and_reports_progress():
    """A long prompt is read in chunks through the cache: same logits as one forward pass."""
    model = tiny_decoder(50, max_seq_len=1200)
    T = PREFILL_CHUNK * 2 + 70
    ids = torch.randint(0, 50, (2, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, :300] = 0  # a left-padded row
    seen = []
    with torch.inference_mode():
        want = model(ids, attention_mask=mask, last_only=True)[:, -1]
        got = _prefill(model, ids, mask, model.new_cache(2, T + 1), lambda done, total: seen.append((done, total)))
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert seen == [(512, T), (1024, T), (T, T)]


def test_prefill_progress_line(capsys):
    from lucidlm.cli.generation import _PrefillProgress

    progress = _PrefillProgress(after_s=0.0)
    progress(512, 2048)
    progress(2048, 2048)
    err = capsys.readouterr().err
    assert "reading the prompt: 512/2048 tokens" in err and "2048/2048 tokens" in err
    assert err.count("\n") == 1 and err.endswith("\n")  # one line, rewritten in place (\r), ended once
