"""``render_chat`` against transformers' ``apply_chat_template``; the ``generate`` and ``chat`` CLI."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from lucidlm.cli import main
from lucidlm.generate.chat import CHATML_TEMPLATE, render_chat

transformers = pytest.importorskip("transformers")

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hi!"}],
    "system+user": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    "multi-turn": [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour ! 🙂"},
        {"role": "user", "content": "Thanks\nbye"},
    ],
    "no-system-multi": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
}

# Exercises what HF's environment provides: bos/eos tokens, raise_exception, tojson (no HTML
# escaping, non-ASCII kept), loop controls, namespace, trim_blocks/lstrip_blocks, {% generation %}
# and tools (None when not given).
FEATURES_TEMPLATE = """{{ bos_token }}
{% set ns = namespace(n=0) %}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('unknown role ' + message['role']) }}
    {% endif %}
    {% if message['role'] == 'system' and not loop.first %}{% continue %}{% endif %}
    {% set ns.n = ns.n + 1 %}
    [{{ ns.n }}] {{ message['role'] | upper }}: {{ message['content'] | tojson }}
    {% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}
    {% endif %}
    {% if message.meta is defined %}meta={{ message.meta | tojson(indent=2) }}{% endif %}
{% endfor %}
tools={{ tools is none }}
{% if add_generation_prompt %}ASSISTANT:{% endif %}"""


@pytest.fixture(scope="module")
def smol_tok():
    from lucidlm.tokenizers import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def hf_tok(smol_tok, tmp_path_factory):
    """transformers' tokenizer from the same files (tokenizer.json + tokenizer_config.json with
    the chat template and the eos/bos tokens), as a user of transformers would load them."""
    from lucidlm.loading.checkpoint import save_tokenizer

    folder = tmp_path_factory.mktemp("smol_tokenizer")
    save_tokenizer(smol_tok, folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


def test_smollm2_template_is_chatml(smol_tok):
    assert "<|im_start|>" in smol_tok.chat_template
    out = render_chat([{"role": "user", "content": "Hi!"}], tokenizer=smol_tok)
    assert out == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                   "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_chat_equals_transformers_for_smollm2(smol_tok, hf_tok, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    ours = render_chat(messages, tokenizer=smol_tok, add_generation_prompt=add_generation_prompt)
    theirs = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert ours == theirs
    # Tokenized, the specials become single ids, as HF's tokenizer makes them.
    assert smol_tok.encode(ours, allowed_special="all") == hf_tok(ours, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("template", [FEATURES_TEMPLATE, CHATML_TEMPLATE])
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_render_chat_equals_transformers_for_other_templates(smol_tok, hf_tok, template, name):
    messages = [dict(m) for m in CONVERSATIONS[name]]
    messages[-1]["meta"] = {"lang": "日本語", "html": "<b>&</b>"}
    messages[0]["name"] = None  # dropped, as HF drops None-valued keys
    for add in (True, False):
        ours = render_chat(messages, template=template, tokenizer=smol_tok, add_generation_prompt=add)
        theirs = hf_tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=add)
        assert ours == theirs


def test_render_chat_errors(smol_tok):
    with pytest.raises(ValueError, match="unknown role tool"):
        render_chat([{"role": "tool", "content": "x"}], template=FEATURES_TEMPLATE, tokenizer=smol_tok)
    with pytest.raises(ValueError, match="no chat template"):
        render_chat([{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="not valid Jinja"):
        render_chat([{"role": "user", "content": "x"}], template="{% for m in messages %}")
    with pytest.raises(ValueError, match="'role'"):
        render_chat(["hello"], template=CHATML_TEMPLATE)
    # The sandbox: a template may not change its inputs or reach Python internals.
    with pytest.raises(ValueError, match="chat template failed"):
        render_chat([{"role": "user", "content": "x"}], template="{{ messages.append(1) }}")
    with pytest.raises(ValueError, match="chat template failed"):
        render_chat([], template="{{ ''.__class__.__mro__[1].__subclasses__() }}")


# ----------------------------------------------------------------------------------------------
# CLI, with a tiny checkpoint that carries SmolLM2's tokenizer (and so its chat template)


@pytest.fixture(scope="module")
def checkpoint(smol_tok, tmp_path_factory):
    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.models.config import ModelConfig
    from lucidlm.models.transformer import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=smol_tok.vocab_size, n_layer=1, n_head=2, n_embd=16, max_seq_len=96,
                      positions="rope", norm="rmsnorm", mlp="swiglu", activation="silu", bias=False,
                      eos_token_id=smol_tok.eos_id)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(build_model(cfg), path, smol_tok)
    return path


def test_cli_generate_is_reproducible_and_shows_probs(checkpoint, capsys):
    from lucidlm.generate import SamplingParams, generate
    from lucidlm.loading.checkpoint import load_checkpoint

    args = ["generate", "--model", str(checkpoint), "-n", "6", "--seed", "3", "--top-k", "40", "--ignore-eos", "Hello"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # same seed, same text
    assert main(args + ["--no-fast-decode"]) == 0
    assert capsys.readouterr().out == first  # the C one-token path and the reference path agree
    model, tok = load_checkpoint(checkpoint)
    # the checkpoint ships no sampling recommendation: llama.cpp's defaults, with the options given on top
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=3)
    expected = generate(model, tok, "Hello", max_tokens=6, params=params, ignore_eos=True)
    assert first == "Hello" + expected.text + "\n"

    assert main(["generate", "--model", str(checkpoint), "-n", "3", "-t", "0", "--show-probs", "2", "Hello"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 5 and all("p=" in line and "top:" in line for line in lines[:3])
    assert lines[3] == "" and lines[4].startswith("text: Hello")  # the table, then the whole text
    assert "3 generated tokens" in out.err


def test_cli_errors_are_one_line(checkpoint, capsys):
    assert main(["generate", "--model", str(checkpoint), "-n", "500", "Hello"]) == 2
    assert "context of 96 tokens" in capsys.readouterr().err
    assert main(["generate", "--model", str(checkpoint), "--top-p", "0", "Hello"]) == 2
    assert "top_p" in capsys.readouterr().err


def test_cli_chat_streams_and_keeps_history(checkpoint, capsys, monkeypatch):
    lines = ["Hi", "/system Be terse.", "How are you?", "/reset", "Again", ""]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines)))
    assert main(["chat", "--model", str(checkpoint), "-n", "4", "-t", "0", "--ignore-eos"]) == 0
    out = capsys.readouterr().out
    assert out.count("assistant> ") == 3
    assert "(system message set)" in out and "(history cleared)" in out


def test_cli_chat_drops_old_turns_to_fit_the_context(checkpoint, capsys, monkeypatch):
    # Each turn is ~10 tokens of template + text; max_tokens 40 in a 96-token context leaves room
    # for only a few turns, so older ones must be dropped for the chat to go on.
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(["one two three"] * 8)))
    assert main(["chat", "--model", str(checkpoint), "-n", "40", "-t", "0", "--system", "S"]) == 0
    out = capsys.readouterr().out
    assert out.count("assistant> ") == 8 and "too long" not in out


def test_generate_runs_its_startup_without_the_collector_then_resumes_it(checkpoint, capsys, monkeypatch):
    # In the `lucidlm` process, main() pauses the garbage collector for a command that loads a
    # model (cli/args.py: starts_fast); the command resumes it once loaded, or main does on an error.
    import gc

    from lucidlm.cli import args as cli_args

    seen = []
    real_done = cli_args.startup_done

    def done():
        seen.append(gc.isenabled())  # still paused when the command says it is loaded
        real_done()

    monkeypatch.setattr("lucidlm.cli.generation.startup_done", done)
    frozen = gc.get_freeze_count()
    try:
        for argv, code in [(["generate", "--model", str(checkpoint), "-n", "2", "-t", "0", "Hello"], 0),
                           (["generate", "--model", str(checkpoint / "absent"), "Hello"], 2)]:
            cli_args.pause_gc_for_startup()
            assert not gc.isenabled()
            assert main(argv) == code
            assert gc.isenabled()
        assert seen == [False]  # the failing run never loaded: main resumed the collector itself
        assert gc.get_freeze_count() > frozen  # what the load made was frozen
        capsys.readouterr()
        assert main(["generate", "--model", str(checkpoint), "-n", "2", "-t", "0", "Hello"]) == 0
        assert gc.isenabled() and seen == [False, True]  # called from Python: nothing paused, nothing changed
    finally:
        gc.unfreeze()
        gc.enable()
