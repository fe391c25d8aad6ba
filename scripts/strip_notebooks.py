"""Clear the outputs and execution counts of notebooks, so they are stored as text only.

    python scripts/strip_notebooks.py notebooks/*.ipynb      (make notebooks-strip)

tests/test_notebooks.py fails on a notebook stored with outputs; run this before committing one
you ran in Jupyter. Cell ids, tags and the text are kept; widget state is dropped.
"""

from __future__ import annotations

import sys

import nbformat


def strip(path: str) -> bool:
    """Strip one notebook in place; True if anything changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("widgets", None)
        cell.metadata.pop("execution", None)  # timings JupyterLab records
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        with open(path, "w", encoding="utf-8") as f:
            f.write(after)
    return after != before


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    for path in paths:
        print(f"{path}: {'stripped' if strip(path) else 'already clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
