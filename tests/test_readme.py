"""The README's Python snippets run as written (in a temporary directory, with the ``my.txt``
the tokenizer example reads), and the files and modules it names exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch, capsys):
    from lucidlm.data import tiny_shakespeare_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.txt").write_text(tiny_shakespeare_path().read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})  # noqa: S102


def test_paths_the_readme_names_exist():
    named = set(re.findall(r"`((?:src/lucidlm|lucidlm|benchmarks|configs|tests|docs)/[\w/.-]+\.(?:py|c|toml|md))`", README))
    assert named, "the README names no files?"
    missing = [p for p in sorted(named)
               if not (ROOT / p).exists() and not (ROOT / "src" / p).exists()]
    assert missing == []
