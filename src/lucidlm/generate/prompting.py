"""Prompting techniques: the same model, asked differently, answers differently.

Four ways to ask (Lilian Weng, "Prompt Engineering", 2023, surveys them):

- **zero-shot**: just the question.
- **few-shot** (Brown et al. 2020, GPT-3): a few solved examples first, as earlier turns of the
  conversation, so the model copies their format (and, one hopes, their correctness).
- **chain of thought** (Wei et al. 2022; zero-shot: Kojima et al. 2022, "Let's think step by
  step."): ask for the reasoning before the answer, then read the answer off the final line.
- **self-consistency** (Wang et al. 2022): sample k reasoning paths at temperature ~0.7, extract
  each one's answer, and take the majority vote.

Every technique is a prompt builder (messages in, messages out: plain data) plus one loop,
``run_prompts``, that renders them with the model's chat template, generates in left-padded
batches and extracts an answer from each completion. ``extract_answer`` and ``majority_vote`` are
small pure functions. ``benchmarks/prompting.py`` measures all four on
``lucidlm.data.word_problems.word_problems``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lucidlm.generate.chat import render_chat
from lucidlm.generate.decode import generate_batch
from lucidlm.generate.sampling import SamplingParams

COT_TRIGGER = "Let's think step by step."
ANSWER_FORMAT = 'End with a final line of the form "Answer: <number>".'
GREEDY = SamplingParams(temperature=0.0)  # frozen, so one shared default is safe

# ----------------------------------------------------------------------------------------------
# prompt builders: plain data in, messages (or text) out


def few_shot(examples: Sequence[tuple[str, str]], query: str, *, instruction: str | None = None,
             chat: bool = True) -> list[dict] | str:
    """A prompt that shows ``examples`` (question, answer) pairs before ``query``.

    chat=True: messages; the instruction is the system message and each example is a user turn
    followed by the assistant's answer, as if the model had answered them itself:

        [{"role": "system", "content": instruction},
         {"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": query}]

    chat=False: one text for a base model, "Q: ...\\nA: ..." blocks separated by a blank line,
    ending in "A:" for the model to continue. With no examples this is the zero-shot prompt.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string (the question to ask)")
    for i, pair in enumerate(examples):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError(f"example {i} is {pair!r}; each example is a (question, answer) pair of strings")
    if not chat:
        blocks = [instruction] if instruction else []
        blocks += [f"Q: {q}\nA: {a}" for q, a in examples]
        blocks.append(f"Q: {query}\nA:")
        return "\n\n".join(blocks)
    messages = [{"role": "system", "content": instruction}] if instruction else []
    for q, a in examples:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": query})
    return messages


def chain_of_thought(query: str, *, trigger: str = COT_TRIGGER, answer_format: str | None = ANSWER_FORMAT,
                     instruction: str | None = None) -> list[dict]:
    """Messages that ask for the reasoning first and the answer on a final line:

        [{"role": "user", "content": query + "\\n" + trigger + " " + answer_format}]

    The final-line request lets ``extract_answer`` find the answer ("Answer: 7") instead of
    guessing it from the last number of the reasoning; answer_format=None leaves it out.
    """
    tail = trigger if not answer_format else f"{trigger} {answer_format}"
    return few_shot([], f"{query}\n{tail}", instruction=instruction)


# ----------------------------------------------------------------------------------------------
# reading the answer back


# 7, -3, 1,250, 2.5; a "-" right after a letter, digit or ")" is a hyphen or a minus between two
# numbers ("19-10", "x-3", "(4)-1"), never the sign of the number after it
_NUMBER = re.compile(r"(?:(?<![\w)])-)?\d[\d,]*(?:\.\d+)?")
_ANSWER_MARK = re.compile(r"(?:answer\s*(?:is|:)|####)", re.IGNORECASE)


