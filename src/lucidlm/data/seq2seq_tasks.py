"""Synthetic sequence-to-sequence tasks whose answers a student can check by eye.

    copy          "hello"             -> "hello"
    reverse       "hello"             -> "olleh"
    sort          "hello"             -> "ehllo"
    addition      "123+45"            -> "861"          (the sum units first; lsb_first=False: "168")
    date          "3 March 2021"      -> "2021-03-03"   (also "March 3, 2021" and "3 Mar 2021")
    roman-to-int  "MCMXCIV"           -> "1994"
    int-to-roman  "1994"              -> "MCMXCIV"

The Annotated Transformer trains the original encoder-decoder on a copy task; these are the same
idea with tasks that need more than copying: reordering (reverse, sort), arithmetic with carries
(addition), a learned table plus reordering (dates), and a compositional code (Roman numerals).

Each task draws examples from a ``random.Random``, so everything is deterministic from a seed, and
has held-out examples the model never sees in training. The split choices, per task:

- copy, reverse, sort (letters a-j): training strings have 1..16 characters; the held-out
  ("test") strings are unseen *lengths*, 17..20, which needs the random position shift of
  ``lucidlm.train.seq2seq`` (absolute positions beyond 16 are otherwise never trained).
- addition: operands of 1..5 digits (the digit count drawn first, so short numbers are not rare);
  "test" is the same distribution, with every test and validation example removed from training
  (the 99% goal); "extra" has one operand of 6 digits and the other of 1..6: one more digit than
  training ever showed, reported as a finding, not a goal. The sum is written units digit first
  by default (see ``Addition``): measured with the recommended config, units-first reached 98.5%
  test exact match after 3,200 steps, while the usual order stalled near 96% from 5,400 to 7,400
  steps, its errors all carries that ripple from far below (3996+4 -> 3000).
- date: years 1000..2999; a fixed 10% of the years (chosen by ``split_seed``) never occur in
  training, and every held-out date has one of them: the model must copy year digits it was
  never trained to copy in that combination, and map the day and month as usual.
- roman-to-int, int-to-roman: 1..3999; a fixed 15% of the values never occur in training, and
  the held-out examples are exactly those values.

Splits: ``make_splits`` draws "test" first, then a validation set from the same held-out
distribution (for choosing when to stop training, never for the reported score), then "extra";
all distinct. ``TrainSampler`` draws training examples and rejects any that is in them, so train
and held-out never share an example (for the tasks above they are disjoint by construction; the
rejection guards the rest).

The vocabulary is one set of characters for source and target (the union of both sides, like the
shared BPE vocabulary of Vaswani et al.), so the encoder and decoder share one embedding matrix,
which the output layer reuses too. Ids: 0 <pad>, 1 <bos>, 2 <eos>, then the characters sorted.
"""

from __future__ import annotations

import calendar
import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2
SPLITS = ("train", "test", "extra")


@dataclass(frozen=True)
class Example:
    source: str
    target: str


