"""A small task with known answers, to measure prompting techniques on: one-step arithmetic
word problems, generated deterministically from a seed.

    >>> word_problems(1, seed=0)[0].question
    'Sam has 10 coins and wins 9 more. How many coins does Sam have now?'

Each problem is one addition or one subtraction of small whole numbers (the answer is never
negative), phrased with a name, an object and a verb that says which operation it is ("buys 4
more", "gives away 4"). SmolLM2-135M-Instruct solves about a third of them zero-shot (33% of 120),
which is what makes it a useful yardstick: neither floor nor ceiling, so a technique can move the
number either way. ``benchmarks/prompting.py`` reports what each technique does to it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ("Tom", "Sara", "Ben", "Mia", "Leo", "Ana", "Sam", "Lily", "Max", "Emma")
OBJECTS = ("apples", "pencils", "marbles", "stickers", "cookies", "books", "coins", "shells")
# "{n}" is the second number; the verb alone says whether it adds or subtracts.
ADD_VERBS = ("buys {n} more", "finds {n} more", "gets {n} more from a friend", "wins {n} more")
SUB_VERBS = ("gives away {n}", "loses {n}", "sells {n}", "gives {n} to a friend")


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    a: int  # the starting amount
    b: int  # the amount added or taken away
    op: str  # "+" or "-"


def make_problem(rng: random.Random, max_value: int = 20) -> Problem:
    """One problem drawn with ``rng``: a in [2, max_value], b in [1, a - 1] for a subtraction (so
    the answer is at least 1) or [1, max_value // 2] for an addition."""
    name, thing = rng.choice(NAMES), rng.choice(OBJECTS)
    op = rng.choice("+-")
    a = rng.randint(2, max_value)
    if op == "+":
        b = rng.randint(1, max_value // 2)
        verb, answer = rng.choice(ADD_VERBS), a + b
    else:
        b = rng.randint(1, a - 1)
        verb, answer = rng.choice(SUB_VERBS), a - b
    question = f"{name} has {a} {thing} and {verb.format(n=b)}. How many {thing} does {name} have now?"
    return Problem(question, answer, a, b, op)


def word_problems(n: int, seed: int = 0, *, max_value: int = 20, exclude: tuple[str, ...] = ()) -> list[Problem]:
    """``n`` distinct problems, the same ones for the same seed. ``exclude``: questions to leave
    out (the few-shot examples, so that no test item is answered in its own prompt)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of problems) must be an int >= 1, got {n!r}")
    if not isinstance(max_value, int) or max_value < 4:
        raise ValueError(f"max_value must be an int >= 4 (the largest starting amount), got {max_value!r}")
    rng = random.Random(seed)
    seen, out = set(exclude), []
    for _ in range(100 * n):  # distinct questions; the space is large, so this ends long before
        problem = make_problem(rng, max_value)
        if problem.question not in seen:
            seen.add(problem.question)
            out.append(problem)
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} distinct problems with max_value={max_value}; raise max_value or lower n")