def _normalise_number(token: str) -> str:
    """'1,250' -> '1250', '7.0' -> '7', '2.50' -> '2.5': one spelling per value, so votes count
    equal answers as equal."""
    value = float(token.replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)


def extract_answer(text: str, kind: str = "number") -> str | None:
    """The answer a completion gives, or None when it gives none.

    If the text marks an answer ("Answer: 7", "the answer is 7", GSM8K's "#### 7"), the answer
    is what follows the *last* mark; otherwise the whole text is searched. kind="number": the
    first number after the mark, or the last number in an unmarked text (reasoning ends with its
    result), normalised ("1,250" -> "1250"). kind="text": the rest of the marked line, or the
    last non-empty line, stripped of spaces and a final period.

        extract_answer("3 + 4 = 7. Answer: 7")       -> "7"
        extract_answer("So he has 12 - 5 = 7 apples") -> "7"
        extract_answer("I am not sure.")             -> None
    """
    if kind not in ("number", "text"):
        raise ValueError(f"kind must be 'number' or 'text', got {kind!r}")
    marks = list(_ANSWER_MARK.finditer(text))
    tail = text[marks[-1].end():] if marks else None
    if kind == "number":
        if tail is not None and (found := _NUMBER.search(tail)):
            return _normalise_number(found.group())
        numbers = _NUMBER.findall(text)
        return _normalise_number(numbers[-1]) if numbers else None
    lines = [line for line in (tail if tail is not None else text).splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[0] if tail is not None else lines[-1]
    return line.strip().strip("*").strip().rstrip(".") or None


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, Counter]:
    """The most common answer and the vote counts. None (no answer extracted) does not vote.

    Ties go to the answer that was sampled first (``Counter`` keeps insertion order and
    ``most_common`` is stable), so the result is deterministic for a given list:

        majority_vote(["7", None, "8", "8", "7"]) -> ("7", Counter({"7": 2, "8": 2}))
        majority_vote([None, None])               -> (None, Counter())
    """
    votes = Counter(a for a in answers if a is not None)
    return (votes.most_common(1)[0][0] if votes else None), votes


# ----------------------------------------------------------------------------------------------
# running a technique over a list of questions


@dataclass(frozen=True)
class Prediction:
    answer: str | None  # what extract_answer (or the vote) read from the completion(s)
    texts: tuple[str, ...]  # the completion(s): one, or k for self-consistency
    votes: Counter | None = None  # self-consistency only


def _render(prompt, tokenizer) -> str:
    return prompt if isinstance(prompt, str) else render_chat(prompt, tokenizer=tokenizer)