class Vocab:
    """Characters <-> ids, with three special ids first: 0 <pad>, 1 <bos>, 2 <eos>.

    >>> v = Vocab("abc")
    >>> v.encode("cab"), v.decode([1, 5, 3, 2, 0])
    ([5, 3, 4], 'ca')
    """

    def __init__(self, chars: Sequence[str]) -> None:
        chars = sorted(set(chars))
        if any(len(c) != 1 for c in chars):
            raise ValueError(f"a Vocab holds single characters, got {[c for c in chars if len(c) != 1][:3]}")
        self.chars = chars
        self.stoi = {c: i + len(SPECIALS) for i, c in enumerate(chars)}
        self.itos = list(SPECIALS) + chars

    @property
    def size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        bad = sorted({c for c in text if c not in self.stoi})
        if bad:
            raise ValueError(f"characters {''.join(bad)!r} are not in this task's vocabulary "
                             f"{''.join(self.chars)!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """The characters up to the first <eos>; <pad> and <bos> are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def token(self, i: int) -> str:
        """'<eos>' for 2, 'a' for the id of 'a' (axis labels of attention plots)."""
        return self.itos[int(i)]


# ----------------------------------------------------------------------------------------------
# the tasks


class Task:
    """A task: ``sample(rng, split)`` -> Example. Subclasses are frozen dataclasses whose fields
    are the task's settings, so ``to_dict``/``task_from_dict`` rebuild it (from a checkpoint)."""

    name = ""
    chars = ""  # every character a source or target may contain
    splits = ("train", "test")  # "extra" where the task has a reported finding beyond the goal
    note = ""  # what a reader should know about the format, shown by `lucidlm seq2seq tasks`

    def sample(self, rng: random.Random, split: str) -> Example:
        raise NotImplementedError

    def heldout_capacity(self) -> int | None:
        """How many distinct held-out examples exist (None: practically unlimited)."""
        return None

    def max_lengths(self) -> tuple[int, int]:
        """(longest source, longest target) in characters over every split."""
        raise NotImplementedError

    def vocab(self) -> Vocab:
        return Vocab(self.chars)

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has splits {self.splits}, not {split!r}")


@dataclass(frozen=True)
class StringTask(Task):
    """copy / reverse / sort a string of letters; held out: longer strings than any in training."""

    kind: str = "copy"
    symbols: str = "abcdefghij"
    train_lengths: tuple[int, int] = (1, 16)
    test_lengths: tuple[int, int] = (17, 20)

    def __post_init__(self) -> None:
        if self.kind not in ("copy", "reverse", "sort"):
            raise ValueError(f"StringTask kind must be copy, reverse or sort, got {self.kind!r}")
        (a, b), (c, d) = self.train_lengths, self.test_lengths
        if not (1 <= a <= b and 1 <= c <= d):
            raise ValueError(f"train_lengths {self.train_lengths} and test_lengths {self.test_lengths} must be "
                             "ranges (lo, hi) with 1 <= lo <= hi")
        # Overlapping ranges are allowed (a quick test on short strings): then only the rejection
        # in TrainSampler keeps held-out strings out of training.

    @property
    def name(self) -> str:
        return self.kind

    @property
    def chars(self) -> str:
        return self.symbols

    def sample(self, rng: random.Random, split: str) -> Example:
        self._check_split(split)
        lo, hi = self.train_lengths if split == "train" else self.test_lengths
        s = "".join(rng.choice(self.symbols) for _ in range(rng.randint(lo, hi)))
        target = {"copy": s, "reverse": s[::-1], "sort": "".join(sorted(s))}[self.kind]
        return Example(s, target)

    def max_lengths(self) -> tuple[int, int]:
        n = max(self.train_lengths[1], self.test_lengths[1])
        return n, n

    def heldout_capacity(self) -> int:
        lo, hi = self.test_lengths
        return sum(len(self.symbols) ** n for n in range(lo, hi + 1))

    def to_dict(self) -> dict:
        return {"name": self.name, "symbols": self.symbols, "train_lengths": list(self.train_lengths),
                "test_lengths": list(self.test_lengths)}


@dataclass(frozen=True)
class Addition(Task):
    """"a+b" -> "a+b evaluated", operands of 1..digits digits; "extra": one more digit.

    ``lsb_first``: write the sum's digits units first ("123+45" -> "861"), the order in which a
    person adds, so each digit depends on its column and the carry out of the digit just written
    (Lee et al. 2023, "Teaching Arithmetic to Small Transformers"). Written as usual, the first
    digit already depends on every column below it (is there a carry out at the top?).
    """

    digits: int = 5
    lsb_first: bool = True
    name = "addition"
    chars = "0123456789+"
    splits = ("train", "test", "extra")

    def __post_init__(self) -> None:
        if not 1 <= self.digits <= 18:
            raise ValueError(f"addition digits must be 1..18, got {self.digits}")
        if not isinstance(self.lsb_first, bool):
            raise ValueError(f"lsb_first must be true or false, got {self.lsb_first!r}")

    @property
    def note(self) -> str:
        return "the sum is written units digit first" if self.lsb_first else ""

    def sample(self, rng: random.Random, split: str) -> Example:
        self._check_split(split)
        if split == "extra":  # one operand with digits + 1 digits, the other with 1 .. digits + 1
            n = [self.digits + 1, rng.randint(1, self.digits + 1)]
            rng.shuffle(n)
        else:
            n = [rng.randint(1, self.digits), rng.randint(1, self.digits)]
        a, b = (_number_with_digits(rng, k) for k in n)
        total = str(a + b)
        return Example(f"{a}+{b}", total[::-1] if self.lsb_first else total)

    def max_lengths(self) -> tuple[int, int]:
        d = self.digits + 1
        return 2 * d + 1, d + 1


def _number_with_digits(rng: random.Random, k: int) -> int:
    """A uniform k-digit number (0..9 for k = 1: zero is a 1-digit number)."""
    return rng.randint(0, 9) if k == 1 else rng.randint(10 ** (k - 1), 10**k - 1)


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class Date(Task):
    """"3 March 2021" / "March 3, 2021" / "3 Mar 2021" -> "2021-03-03"; held out: unseen years."""

    first_year: int = 1000
    last_year: int = 2999
    heldout_fraction: float = 0.1
    split_seed: int = 0
    name = "date"
    chars = "".join(sorted(set("".join(MONTHS) + "0123456789 ,-")))

    def __post_init__(self) -> None:
        if not 1000 <= self.first_year <= self.last_year <= 9999:
            raise ValueError(f"years must satisfy 1000 <= first_year <= last_year <= 9999, "
                             f"got {self.first_year}, {self.last_year}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        years = list(range(self.first_year, self.last_year + 1))
        k = max(1, round(self.heldout_fraction * len(years)))
        held = sorted(random.Random(f"date-{self.split_seed}").sample(years, k))
        object.__setattr__(self, "_held", held)  # derived from the fields, not one (frozen dataclass)
        object.__setattr__(self, "_held_set", set(held))

    def heldout_years(self) -> list[int]:
        return self._held

    def sample(self, rng: random.Random, split: str) -> Example:
        self._check_split(split)
        if split == "train":
            year = rng.randint(self.first_year, self.last_year)
            while year in self._held_set:
                year = rng.randint(self.first_year, self.last_year)
        else:
            year = rng.choice(self._held)
        month = rng.randint(1, 12)
        day = rng.randint(1, calendar.monthrange(year, month)[1])  # leap years: Feb 29 only when it exists
        name = MONTHS[month - 1]
        source = rng.choice((f"{day} {name} {year}", f"{name} {day}, {year}", f"{day} {name[:3]} {year}"))
        return Example(source, f"{year:04d}-{month:02d}-{day:02d}")

    def heldout_capacity(self) -> int:
        return 366 * 3 * len(self.heldout_years())

    def max_lengths(self) -> tuple[int, int]:
        return len("30 September 2999"), len("2999-09-30")


ROMAN = ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
         (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))


def to_roman(n: int) -> str:
    """1994 -> 'MCMXCIV' (standard subtractive form, 1..3999)."""
    if not 1 <= n <= 3999:
        raise ValueError(f"Roman numerals cover 1..3999, got {n}")
    out = []
    for value, letters in ROMAN:
        count, n = divmod(n, value)
        out.append(letters * count)
    return "".join(out)


@dataclass(frozen=True)
class Roman(Task):
    """Roman numerals <-> integers, 1..3999; held out: a fixed set of values never trained on."""

    direction: str = "to-int"  # "to-int": MCMXCIV -> 1994; "from-int": 1994 -> MCMXCIV
    heldout_fraction: float = 0.15
    split_seed: int = 0
    chars = "0123456789CDILMVX"

    def __post_init__(self) -> None:
        if self.direction not in ("to-int", "from-int"):
            raise ValueError(f"Roman direction must be 'to-int' or 'from-int', got {self.direction!r}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        k = max(1, round(self.heldout_fraction * 3999))
        held = sorted(random.Random(f"roman-{self.split_seed}").sample(range(1, 4000), k))
        object.__setattr__(self, "_held", held)  # derived from the fields, not one (frozen dataclass)
        object.__setattr__(self, "_held_set", set(held))

    @property
    def name(self) -> str:
        return "roman-to-int" if self.direction == "to-int" else "int-to-roman"

    def heldout_values(self) -> list[int]:
        return self._held

    def sample(self, rng: random.Random, split: str) -> Example:
        self._check_split(split)
        if split == "train":
            n = rng.randint(1, 3999)
            while n in self._held_set:
                n = rng.randint(1, 3999)
        else:
            n = rng.choice(self._held)
        roman = to_roman(n)
        return Example(roman, str(n)) if self.direction == "to-int" else Example(str(n), roman)

    def heldout_capacity(self) -> int:
        return len(self.heldout_values())

    def max_lengths(self) -> tuple[int, int]:
        longest = len(to_roman(3888))  # MMMDCCCLXXXVIII, 15 letters
        return (longest, 4) if self.direction == "to-int" else (4, longest)

    def to_dict(self) -> dict:
        return {"name": self.name, "heldout_fraction": self.heldout_fraction, "split_seed": self.split_seed}


TASKS = {
    "copy": lambda **kw: StringTask(kind="copy", **kw),
    "reverse": lambda **kw: StringTask(kind="reverse", **kw),
    "sort": lambda **kw: StringTask(kind="sort", **kw),
    "addition": Addition,
    "date": Date,
    "roman-to-int": lambda **kw: Roman(direction="to-int", **kw),
    "int-to-roman": lambda **kw: Roman(direction="from-int", **kw),
}


def get_task(name: str, **settings) -> Task:
    """The task called ``name`` with its default settings (or ``settings`` changed)."""
    if name not in TASKS:
        raise ValueError(f"unknown seq2seq task {name!r}; tasks: {', '.join(TASKS)}")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}  # JSON lists -> tuples
    try:
        return TASKS[name](**settings)
    except TypeError as exc:
        raise ValueError(f"bad settings for task {name!r}: {exc}") from None


def task_from_dict(data: dict) -> Task:
    """Inverse of ``Task.to_dict``."""
    return get_task(data.get("name", ""), **{k: v for k, v in data.items() if k != "name"})


# ----------------------------------------------------------------------------------------------
# splits and training batches


@dataclass
class Splits:
    test: list[Example]  # held out: the reported exact match
    valid: list[Example]  # same distribution as test, never the same examples: when to stop training
    extra: list[Example]  # the task's finding beyond the goal (addition: one more digit); may be empty

    def sources(self) -> set[str]:
        return {e.source for e in self.test + self.valid + self.extra}


def make_splits(task: Task, *, seed: int = 0, n_test: int = 1000, n_valid: int = 300,
                n_extra: int = 1000) -> Splits:
    """Distinct held-out examples: test first, then validation, then extra (none shared)."""
    capacity = task.heldout_capacity()
    if capacity is not None and n_test + n_valid > capacity:  # roman: 600 held-out values in all
        n_valid = min(n_valid, capacity // 3)
        n_test = min(n_test, capacity - n_valid)
    rng = random.Random(f"{task.name}-heldout-{seed}")
    taken: set[str] = set()
    test = _distinct(task, rng, "test", n_test, taken)
    valid = _distinct(task, rng, "test", n_valid, taken)
    extra = _distinct(task, rng, "extra", n_extra, taken) if "extra" in task.splits else []
    return Splits(test, valid, extra)


def _distinct(task: Task, rng: random.Random, split: str, n: int, taken: set[str]) -> list[Example]:
    out: list[Example] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise ValueError(f"task {task.name!r}: could not draw {n} distinct {split} examples "
                             f"(only {len(out)}); ask for fewer")
        ex = task.sample(rng, split)
        if ex.source not in taken:
            taken.add(ex.source)
            out.append(ex)
    return out


class TrainSampler:
    """Training examples, drawn fresh for every batch, never one whose source is held out."""

    def __init__(self, task: Task, heldout: set[str], seed: int = 0) -> None:
        self.task, self.heldout = task, heldout
        self.rng = random.Random(f"{task.name}-train-{seed}")

    def batch(self, n: int) -> list[Example]:
        out: list[Example] = []
        while len(out) < n:
            ex = self.task.sample(self.rng, "train")
            if ex.source not in self.heldout:
                out.append(ex)
        return out


@dataclass
class Batch:
    """Padded id tensors of a batch of examples (padding on the right, PAD = 0).

    src:     the source characters + <eos>                         (B, S)
    tgt_in:  <bos> + the target characters (what the decoder reads)  (B, T)
    tgt_out: the target characters + <eos> (what it must predict)   (B, T)
    The masks are 1 at real tokens, 0 at padding.
    """

    src: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    tgt_mask: torch.Tensor
    tgt_out: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(*(t.to(device) for t in dataclasses.astuple(self)))


def pad(rows: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    """[[5, 6], [7]] -> tensor([[5, 6], [7, 0]]): right padding with PAD to ``length`` (or the longest)."""
    T = max([len(r) for r in rows] + [length or 0])
    return torch.tensor([list(r) + [PAD] * (T - len(r)) for r in rows], dtype=torch.long)


def encode_batch(examples: Sequence[Example], vocab: Vocab) -> Batch:
    src = pad([vocab.encode(e.source) + [EOS] for e in examples])
    tgt = [vocab.encode(e.target) for e in examples]
    tgt_in, tgt_out = pad([[BOS] + t for t in tgt]), pad([t + [EOS] for t in tgt])
    return Batch(src, (src != PAD).long(), tgt_in, (tgt_in != PAD).long(), tgt_out)
