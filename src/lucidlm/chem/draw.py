"""Molecules drawn as a grid: see what the model writes, not just its scores.

Each cell shows one SMILES as RDKit draws it, marked valid, with the SMILES below. A string
RDKit cannot read (or an empty one: MOSES counts it invalid) gets a shaded cell marked "INVALID":
the grid shows the samples in file order, failures included, an honest picture of the generator.
Validity is the metrics' own (``features.parse``: MOSES's ``get_mol``). RDKit (``pip install
'lucidlm[chem]'``) is imported when a grid is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lucidlm.chem.features import parse, rdkit


def draw_grid(smiles: Sequence[str], path: str | os.PathLike, *, cols: int = 4, size: int = 300) -> dict:
    """Draw ``smiles`` into a PNG grid at ``path`` (``cols`` cells a row, ``size`` pixels a cell);
    returns {"drawn": n, "valid": n_valid, "path": path}.

    Each cell: the structure (RDKit's drawing), then a line "n. valid" in green or "n. INVALID" in
    red, then the SMILES. The labels are drawn with Pillow (RDKit draws no legend under an
    empty molecule, so an invalid sample would otherwise be a silent blank)."""
    rdkit()  # an ImportError naming the pip extra, before anything is drawn
    from PIL import Image, ImageDraw, ImageFont

    if not smiles:
        raise ValueError("no molecules to draw")
    if cols < 1 or size < 100:
        raise ValueError(f"cols must be >= 1 and size >= 100 pixels, got cols={cols}, size={size}")
    font = ImageFont.load_default(size=max(10, size // 22))
    line = font.getbbox("Hg")[3] + 4  # pixels per text line
    cols = min(cols, len(smiles))
    rows = -(-len(smiles) // cols)
    grid = Image.new("RGB", (cols * size, rows * size), "white")
    pen = ImageDraw.Draw(grid)
    valid = 0
    for i, s in enumerate(smiles):
        x, y = (i % cols) * size, (i // cols) * size
        mol = parse(s)
        if mol is not None:
            valid += 1
            grid.paste(_structure(mol, size, size - 2 * line), (x, y))
            mark, color = f"{i + 1}. valid", (0, 128, 0)
        else:
            pen.rectangle((x + 4, y + 4, x + size - 5, y + size - 2 * line - 5), fill=(255, 238, 238))
            mark, color = f"{i + 1}. INVALID" + ("" if s else " (empty)"), (200, 0, 0)
        pen.text((x + 6, y + size - 2 * line), mark, fill=color, font=font)
        pen.text((x + 6, y + size - line), _fit(s, font, size - 12), fill="black", font=font)
        pen.rectangle((x, y, x + size - 1, y + size - 1), outline=(220, 220, 220))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return {"drawn": len(smiles), "valid": valid, "path": path}


def _structure(mol, width: int, height: int):
    """One molecule drawn by RDKit as a Pillow image. Bonds are at most width / 9 pixels long, so
    ethanol is drawn at the scale of the drug-sized molecules around it, not blown up to fill its
    cell; a large molecule is shrunk to fit."""
    from io import BytesIO

    from PIL import Image
    from rdkit.Chem.Draw import rdMolDraw2D

    drawer = rdMolDraw2D.MolDraw2DCairo(width, height)
    drawer.drawOptions().fixedBondLength = width / 9
    drawer.DrawMolecule(mol)
    drawer.FinishDrawing()
    return Image.open(BytesIO(drawer.GetDrawingText())).convert("RGB")


def _fit(text: str, font, width: int) -> str:
    """``text``, cut to fit ``width`` pixels and ending in "..." when cut."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."