def generate_texts(model, tokenizer, prompts: Sequence[list[dict] | str], *, max_tokens: int,
                   params: SamplingParams = GREEDY, batch_size: int = 16) -> list[str]:
    """One completion per prompt (messages are rendered with the tokenizer's chat template),
    generated ``batch_size`` at a time. Prompts are batched in order of length, so a batch holds
    prompts of similar length and little padding; the texts come back in the given order."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len({isinstance(p, str) for p in prompts}) > 1:
        raise ValueError("give all prompts as messages or all as text, not a mix (text prompts get BOS added)")
    texts = [_render(p, tokenizer) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[str] = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        # The rendered template already starts with its own special tokens.
        results = generate_batch(model, tokenizer, [texts[i] for i in chunk], max_tokens=max_tokens, params=params,
                                 add_special=isinstance(prompts[chunk[0]], str))
        for i, result in zip(chunk, results):
            out[i] = result.text
    return out


def run_prompts(model, tokenizer, prompts: Sequence[list[dict] | str], *, max_tokens: int, kind: str = "number",
                **options) -> list[Prediction]:
    """Greedy completion + extracted answer for each prompt (options: ``generate_texts``)."""
    texts = generate_texts(model, tokenizer, prompts, max_tokens=max_tokens, **options)
    return [Prediction(extract_answer(t, kind), (t,)) for t in texts]


def zero_shot_predictions(model, tokenizer, questions: Sequence[str], *, max_tokens: int = 48,
                          instruction: str | None = None, **options) -> list[Prediction]:
    return run_prompts(model, tokenizer, [few_shot([], q, instruction=instruction) for q in questions],
                       max_tokens=max_tokens, **options)


def few_shot_predictions(model, tokenizer, questions: Sequence[str], examples: Sequence[tuple[str, str]], *,
                         max_tokens: int = 48, instruction: str | None = None, **options) -> list[Prediction]:
    return run_prompts(model, tokenizer, [few_shot(examples, q, instruction=instruction) for q in questions],
                       max_tokens=max_tokens, **options)


def cot_predictions(model, tokenizer, questions: Sequence[str], *, max_tokens: int = 128, trigger: str = COT_TRIGGER,
                    **options) -> list[Prediction]:
    return run_prompts(model, tokenizer, [chain_of_thought(q, trigger=trigger) for q in questions],
                       max_tokens=max_tokens, **options)


def self_consistency_predictions(model, tokenizer, prompts: Sequence[list[dict] | str], *, k: int = 5,
                                 temperature: float = 0.7, seed: int = 0, max_tokens: int = 128,
                                 kind: str = "number", batch_size: int = 16) -> list[Prediction]:
    """Wang et al. 2022: k sampled completions per prompt, majority vote over their answers.

    Sample j of every prompt is drawn with seed ``seed + j``. (``generate_batch`` seeds every row
    of a batch alike, so k copies of one prompt in one batch would be k identical samples; the k
    samples are k passes over the prompts instead.)"""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of sampled reasoning paths) must be an int >= 1, got {k!r}")
    samples = [generate_texts(model, tokenizer, prompts, max_tokens=max_tokens, batch_size=batch_size,
                              params=SamplingParams(temperature=temperature, seed=seed + j))
               for j in range(k)]  # (k, n) texts
    out = []
    for i in range(len(prompts)):
        texts = tuple(sample[i] for sample in samples)
        answer, votes = majority_vote([extract_answer(t, kind) for t in texts])
        out.append(Prediction(answer, texts, votes))
    return out


def self_consistency(model, tokenizer, messages: list[dict] | str, k: int = 5, temperature: float = 0.7, *,
                     seed: int = 0, max_tokens: int = 128, kind: str = "number") -> tuple[str | None, Counter]:
    """One question: (majority answer, votes) over k sampled completions of ``messages``."""
    prediction = self_consistency_predictions(model, tokenizer, [messages], k=k, temperature=temperature, seed=seed,
                                              max_tokens=max_tokens, kind=kind)[0]
    return prediction.answer, prediction.votes


# ----------------------------------------------------------------------------------------------
# scoring


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for a proportion; unlike p +- z*sqrt(p(1-p)/n) it
    stays inside [0, 1] and is not zero-width at 0/n or n/n.

        centre = (p + z^2/2n) / (1 + z^2/n),  half = z/(1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got successes={successes}, n={n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_counts(right_a: Sequence[bool], right_b: Sequence[bool]) -> tuple[int, int]:
    """(items A got right and B wrong, items B got right and A wrong): the discordant pairs a
    paired comparison (McNemar's test) looks at; items both got right or wrong say nothing about
    which technique is better."""
    if len(right_a) != len(right_b):
        raise ValueError(f"paired comparison needs the same items: {len(right_a)} vs {len(right_b)} results")
    a_only = sum(a and not b for a, b in zip(right_a, right_b))
    b_only = sum(b and not a for a, b in zip(right_a, right_b))
    return a_only, b_only


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: if A and B were equally good, each discordant item would
    be A's or B's with probability 1/2, so a_only ~ Binomial(a_only + b_only, 1/2).

        p = min(1, 2 * sum_{i <= min(a_only, b_only)} C(n, i) / 2^n),  n = a_only + b_only
    """
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {a_only}, {b_only}")
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**n)
