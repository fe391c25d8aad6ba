"""The package's layers, checked on the source: no import points up the order, not even one
inside a function, and no two packages import each other (ARCHITECTURE.md, principle 4).

    files, assets  <  tokenizers, nn  <  models  <  loading  <  data  <  generate, train
      <  embeddings, inspection, chem, evaluation  <  serve, explorer, demo  <  cli  <  lucidlm (the facade: __init__.py)

Packages on one layer may import each other one way only (a cycle fails). The test reads every
file with ``ast``, so an import hidden in a function body counts like one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lucidlm"

LAYERS: list[set[str]] = [
    {"files", "assets"},
    {"tokenizers", "nn"},
    {"models"},
    {"loading"},
    {"data"},
    {"generate", "train"},
    {"embeddings", "inspection", "chem", "evaluation"},
    {"serve", "explorer", "demo"},
    {"cli"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
FACADE = "lucidlm"  # lucidlm/__init__.py: the public entry points, above everything


def unit_of(module: str) -> str:
    """'lucidlm.models.config' -> 'models'; 'lucidlm' -> the facade."""
    parts = module.split(".")
    return FACADE if len(parts) == 1 else parts[1]


def internal_imports() -> list[tuple[str, str, str, int]]:
    """(importing unit, imported unit, file, line) for every lucidlm import between units."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent)
        module = ".".join(rel.with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this file's package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets = [".".join(base + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
                if targets == ["lucidlm"]:  # from lucidlm import x: x is a unit of its own
                    targets = [f"lucidlm.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target == "lucidlm" or target.startswith("lucidlm."):
                    src, dst = unit_of(module), unit_of(target)
                    if src != dst:
                        found.append((src, dst, str(rel), node.lineno))
    return found


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert units - LEVEL.keys() == set(), "place these in LAYERS (and in docs/architecture.md)"


def test_no_import_points_up_a_layer():
    up = [f"{file}:{line}: {src} (layer {LEVEL.get(src)}) imports {dst} (layer {LEVEL.get(dst, 'facade')})"
          for src, dst, file, line in internal_imports()
          if dst == FACADE or (src != FACADE and LEVEL[dst] > LEVEL[src])]
    assert up == [], "imports pointing up the layers:\n" + "\n".join(up)


def test_no_cycles_between_packages():
    graph = defaultdict(set)
    for src, dst, _, _ in internal_imports():
        graph[src].add(dst)
    cycles = sorted(f"{a} <-> {b}" for a in list(graph) for b in graph[a] if a < b and a in graph[b])
    assert cycles == []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and (seen.add(n) or reaches(n, goal, seen))) for n in graph[start])

    assert [u for u in list(graph) if reaches(u, u, set())] == []


def test_help_imports_no_torch_and_is_fast():
    code = ("import sys, time; t = time.perf_counter(); from lucidlm.cli import build_parser; build_parser(); "
            "print(time.perf_counter() - t, 'torch' in sys.modules, 'numpy' in sys.modules)")
    seconds, torch_loaded, numpy_loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert torch_loaded == "False" and numpy_loaded == "False"
    assert float(seconds) < 2.0  # ~0.05 s on a quiet machine; the bound only catches a heavy import


@pytest.mark.parametrize("module", ["files", "files.jsonfile", "files.gguf", "files.derived_cache", "assets"])
def test_the_leaf_layer_imports_no_torch(module):
    code = f"import sys, lucidlm.{module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_architecture_page_names_every_unit_and_real_files():
    import re

    page = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = [u for layer in LAYERS for u in layer]
    assert [u for u in named if not re.search(rf"\b{re.escape(u)}(/|\.py)", page)] == []
    paths = set(re.findall(r"`([\w/.]+\.(?:py|c))`", page))
    root = SRC.parents[1]
    assert [p for p in sorted(paths) if not (root / p).exists() and not (SRC / p).exists()] == []
