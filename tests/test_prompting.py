"""``lucidlm.generate.prompting`` and ``lucidlm.data.word_problems``: prompt builders against hand-written
messages and text, answer extraction on hand-written completions, the vote's tie rule, the task's
answers recomputed from the question text, and the batched runners against one-at-a-time
``generate`` on a tiny random SmolLM2-shaped model (real tokenizer, real decoding)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest
import torch

from lucidlm.data.word_problems import word_problems
from lucidlm.generate import SamplingParams
from lucidlm.generate import prompting as P

EXAMPLES = [("What is 2 + 3?", "5"), ("What is 9 - 4?", "5")]


# ----------------------------------------------------------------------------------------------
# prompt builders


def test_few_shot_chat_messages():
    assert P.few_shot(EXAMPLES, "What is 1 + 1?", instruction="Answer with a number.") == [
        {"role": "system", "content": "Answer with a number."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "What is 9 - 4?"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "What is 1 + 1?"},
    ]
    assert P.few_shot([], "Hi?") == [{"role": "user", "content": "Hi?"}]  # zero-shot


def test_few_shot_text_prompt():
    assert P.few_shot(EXAMPLES, "What is 1 + 1?", chat=False) == (
        "Q: What is 2 + 3?\nA: 5\n\nQ: What is 9 - 4?\nA: 5\n\nQ: What is 1 + 1?\nA:"
    )
    assert P.few_shot([], "Hi?", instruction="Be brief.", chat=False) == "Be brief.\n\nQ: Hi?\nA:"


@pytest.mark.parametrize("examples, query", [([("q", 5)], "x"), ([("q",)], "x"), ([], ""), ([], "  ")])
def test_few_shot_rejects_bad_input(examples, query):
    with pytest.raises(ValueError, match="example|query"):
        P.few_shot(examples, query)


def test_chain_of_thought_messages():
    assert P.chain_of_thought("Tom has 3 apples and buys 4 more. How many?") == [{
        "role": "user",
        "content": "Tom has 3 apples and buys 4 more. How many?\n"
                   "Let's think step by step. End with a final line of the form \"Answer: <number>\".",
    }]
    assert P.chain_of_thought("Q?", trigger="Reason first.", answer_format=None) == [
        {"role": "user", "content": "Q?\nReason first."}]


def test_few_shot_renders_to_smollm2_chatml():
    from lucidlm.generate.chat import render_chat
    from lucidlm.tokenizers import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    text = render_chat(P.few_shot(EXAMPLES[:1], "What is 1 + 1?"), tokenizer=tok)
    # SmolLM2's template adds its default system prompt when the first message is not one.
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n5<|im_end|>\n"
        "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


# ----------------------------------------------------------------------------------------------
# answers and votes


@pytest.mark.parametrize("text, expected", [
    ("3 + 4 = 7.\nAnswer: 7", "7"),
    ("Answer: 12 apples", "12"),
    ("He has 12 - 5 = 7 apples.", "7"),  # no mark: the last number
    ("Answer: 7\n\nThen he buys 2 more, 9 in all.", "7"),  # the mark wins over a later number
    ("answer: 3. Wait, the answer is 4.", "4"),  # the last mark
    ("So 5 + 5 = 10\n#### 10", "10"),  # GSM8K's mark
    ("The answer is -3", "-3"),
    ("x = -3, so the answer is x", "-3"),
    ("The score was 19-10", "10"),  # a hyphen between numbers is no minus sign
    ("Answer: 2020-21 season", "2020"),
    ("(4)-1 = 3", "3"),
    ("Total: 1,250 coins", "1250"),
    ("It costs 2.50 dollars", "2.5"),
    ("He has 7.0 now", "7"),
    ("Answer: I do not know, maybe 6", "6"),
    ("The answer is:\n\n8", "8"),
    ("He has 6 apples. The answer is six.", "6"),  # no number after the mark: the last number
    ("I am not sure.", None),
    ("", None),
])
def test_extract_number(text, expected):
    assert P.extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Let me see.\nAnswer: Paris.", "Paris"),
    ("The answer is **blue**\nmore text", "blue"),
    ("first line\nlast line.\n", "last line"),
    ("   \n", None),
])
def test_extract_text(text, expected):
    assert P.extract_answer(text, kind="text") == expected


def test_extract_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        P.extract_answer("7", kind="date")


def test_majority_vote():
    assert P.majority_vote(["7", "8", "7", None, "7"]) == ("7", Counter({"7": 3, "8": 1}))
    # A tie goes to the answer sampled first, whatever the order of the others.
    assert P.majority_vote(["8", None, "7", "7", "8"])[0] == "8"
    assert P.majority_vote(["7", "8", "8", "7"])[0] == "7"
    # None never wins, even when it is the most common "answer".
    assert P.majority_vote([None, None, "3"]) == ("3", Counter({"3": 1}))
    assert P.majority_vote([None, None]) == (None, Counter())
    assert P.majority_vote([]) == (None, Counter())


# ----------------------------------------------------------------------------------------------
# the task


_OPS = {"buys": "+", "finds": "+", "gets": "+", "wins": "+", "gives": "-", "loses": "-", "sells": "-"}


def test_word_problem_answers_recomputed_from_the_text():
    problems = word_problems(300, seed=3)
    for p in problems:
        m = re.fullmatch(r"(\w+) has (\d+) (\w+) and (\w+) (?:away )?(\d+)\b.*\. How many (\w+) does (\w+) have now\?",
                         p.question)
        assert m, p.question
        name, a, thing, verb, b, thing2, name2 = m.groups()
        a, b = int(a), int(b)
        expected = a + b if _OPS[verb] == "+" else a - b
        assert (name, thing) == (name2, thing2)
        assert p.answer == expected and expected >= 1
        assert a <= 20 and b >= 1
    assert len({p.question for p in problems}) == len(problems)  # distinct
    assert {p.op for p in problems} == {"+", "-"}


def test_word_problems_deterministic_and_exclusive():
    assert word_problems(50, seed=7) == word_problems(50, seed=7)
    assert word_problems(50, seed=7) != word_problems(50, seed=8)
    shots = word_problems(3, seed=1000)
    items = word_problems(200, seed=0, exclude=tuple(s.question for s in shots))
    assert not {s.question for s in shots} & {p.question for p in items}
    with pytest.raises(ValueError, match="n "):
        word_problems(0)


# ----------------------------------------------------------------------------------------------
# statistics


def test_wilson_interval_hand_values():
    lo, hi = P.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.96**2 / (10 + 1.96**2))  # upper = z^2 / (n + z^2) at 0/n
    assert P.wilson_interval(5, 10) == pytest.approx((0.236589, 0.763411), abs=1e-6)
    assert P.wilson_interval(10, 10) == pytest.approx((1 - 1.96**2 / (10 + 1.96**2), 1.0))
    with pytest.raises(ValueError):
        P.wilson_interval(3, 2)


def test_paired_counts_and_mcnemar():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert P.paired_counts(a, b) == (2, 1)
    assert P.mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert P.mcnemar_p(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert P.mcnemar_p(0, 0) == 1.0 and P.mcnemar_p(3, 3) == 1.0
    with pytest.raises(ValueError, match="same items"):
        P.paired_counts([True], [True, False])


# ----------------------------------------------------------------------------------------------
# running: a tiny random SmolLM2-shaped model with the real tokenizer and chat template


@pytest.fixture(scope="module")
def tiny():
    from lucidlm.models.config import PRESETS
    from lucidlm.models.transformer import build_model
    from lucidlm.tokenizers import load_tokenizer

    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["smollm2-135m"], name="tiny", n_layer=2, n_head=2, n_kv_head=1, n_embd=32,
                              intermediate_size=64, max_seq_len=512)
    return build_model(cfg).eval(), load_tokenizer("smollm2-135m-instruct")


def test_batched_greedy_equals_one_at_a_time(tiny):
    from lucidlm.generate import generate, render_chat

    model, tok = tiny
    prompts = [P.few_shot(EXAMPLES, "What is 1 + 1?"), [{"role": "user", "content": "Hi"}],
               P.chain_of_thought("Sara has 5 coins and loses 2. How many coins does Sara have now?")]
    texts = P.generate_texts(model, tok, prompts, max_tokens=6, batch_size=2)
    alone = [generate(model, tok, render_chat(p, tokenizer=tok), max_tokens=6, add_special=False,
                      params=SamplingParams(temperature=0)).text for p in prompts]
    assert texts == alone
    preds = P.run_prompts(model, tok, prompts, max_tokens=6)
    assert [p.texts[0] for p in preds] == alone
    assert [p.answer for p in preds] == [P.extract_answer(t) for t in alone]
    with pytest.raises(ValueError, match="not a mix"):
        P.generate_texts(model, tok, [prompts[0], "Q: Hi?\nA:"], max_tokens=2)


def test_self_consistency_samples_and_votes(tiny):
    from lucidlm.generate import generate, render_chat

    model, tok = tiny
    messages = P.chain_of_thought("Tom has 3 apples and buys 4 more. How many apples does Tom have now?")
    answer, votes = P.self_consistency(model, tok, messages, k=3, temperature=0.7, seed=5, max_tokens=8)
    pred = P.self_consistency_predictions(model, tok, [messages], k=3, temperature=0.7, seed=5, max_tokens=8)[0]
    # Sample j is what generate draws alone with seed 5 + j.
    alone = [generate(model, tok, render_chat(messages, tokenizer=tok), max_tokens=8, add_special=False,
                      params=SamplingParams(temperature=0.7, seed=5 + j)).text for j in range(3)]
    assert list(pred.texts) == alone
    assert (answer, votes) == (pred.answer, pred.votes) == P.majority_vote([P.extract_answer(t) for t in alone])
    assert len(set(alone)) > 1  # different seeds, different paths
    with pytest.raises(ValueError, match="k "):
        P.self_consistency(model, tok, messages, k=0)
