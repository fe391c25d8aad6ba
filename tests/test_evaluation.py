"""lucidlm eval: perplexity against a plain forward pass of transformers (the same model exported),
and lm-evaluation-harness itself: its tasks in-process (lucidlm.evaluation.harness) scored item by
item against a hand-computed log-softmax, and through `lucidlm serve` with the harness's own
`local-completions` / `local-chat-completions` models, which must give the same numbers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lucidlm.cli import main
from lucidlm.evaluation import perplexity, token_nll
from lucidlm.evaluation.perplexity import _windows
from lucidlm.loading import save_checkpoint
from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import build_model
from lucidlm.tokenizers import train_bpe
from lucidlm.tokenizers.corpus import tiny_shakespeare

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUESTIONS = [
    ("What is the capital of France?", ["Paris", "Rome", "a fish"], 0),
    ("Which is a colour?", ["blue", "seven", "quickly"], 0),
    ("Two plus two is", ["four", "five", "a dog"], 0),
    ("The sun rises in the", ["west", "east", "north"], 1),
    ("First Citizen: Before we proceed any further, hear me", ["speak.", "sing.", "run."], 0),
    ("Water is", ["dry", "wet", "loud"], 1),
]


@pytest.fixture(scope="module")
def tokenizer():
    tok = train_bpe(tiny_shakespeare()[:80_000], 400, pattern="gpt2", name="shakespeare",
                    special_tokens={"<|endoftext|>": None, "<|im_start|>": None, "<|im_end|>": None})
    tok.chat_template = TEMPLATE
    tok.eos_id = tok.special_tokens["<|im_end|>"]
    return tok


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                      intermediate_size=128, max_seq_len=48, positions="rope", norm="rmsnorm", mlp="swiglu",
                      activation="silu", bias=False, norm_bias=False)
    m = build_model(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(4.0)  # sharp argmaxes: greedy paths that do not hang on rounding
    return m


@pytest.fixture(scope="module")
def checkpoint(model, tokenizer, tmp_path_factory):
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny", tokenizer=tokenizer)


def _reference_nll(model, ids: list[int]) -> torch.Tensor:
    """-log p(ids[i] | ids[:i]) from one plain forward pass (no windows)."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0].double(), dim=-1)
    return -logp.gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# perplexity


def test_windows_score_every_token_once():
    for n, context, stride in [(10, 4, 2), (100, 16, 16), (100, 16, 1), (5, 16, 8), (17, 16, 16)]:
        scored = [j for _, end, first in _windows(n, context, stride) for j in range(first, end)]
        assert scored == list(range(1, n))
        assert all(end - 1 - start <= context for start, end, _ in _windows(n, context, stride))


def test_token_nll_equals_one_forward_pass_when_the_text_fits(model, tokenizer):
    ids = tokenizer.encode("First Citizen: Before we proceed any further, hear me speak.")[:40]
    torch.testing.assert_close(token_nll(model, ids), _reference_nll(model, ids), atol=1e-5, rtol=0)


def test_sliding_windows_against_transformers(model, tokenizer, checkpoint, tmp_path):
    """The windows of Hugging Face's perplexity guide, computed with transformers on the exported model."""
    transformers = pytest.importorskip("transformers")
    from lucidlm.loading import save_hf

    save_hf(model, tmp_path / "hf", tokenizer)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    text = tiny_shakespeare()[200_000:201_500]
    ids = tokenizer.encode(text)
    context, stride = 32, 8
    total, count, prev_end = 0.0, 0, 1  # token 0 is context only
    with torch.no_grad():
        while prev_end < len(ids):
            end = min(len(ids), prev_end + stride if count else context + 1)
            start = max(0, end - 1 - context)
            logits = hf(torch.tensor([ids[start:end - 1]])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for j in range(prev_end, end):
                total -= float(logp[j - 1 - start, ids[j]])
                count += 1
            prev_end = end
    result = perplexity(model, tokenizer, text, context=context, stride=stride)
    assert result.tokens == count == len(ids) - 1  # no BOS in this tokenizer: the first token is context
    assert result.nll == pytest.approx(total, rel=1e-6)
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-6)
    assert result.bytes == len(tokenizer.decode(ids[1:]).encode())
    assert result.bits_per_byte == pytest.approx(result.nll / math.log(2) / result.bytes, rel=1e-12)


def test_cli_perplexity(checkpoint, tmp_path, capsys):
    text = tmp_path / "held-out.txt"
    text.write_text(tiny_shakespeare()[-3000:], encoding="utf-8")
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--file", str(text), "--stride", "24",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "bits/byte" in out and "tokens/s" in out
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--text", "a"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--file", str(tmp_path / "nope.txt")]) == 2
    assert "no file at" in capsys.readouterr().err
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--file", str(tmp_path / "bin.txt")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--text", "hello there", "--stride", "99"]) == 2
    assert "stride=99" in capsys.readouterr().err


