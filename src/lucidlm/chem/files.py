"""Files of molecules: training SMILES in, generated samples out and back in.

Two readers, because a blank line means different things:
- ``read_smiles``: training molecules. A blank line is no molecule and is skipped.
- ``read_samples``: a model's generations. A blank line is a generation that ended at once (the
  model wrote ``<eos>`` first): an empty SMILES, which MOSES counts as *invalid*. It is kept, so
  the validity the metrics report is the generator's, not a cleaned-up file's.

Formats, chosen by the file name: ``.csv`` / ``.csv.gz`` with a ``SMILES`` column (any case; other
columns are ignored on reading), else one SMILES per line (``.smi``, ``.txt``): its first
whitespace-separated field (a ``.smi`` line may carry a name after the SMILES).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MAX_SHOWN = 5  # bad lines quoted in a message


def read_smiles(path: str | os.PathLike, *, limit: int | None = None) -> list[str]:
    """The SMILES of a training file, in order, blank lines skipped. ``limit``: stop after this
    many molecules (a quick trial on the first ones)."""
    path = _existing(path)
    out: list[str] = []
    with _reading(path), _open_text(path) as f:
        if _is_csv(path):
            reader = csv.reader(f)
            header = next(reader, None)
            column = smiles_column(header, path)
            for n, record in enumerate(reader, start=2):
                if limit is not None and len(out) >= limit:
                    break
                if not record:
                    continue
                if column >= len(record):
                    raise ValueError(f"{path}:{n}: the row has {len(record)} fields, no {header[column]!r} column")
                if record[column].strip():
                    out.append(record[column].strip())
        else:
            for line in f:
                if limit is not None and len(out) >= limit:
                    break
                fields = line.split()
                if fields:
                    out.append(fields[0])
    return out


@dataclass
class Samples:
    """A file of generated molecules as read: every line's SMILES (an empty one included) and
    the lines that cannot be SMILES at all, kept in ``smiles`` (the metrics count them invalid)."""

    path: Path
    smiles: list[str]
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, text)
    header: bool = False  # a first line "SMILES" was a header, not a molecule

    @property
    def n_empty(self) -> int:
        return sum(1 for s in self.smiles if not s)

    def report(self) -> str:
        """One or two lines on what was read, for the command line."""
        text = f"{self.path}: {len(self.smiles):,} samples"
        if self.n_empty:
            text += f", {self.n_empty:,} empty (the model wrote <eos> first; counted invalid)"
        if self.bad_lines:
            shown = "; ".join(f"line {n}: {t[:40]!r}" for n, t in self.bad_lines[:MAX_SHOWN])
            text += (f"\n{len(self.bad_lines):,} lines are not SMILES (characters no SMILES token matches); kept and "
                     f"counted invalid: {shown}{' ...' if len(self.bad_lines) > MAX_SHOWN else ''}")
        return text


def read_samples(path: str | os.PathLike) -> Samples:
    """Generated molecules, one per line (or CSV row), nothing dropped: see the module docstring.
    An empty file, or one with nothing but blank lines, is a ValueError (no samples to score)."""
    from lucidlm.tokenizers.simple import tokenize_smiles

    path = _existing(path)
    smiles: list[str] = []
    lines: list[int] = []  # the line number of each sample
    header = False
    with _reading(path), _open_text(path) as f:
        if _is_csv(path):
            reader = csv.reader(f)
            names = next(reader, None)
            column = smiles_column(names, path)
            for record in reader:
                if not record:  # csv gives [] for a blank line: no row at all
                    continue
                if column >= len(record):
                    raise ValueError(f"{path}:{reader.line_num}: the row has {len(record)} fields, no "
                                     f"{names[column]!r} column")
                smiles.append(record[column].strip())
                lines.append(reader.line_num)
        else:
            for n, line in enumerate(f, start=1):
                fields = line.split()
                if n == 1 and len(fields) == 1 and fields[0].lower() == "smiles":
                    header = True
                    continue
                smiles.append(fields[0] if fields else "")
                lines.append(n)
    if not any(smiles):
        what = "is empty" if not smiles else f"holds only {len(smiles)} blank lines"
        raise ValueError(f"{path} {what}: no molecules to read (expected one SMILES per line, or a CSV with a "
                         "SMILES column)")
    bad = []
    for s, n in zip(smiles, lines):
        if s:
            try:
                tokenize_smiles(s)
            except ValueError:
                bad.append((n, s))
    return Samples(path, smiles, bad, header)


def write_samples(path: str | os.PathLike, smiles: Sequence[str], columns: dict[str, Sequence] | None = None) -> Path:
    """Write molecules to ``path``: ``.csv`` (a SMILES column, then ``columns``), else one SMILES per
    line (an empty generation is an empty line). Written to a temporary file, then renamed."""
    path = Path(path)
    if any("\n" in s or "\r" in s for s in smiles):
        raise ValueError("a SMILES contains a line break; it cannot be written one per line")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(tmp, "wt", encoding="utf-8", newline="") as f:
        if _is_csv(path):
            columns = columns or {}
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["SMILES", *columns])
            for i, s in enumerate(smiles):
                writer.writerow([s, *(values[i] for values in columns.values())])
        else:
            f.writelines(f"{s}\n" for s in smiles)
    os.replace(tmp, path)
    return path


def smiles_column(header: Sequence[str] | None, path: Path) -> int:
    """The index of the SMILES column in a CSV header; ValueError naming the columns if none."""
    if not header:
        raise ValueError(f"{path} is empty: a CSV of molecules needs a header with a SMILES column")
    names = [h.strip().lower() for h in header]
    if "smiles" not in names:
        raise ValueError(f"{path} has no SMILES column (its columns: {', '.join(header)})")
    return names.index("smiles")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SMILES file at {path}")
    return path


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A file that is not UTF-8 text (or not gzip, for .gz) fails with its name, not a traceback."""
    try:
        yield
    except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
        raise ValueError(f"cannot read {path} as a SMILES file: {exc}") from None
