"""Instruction data (lucidlm.train.instruct) with the real SmolLM2 tokenizer and chat template,
the generated task (lucidlm.data.tasks), and `lucidlm train` with [lora] and chat JSONL."""

from __future__ import annotations

import json
from itertools import groupby

import pytest
import torch

from lucidlm.data.tasks import contains_answer, is_correct, reverse_words
from lucidlm.train.instruct import (
    IGNORE,
    ChatBatches,
    chat_batches,
    collate,
    read_chat_jsonl,
    tokenize_chat,
    tokenize_conversations,
    write_chat_jsonl,
)

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


@pytest.fixture(scope="module")
def tok():
    from lucidlm.tokenizers import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


def spans(tok, ex):
    """[(labelled?, text), ...]: the conversation cut where the labels switch on or off."""
    return [(on, tok.decode([i for i, _ in group]))
            for on, group in groupby(zip(ex.ids, ex.labels), key=lambda p: p[1] != IGNORE)]


def test_only_assistant_replies_and_their_end_token_are_labelled(tok):
    ex = tokenize_chat(CHAT, tok)
    # ChatML, written out by hand: the template's role headers and the "\n" after <|im_end|> are not learned
    assert spans(tok, ex) == [
        (False, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                "<|im_start|>assistant\n"),
        (True, "Hello! How can I help?<|im_end|>"),
        (False, "\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"),
        (True, "4<|im_end|>"),
        (False, "\n"),
    ]
    labelled = [label for label in ex.labels if label != IGNORE]
    assert labelled == [i for i, label in zip(ex.ids, ex.labels) if label != IGNORE]  # labels are the ids
    assert labelled.count(tok.eos_id) == 2 and tok.decode([tok.eos_id]) == "<|im_end|>"


def test_default_system_prompt_is_not_labelled(tok):
    ex = tokenize_chat([{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}], tok)
    parts = spans(tok, ex)
    assert parts[0][1].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert [text for on, text in parts if on] == ["Blue.<|im_end|>"]


def test_collate_shifts_and_pads(tok):
    long, short = tokenize_chat(CHAT, tok), tokenize_chat(CHAT[:3], tok)
    x, y = collate([long, short], pad_id=tok.eos_id)
    assert x.shape == y.shape == (2, len(long.ids) - 1)
    assert x[0].tolist() == list(long.ids[:-1]) and y[0].tolist() == list(long.labels[1:])
    n = len(short.ids) - 1
    assert (x[1, n:] == tok.eos_id).all() and (y[1, n:] == IGNORE).all()  # right padding, no loss
    keep = y[0] != IGNORE
    assert torch.equal(y[0][keep], torch.tensor(long.ids[1:])[keep])  # targets are the next tokens


def test_truncation_to_block_size(tok):
    full = tokenize_chat(CHAT, tok)
    first_reply_end = max(i for i, label in enumerate(full.labels[:30]) if label != IGNORE)
    (ex,) = tokenize_conversations([CHAT], tok, block_size=first_reply_end)
    assert len(ex.ids) == first_reply_end + 1 and ex.ids == full.ids[: first_reply_end + 1]
    with pytest.raises(ValueError, match="cuts off every assistant reply"):
        tokenize_conversations([CHAT], tok, block_size=10)


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    good = json.dumps({"messages": CHAT[1:3]})
    cases = [
        ("{not json", r"chat.jsonl:2: not valid JSON"),
        (json.dumps({"msgs": []}), r"chat.jsonl:2: no 'messages' key"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), r":2: message 0 has unknown role 'robot'"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), r":2: no assistant message"),
        (json.dumps({"messages": [{"role": "user", "content": 3}, CHAT[2]]}), r":2: message 0 content must be"),
    ]
    for bad, message in cases:
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=message):
            read_chat_jsonl(path)
    with pytest.raises(FileNotFoundError, match="no instruction data"):
        read_chat_jsonl(tmp_path / "missing.jsonl")


