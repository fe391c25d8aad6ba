"""A small generated task with known answers, to show that finetuning teaches a model something.

``reverse-words``: "Reverse the order of these words: piano river candle." -> "candle river piano".
SmolLM2-135M-Instruct mostly fails it out of the box (it paraphrases, drops or reorders words),
yet the skill is within a small model's reach: every answer word is in the prompt, so the model
must learn where to copy from, not new facts. The answer is checked exactly (after lowercasing
and dropping punctuation), so a reply is right or wrong with no judgement involved.

Items are generated from a seed, deterministically, and the train and held-out splits never share
an item (the same words in the same order).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Common, concrete nouns: each one is a word the model knows, so the task is about order.
WORDS = (
    "apple bread candle chair cloud garden glass horse lemon music ocean paper pencil piano river rocket "
    "silver spider stone summer tiger turtle window winter forest castle button dream orange yellow "
    "bottle bridge camera carpet coffee desert doctor dragon engine farmer flower guitar hammer island "
    "jacket kitten ladder market mirror monkey needle pillow planet rabbit saddle school shadow socket "
    "sugar table ticket tomato tunnel valley wallet water wizard"
).split()

PROMPT = "Reverse the order of these words: {words}. Reply with the reversed words only, separated by spaces."


@dataclass(frozen=True)
class TaskItem:
    prompt: str  # the user's message
    answer: str  # the one right reply

    def messages(self, with_answer: bool = True) -> list[dict]:
        """The chat: the user's prompt and (for training) the assistant's answer."""
        msgs = [{"role": "user", "content": self.prompt}]
        return msgs + [{"role": "assistant", "content": self.answer}] if with_answer else msgs


def reverse_words(n_train: int, n_test: int, *, seed: int = 0, min_words: int = 3,
                  max_words: int = 5) -> tuple[list[TaskItem], list[TaskItem]]:
    """(train, held-out) items of the reverse-words task; no item is in both.

    Example (seed-dependent): TaskItem(prompt="Reverse the order of these words: tiger lemon
    river. Reply with ...", answer="river lemon tiger")."""
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
    if not 2 <= min_words <= max_words <= len(WORDS):
        raise ValueError(f"need 2 <= min_words <= max_words <= {len(WORDS)}, got {min_words}, {max_words}")
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    items: list[TaskItem] = []
    while len(items) < n_train + n_test:  # ~60^3 word lists: collisions are rare, so this ends fast
        words = tuple(rng.sample(WORDS, rng.randint(min_words, max_words)))
        if words in seen:
            continue
        seen.add(words)
        items.append(TaskItem(PROMPT.format(words=" ".join(words)), " ".join(reversed(words))))
    return items[:n_train], items[n_train:]


def normalize(text: str) -> list[str]:
    """Lowercase words without punctuation: 'Candle, river.' -> ['candle', 'river']."""
    return re.findall(r"[a-z]+", text.lower())


def is_correct(reply: str, answer: str) -> bool:
    """Exactly the answer's words, in order, and nothing else (case and punctuation aside)."""
    return normalize(reply) == normalize(answer)


def contains_answer(reply: str, answer: str) -> bool:
    """The answer's words appear in order, contiguously, somewhere in the reply: a lenient score
    that forgives chatter around a right answer ("The reversed words are: ...")."""
    r, a = normalize(reply), normalize(answer)
    return any(r[i : i + len(a)] == a for i in range(len(r) - len(a) + 1))