def test_perplexity_of_a_prepared_dataset(model, tokenizer, checkpoint, tmp_path, capsys):
    from lucidlm.data import TokenDataset, prepare_dataset
    from lucidlm.evaluation import perplexity_of_ids

    (tmp_path / "t.txt").write_text(tiny_shakespeare()[-6000:], encoding="utf-8")
    prepare_dataset(str(tmp_path / "t.txt"), tmp_path / "ds", tokenizer=str(checkpoint), progress=False)
    ids = [int(i) for i in TokenDataset(tmp_path / "ds", "val").data[:40]]
    result = perplexity_of_ids(model, tokenizer, ids)
    assert result.nll == pytest.approx(float(_reference_nll(model, ids).sum()), rel=1e-6)
    assert result.tokens == 39 and result.bytes == len(tokenizer.decode(ids[1:]).encode())
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--data", str(tmp_path / "ds"), "--quiet"]) == 0
    assert "(val):" in capsys.readouterr().out
    prepare_dataset(str(tmp_path / "t.txt"), tmp_path / "chars", tokenizer="char", progress=False)
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--data", str(tmp_path / "chars")]) == 2
    assert "was tokenized with another tokenizer" in capsys.readouterr().err
    assert main(["eval", "perplexity", "--model", str(checkpoint), "--data", str(tmp_path / "ds"),
                 "--text", "x"]) == 2
    assert "one of them" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# lm-evaluation-harness


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, monkeypatch_module):
    pytest.importorskip("lm_eval")
    monkeypatch_module.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path_factory.mktemp("tasks")
    with open(folder / "mc.jsonl", "w") as f:
        for q, choices, answer in QUESTIONS:
            f.write(json.dumps({"question": q, "choices": choices, "answer": answer}) + "\n")
    with open(folder / "gen.jsonl", "w") as f:
        for prompt, target in [("Say yes:", "yes"), ("Romeo, Romeo,", "wherefore"), ("To be or not to", "be")]:
            f.write(json.dumps({"prompt": prompt, "target": target}) + "\n")
    (folder / "lucidlm_mc.yaml").write_text(
        "task: lucidlm_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'mc.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: acc\n")
    (folder / "lucidlm_gen.yaml").write_text(
        "task: lucidlm_gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'gen.jsonl'}\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{prompt}}'\ndoc_to_target: '{{target}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n")
    return folder


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


_MANAGERS: dict = {}


def _evaluate(model_arg, task: str, task_dir, **kwargs) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    if task_dir not in _MANAGERS:  # only the tasks written here: the harness's own thousands take seconds to index
        _MANAGERS[task_dir] = TaskManager(include_path=str(task_dir), include_defaults=False)
    return lm_eval.simple_evaluate(model=model_arg, tasks=[task], task_manager=_MANAGERS[task_dir],
                                   log_samples=True, **kwargs)


def _loglikelihoods(results: dict, task: str) -> list[list[float]]:
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return [[float(r[0][0]) for r in s["resps"]] for s in samples]


@pytest.fixture(scope="module")
def in_process(model, tokenizer, task_dir):
    from lucidlm.evaluation.harness import LucidLM

    return _evaluate(LucidLM(model=model, tokenizer=tokenizer, batch_size=4), "lucidlm_mc", task_dir)


def test_harness_in_process_scores_each_choice_by_hand(in_process, model, tokenizer):
    got = _loglikelihoods(in_process, "lucidlm_mc")
    correct = 0
    for (question, choices, answer), scores in zip(QUESTIONS, got, strict=True):
        expected = []
        for choice in choices:  # the harness scores " choice" after the question
            whole = tokenizer.encode(question + " " + choice)
            n_ctx = len(tokenizer.encode(question))
            expected.append(-float(_reference_nll(model, whole)[n_ctx - 1:].sum()))
        assert scores == pytest.approx(expected, abs=1e-4)
        correct += max(range(len(choices)), key=lambda i: expected[i]) == answer
    assert in_process["results"]["lucidlm_mc"]["acc,none"] == pytest.approx(correct / len(QUESTIONS))