def test_batches_from_jsonl(tmp_path, tok):
    train, test = reverse_words(40, 0, seed=3)
    path = write_chat_jsonl([it.messages() for it in train], tmp_path / "chat.jsonl")
    assert read_chat_jsonl(path) == [it.messages() for it in train]
    batches = chat_batches(path, tok, block_size=64)
    assert (len(batches.splits["train"]), len(batches.splits["val"])) == (38, 2)  # every 20th held out
    x1, y1 = batches("train", 4, torch.Generator().manual_seed(0))
    x2, y2 = batches("train", 4, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.dtype == y1.dtype == torch.long
    answers = {it.answer for it in train}
    for row in y1:  # every row's labels are one reply + <|im_end|>
        text = tok.decode([int(t) for t in row if t != IGNORE])
        assert text.endswith("<|im_end|>") and text[: -len("<|im_end|>")] in answers
    with pytest.raises(ValueError, match="at least one train and one val"):
        ChatBatches([], [])


def test_reverse_words_task():
    train, test = reverse_words(300, 100, seed=7)
    assert (train, test) == reverse_words(300, 100, seed=7)  # deterministic
    assert not {t.prompt for t in train} & {t.prompt for t in test}  # no overlap
    item = train[0]
    words = item.prompt.split(": ", 1)[1].split(".")[0].split()
    assert item.answer.split() == words[::-1] and 3 <= len(words) <= 5
    assert is_correct("Tiger, lemon river.", "tiger lemon river") and not is_correct("lemon tiger river", "tiger lemon river")
    assert contains_answer("Sure! The reversed words are: tiger lemon river.", "tiger lemon river")
    assert not is_correct("Sure! tiger lemon river", "tiger lemon river")


def test_cli_lora_finetune_on_chat_jsonl(tmp_path, tok, capsys):
    """`lucidlm train --config lora.toml`: a tiny SmolLM2-shaped checkpoint (with the real
    tokenizer and template), chat JSONL, [lora]; adapters saved and loadable."""
    from lucidlm.cli import main
    from lucidlm.loading.adapters import load_adapters
    from lucidlm.loading.checkpoint import save_checkpoint
    from lucidlm.models.config import PRESETS, ModelConfig
    from lucidlm.models.transformer import build_model
    from lucidlm.nn.lora import lora_modules

    cfg = {**PRESETS["smollm2-135m"].to_dict(), "n_layer": 2, "n_embd": 32, "n_head": 4, "n_kv_head": 2,
           "intermediate_size": 64, "max_seq_len": 128, "name": "tiny-smollm2"}
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig.from_dict(cfg)), tmp_path / "base", tok)
    train, _ = reverse_words(60, 0, seed=1)
    write_chat_jsonl([it.messages() for it in train], tmp_path / "chat.jsonl")
    (tmp_path / "lora.toml").write_text(
        f'out_dir = "{tmp_path / "out"}"\ninit_from = "{tmp_path / "base"}"\ndata = "{tmp_path / "chat.jsonl"}"\n'
        'batch_size = 4\nblock_size = 96\nmax_steps = 4\neval_interval = 4\neval_iters = 1\nwarmup_steps = 1\n'
        'lr = 1e-2\nprogress = false\n[lora]\nrank = 2\nalpha = 4\ntargets = ["qkv", "gate_up"]\n')
    assert main(["train", "--config", str(tmp_path / "lora.toml")]) == 0
    assert "done: 4 steps" in capsys.readouterr().out
    meta = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert (meta["rank"], meta["targets"], meta["base_model"]) == (2, ["qkv", "gate_up"], str(tmp_path / "base"))
    from lucidlm.loading.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "base", tokenizer=False)
    load_adapters(model, tmp_path / "out" / "adapter")
    assert len(lora_modules(model)) == 4 and any(m.lora_B.abs().sum() > 0 for m in lora_modules(model).values())
    # r (in + out) per layer: qkv 2 (32 + 32 + 2*2*8) + gate_up 2 (32 + 2*64) = 512, two layers
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 1024
    # out/last (adapters beside the frozen weights) loads as a plain model with the adapters merged
    # in: the same logits as base + adapters, computed above without merging
    merged, _ = load_checkpoint(tmp_path / "out" / "last", tokenizer=False)
    assert not lora_modules(merged)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids), model.eval()(ids), rtol=1e-5, atol=1e-5)
    # a bad [lora] table is one clear line from the CLI (exit 2)
    (tmp_path / "bad.toml").write_text(f'init_from = "{tmp_path / "base"}"\ndata = "{tmp_path / "chat.jsonl"}"\n'
                                       f'out_dir = "{tmp_path / "out2"}"\n[lora]\nrnk = 2\n')
    assert main(["train", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "valid keys: rank, alpha, targets, dropout" in capsys.readouterr().err


# ChatML with HF's `{% generation %}` markers around what the assistant says: transformers'
# return_assistant_tokens_mask then marks those tokens, an independent reference for our mask.
GENERATION_CHATML = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_mask_matches_transformers_assistant_tokens_mask(tmp_path, tok):
    transformers = pytest.importorskip("transformers")
    from lucidlm.tokenizers.hf import to_tokenizer_json

    to_tokenizer_json(tok, tmp_path / "tokenizer.json")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"), eos_token="<|im_end|>")
    for chat in (CHAT, CHAT[1:3], [*CHAT, {"role": "user", "content": "Thanks"}]):
        out = hf.apply_chat_template(chat, chat_template=GENERATION_CHATML, tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
        ex = tokenize_chat(chat, tok, template=GENERATION_CHATML)
        assert list(ex.ids) == out["input_ids"]
        assert [int(label != IGNORE) for label in ex.labels] == out["assistant_masks"]


def test_finetune_a_hugging_face_gpt2_directory(tmp_path):
    """init_from an HF GPT-2 directory (transformers' save_pretrained) whose tokenizer has no chat
    template: the chats are rendered as ChatML text; adapters train and save."""
    transformers = pytest.importorskip("transformers")
    from lucidlm.tokenizers import load_tokenizer
    from lucidlm.tokenizers.hf import to_tokenizer_json
    from lucidlm.train.config import TrainConfig
    from lucidlm.train.instruct import finetune

    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=128))
    hf_model.save_pretrained(tmp_path / "gpt2-tiny", safe_serialization=True)
    to_tokenizer_json(load_tokenizer("gpt2"), tmp_path / "gpt2-tiny" / "tokenizer.json")
    train, _ = reverse_words(40, 0, seed=2)
    write_chat_jsonl([it.messages() for it in train], tmp_path / "chat.jsonl")
    cfg = TrainConfig(out_dir=str(tmp_path / "out"), init_from=str(tmp_path / "gpt2-tiny"),
                      data=str(tmp_path / "chat.jsonl"), batch_size=2, block_size=80, max_steps=2, eval_interval=2,
                      eval_iters=1, warmup_steps=1, progress=False, lora={"rank": 2, "targets": ["qkv", "fc"]})
    result = finetune(cfg)
    assert result.step == 2 and all(map(torch.isfinite, map(torch.tensor, result.losses.values())))
    meta = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert meta["modules"] == ["layers.0.attn.qkv", "layers.0.mlp.fc", "layers.1.attn.qkv", "layers.1.mlp.fc"]
