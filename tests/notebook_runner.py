"""Run a tutorial notebook headless, with its parameters overridden (papermill's convention).

Each notebook in notebooks/ has one code cell tagged ``parameters`` (cell metadata
``{"tags": ["parameters"]}``) that sets its sizes as plain assignments, e.g. ``STEPS = 600``. To
run it small, a cell of overrides (``STEPS = 20``) is inserted right after that one, so the
notebook's own text stays as the reader sees it and the overrides win.

    python tests/notebook_runner.py notebooks/01_tokenization.ipynb VOCAB_SIZE=300
        runs it in a temporary directory, prints each cell's time and the first error, if any

Used by tests/test_notebooks.py; a helper module, not a test file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat


def parameters_cell(nb) -> int:
    """The index of the one code cell tagged ``parameters``; ValueError if there is not exactly one."""
    found = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"a notebook needs exactly one code cell tagged 'parameters', found {len(found)}")
    return found[0]


def with_overrides(nb, overrides: dict[str, object]):
    """A copy of ``nb`` with a cell ``NAME = value`` per override right after its parameters cell.
    A name its parameters cell does not assign is an error (a typo would silently do nothing)."""
    nb = nbformat.from_dict(nb)
    at = parameters_cell(nb)
    source = nb.cells[at].source
    assigned = {line.split("=", 1)[0].strip() for line in source.splitlines()
                if "=" in line and not line.lstrip().startswith("#")}
    unknown = sorted(set(overrides) - assigned)
    if unknown:
        raise ValueError(f"the parameters cell does not set {unknown}; it sets {sorted(assigned)}")
    if overrides:
        lines = [f"{name} = {value!r}" for name, value in overrides.items()]
        cell = nbformat.v4.new_code_cell("# injected by tests/notebook_runner.py\n" + "\n".join(lines))
        cell.metadata["tags"] = ["injected-parameters"]
        if nb.nbformat_minor < 5:  # cell ids came with nbformat 4.5
            cell.pop("id", None)
        nb.cells.insert(at + 1, cell)
    return nb


def run_notebook(path: str | os.PathLike, overrides: dict[str, object] | None = None, *, cwd: str | None = None,
                 timeout: int = 600, env: dict[str, str] | None = None):
    """Execute the notebook at ``path`` with ``overrides`` in ``cwd`` (a directory the notebook may
    write into); returns the executed notebook. A failing cell raises nbclient's CellExecutionError,
    whose message shows the cell and the traceback."""
    from nbclient import NotebookClient

    nb = with_overrides(nbformat.read(path, as_version=4), overrides or {})
    nbformat.validate(nb)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": cwd or str(Path(path).parent)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _value(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    path, pairs = argv[0], argv[1:]
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            print(f"expected NAME=VALUE, got {pair!r}", file=sys.stderr)
            return 2
        name, value = pair.split("=", 1)
        overrides[name] = _value(value)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        nb = run_notebook(path, overrides, cwd=tmp)
    print(f"{path}: ran in {time.perf_counter() - start:.1f} s")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            kinds = sorted({o.get("output_type", "?") for o in cell.get("outputs", [])})
            print(f"  cell {i}: {', '.join(kinds) or 'no output'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
