"""The tutorial notebooks (notebooks/): one per principle, stored clean, and every one runs.

1. The course is whole: the eight notebooks in order, each opening with what the reader will be
   able to do after it, each with one ``parameters`` cell of plain assignments.
2. They are stored without outputs or execution counts (so a diff shows only what the author
   changed, and GitHub renders the text, not a stale run), and are valid nbformat 4.
3. Each runs top to bottom headless (nbclient, a real kernel) with the small settings below
   inserted after its parameters cell; the slow test runs each with its own full settings.
   The notebooks check their own results against references (tiktoken, transformers, RDKit...)
   with asserts, so a run that ends without an error has passed those checks too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from notebook_runner import parameters_cell, run_notebook, with_overrides  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE = ["01_tokenization", "02_embeddings", "03_attention", "04_transformer", "05_gpt", "06_training",
          "07_prompting", "08_molecules"]

# The small settings each notebook runs with in the default suite (seconds, not minutes).
SMALL: dict[str, dict[str, object]] = {
    "01_tokenization": {"TRAIN_CHARS": 100_000, "VOCAB_SIZE": 400, "REFERENCE_CHARS": 5_000, "CURVE_POINTS": 4},
    "02_embeddings": {"N_POSITIONS": 32, "NEIGHBOURS": 3},
    "03_attention": {"CHECK_T": 16, "CHECK_HEADS": 3},
    "04_transformer": {"MAX_STEPS": 100, "MINUTES": 0.5, "EVAL_EVERY": 50, "N_TEST": 50, "N_SHOW": 3},
    "05_gpt": {"CORPUS_CHARS": 100_000, "TRAIN_STEPS": 20, "EVAL_ITERS": 2, "SAMPLE_TOKENS": 40, "ANSWER_TOKENS": 8,
               "COMPARE_WITH_TRANSFORMERS": False},
    "06_training": {"CORPUS_CHARS": 100_000, "STEPS": 40, "EVAL_INTERVAL": 20, "EVAL_ITERS": 2, "RESUME_STEPS": 5,
                    "LORA_STEPS": 10, "SAMPLE_TOKENS": 20},
    "07_prompting": {"N_QUESTIONS": 2, "N_SC": 1, "SC_K": 2, "COT_TOKENS": 32},
    "08_molecules": {"N_MOLECULES": 2000, "STEPS": 30, "N_SAMPLES": 50, "N_DRAW": 4},
}


def _path(name: str) -> Path:
    return NOTEBOOKS / f"{name}.ipynb"


def test_the_course_is_whole_and_in_order():
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == COURSE
    assert set(SMALL) == set(COURSE)


@pytest.mark.parametrize("name", COURSE)
def test_stored_clean_and_valid(name):
    raw = json.loads(_path(name).read_text(encoding="utf-8"))
    nb = nbformat.reads(json.dumps(raw), as_version=4)
    nbformat.validate(nb)
    assert raw["nbformat"] == 4 and raw["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {i} of {name} is stored with outputs: clear them before committing"
            assert cell["execution_count"] is None, f"cell {i} of {name} is stored with an execution count"
        assert "widgets" not in cell.get("metadata", {}), f"cell {i} of {name} stores widget state"
    assert "widgets" not in raw["metadata"]
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "After this notebook you will be able to" in first.source
    at = parameters_cell(nb)
    for line in nb.cells[at].source.splitlines():
        code = line.split("#", 1)[0].strip()
        assert not code or ("=" in code and code.split("=", 1)[0].strip().isidentifier()), \
            f"{name}'s parameters cell holds {line!r}: only NAME = value lines, so the tests can override them"


def test_overrides_are_checked():
    nb = nbformat.read(_path(COURSE[0]), as_version=4)
    with pytest.raises(ValueError, match="does not set"):
        with_overrides(nb, {"NO_SUCH_SETTING": 1})
    patched = with_overrides(nb, SMALL[COURSE[0]] or {})
    assert len(patched.cells) == len(nb.cells) + bool(SMALL[COURSE[0]])


def _errors(nb) -> list[str]:
    return [o.get("ename", "") for cell in nb.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", COURSE)
def test_runs_with_small_settings(name, tmp_path):
    nb = run_notebook(_path(name), SMALL[name], cwd=str(tmp_path), timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert not _errors(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)


@pytest.mark.slow
@pytest.mark.parametrize("name", COURSE)
def test_runs_with_full_settings(name, tmp_path):
    nb = run_notebook(_path(name), {}, cwd=str(tmp_path), timeout=900)
    assert not _errors(nb)