def test_harness_through_the_server_gives_the_same_numbers(model, tokenizer, checkpoint, task_dir, in_process):
    from browser import serve_app
    from lucidlm.serve.app import create_app

    app = create_app(model, tokenizer, model_name="tiny", max_tokens_cap=64, max_context=48)
    with serve_app(app) as url:
        served = _evaluate("local-completions", "lucidlm_mc", task_dir, model_args=(
            f"model=tiny,base_url={url}/v1/completions,tokenizer={checkpoint},tokenizer_backend=huggingface,"
            "tokenized_requests=True,num_concurrent=1,max_retries=1"))
        assert _loglikelihoods(served, "lucidlm_mc") == [pytest.approx(row, abs=1e-4)
                                                         for row in _loglikelihoods(in_process, "lucidlm_mc")]
        assert served["results"]["lucidlm_mc"]["acc,none"] == in_process["results"]["lucidlm_mc"]["acc,none"]
        # no tokenizer directory: the harness finds the server's own tokenizer routes (vLLM's /tokenize ...)
        remote = _evaluate("local-completions", "lucidlm_mc", task_dir, model_args=(
            f"model=tiny,base_url={url}/v1/completions,num_concurrent=1,max_retries=1"))
        assert _loglikelihoods(remote, "lucidlm_mc") == [pytest.approx(row, abs=1e-4)
                                                         for row in _loglikelihoods(in_process, "lucidlm_mc")]
        # generation through the chat route, the chat template applied by the server; in-process the same
        chat = _evaluate("local-chat-completions", "lucidlm_gen", task_dir, apply_chat_template=True, model_args=(
            f"model=tiny,base_url={url}/v1/chat/completions,num_concurrent=1,max_retries=1"))
    from lucidlm.evaluation.harness import LucidLM

    local = _evaluate(LucidLM(model=model, tokenizer=tokenizer), "lucidlm_gen", task_dir, apply_chat_template=True)
    texts = [s["resps"][0][0] for s in sorted(chat["samples"]["lucidlm_gen"], key=lambda s: s["doc_id"])]
    ours = [s["resps"][0][0] for s in sorted(local["samples"]["lucidlm_gen"], key=lambda s: s["doc_id"])]
    assert len(texts) == 3 and texts == ours


def test_cli_tasks(checkpoint, task_dir, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["eval", "tasks", "--model", str(checkpoint), "--tasks", "lucidlm_mc", "--include-path", str(task_dir),
                 "--limit", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lucidlm_mc" in printed and "acc" in printed
    results = json.loads(out.read_text())
    assert len(results["samples"]["lucidlm_mc"]) == 3
    assert main(["eval", "tasks", "--model", str(checkpoint), "--tasks", "no_such_task", "--include-path",
                 str(task_dir)]) == 2
    assert "unknown task(s) ['no_such_task']" in capsys.readouterr().err


CONTINUATIONS = [(q, " " + c) for q, choices, _ in QUESTIONS for c in choices][:18] + [
    ("The Eiffel Tower is in", " Paris"), ("Romeo, Romeo, wherefore art thou", " Romeo?")]


@pytest.mark.slow
def test_smollm2_loglikelihoods_server_in_process_and_transformers(smollm2_path, tmp_path):
    """20 fixed continuations on SmolLM2-135M-Instruct: the harness in-process, the harness through
    `lucidlm serve` (local-completions), and transformers on the same GGUF file."""
    pytest.importorskip("lm_eval")
    transformers = pytest.importorskip("transformers")
    from lm_eval.api.instance import Instance

    from browser import serve_app
    from lucidlm.evaluation.harness import LucidLM
    from lucidlm.loading import load_model
    from lucidlm.serve.app import create_app

    model, tokenizer = load_model(smollm2_path)
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(CONTINUATIONS)]
    ours = [ll for ll, _ in LucidLM(model=model, tokenizer=tokenizer).loglikelihood(requests, disable_tqdm=True)]
    main(["export", str(smollm2_path), "--to", "hf", "--out", str(tmp_path / "hf")])  # lm-eval's tokenizer directory
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    with serve_app(create_app(model, tokenizer, model_name="smollm2")) as url:
        api = LocalCompletionsAPI(model="smollm2", base_url=f"{url}/v1/completions", tokenizer=str(tmp_path / "hf"),
                                  tokenizer_backend="huggingface", num_concurrent=1, max_retries=1)
        served = [ll for ll, _ in api.loglikelihood(requests, disable_tqdm=True)]
    assert served == pytest.approx(ours, abs=1e-4)
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2_path.parent, gguf_file=smollm2_path.name,
                                                           dtype=torch.float32).eval()
    expected = []
    for context, continuation in CONTINUATIONS:
        whole = tokenizer.encode(context + continuation)
        n_ctx = len(tokenizer.encode(context))
        with torch.no_grad():
            logp = torch.log_softmax(hf(torch.tensor([whole[:-1]])).logits[0].double(), dim=-1)
        expected.append(float(sum(logp[j - 1, whole[j]] for j in range(n_ctx, len(whole)))))
    assert ours == pytest.approx(expected, abs=1e-3)
