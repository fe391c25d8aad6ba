"""The Molecules panel's numbers: molecules sampled from a SMILES GPT, each token's probability,
whether RDKit reads the result, and its drawing.

    molecules = sample_molecules(model, tok, n)          every row from <bos>, to <eos> (chem/sample.py)
    probs     = softmax(model([<bos>] + ids))[t, ids[t]] the model's own probability of each token it
                                                         wrote (temperature 1, before any filter)
    valid     = RDKit parses and sanitizes the SMILES    as MOSES's Valid counts it (chem/features.py)
    svg       = RDKit's 2-D drawing                      served as text, shown as an <img> (no script)

Why the probability of each token: a student sees where the model is sure (ring closures, the
atoms after "c1cc") and where it hesitates, and that an invalid molecule usually starts with one
unlikely token.
"""

from __future__ import annotations

import torch

from lucidlm.chem.features import parse, rdkit
from lucidlm.chem.sample import sample_molecules
from lucidlm.generate.sampling import SamplingParams

MAX_MOLECULES = 64  # one request draws at most this many (each carries its drawing)
SVG_SIZE = (220, 170)  # each drawing, pixels


def check_molecule_model(model, tokenizer, name: str) -> None:
    """A model the panel can sample: a decoder whose tokenizer has <bos> and <eos>."""
    if getattr(model.cfg, "arch", None) != "decoder" or getattr(tokenizer, "bos_id", None) is None \
            or getattr(tokenizer, "eos_id", None) is None:
        raise ValueError(f"{name} is not a molecule model: the Molecules panel samples a GPT trained on SMILES "
                         "(`lucidlm chem prepare` then `lucidlm chem train`), whose tokenizer has <bos> and <eos>; "
                         "start the explorer with --model PATH/TO/ITS/CHECKPOINT")


@torch.inference_mode()
def token_probabilities(model, bos: int, rows: list[list[int]], pad: int) -> list[list[float]]:
    """For each row of generated ids (``<eos>`` included when it ended there), the model's
    probability of each id after ``<bos>`` and the ids before it: one forward pass of the padded
    batch (right padding: a causal model's earlier positions never see it)."""
    if not rows:
        return []
    width = max(len(r) for r in rows)
    x = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, W) <bos> + all but the last id
    x[:, 0] = bos
    for b, r in enumerate(rows):
        x[b, 1:len(r)] = torch.tensor(r[:-1], dtype=torch.long)
    probs = torch.softmax(model(x).float(), dim=-1)  # (B, W, V)
    return [[probs[b, t, r[t]].item() for t in range(len(r))] for b, r in enumerate(rows)]


def molecule_svg(mol, size: tuple[int, int] = SVG_SIZE) -> str:
    """RDKit's 2-D drawing of a (valid) molecule as SVG text."""
    from rdkit.Chem.Draw import rdMolDraw2D

    drawer = rdMolDraw2D.MolDraw2DSVG(*size)
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def generate_molecules(model, tokenizer, n: int, params: SamplingParams) -> dict:
    """``n`` molecules with their tokens, each token's probability, validity and drawing."""
    if not isinstance(n, int) or not 1 <= n <= MAX_MOLECULES:
        raise ValueError(f"n={n!r}: draw 1 to {MAX_MOLECULES} molecules at a time")
    chem = rdkit()  # a clear ImportError (pip install 'lucidlm[chem]') before any sampling
    molecules = sample_molecules(model, tokenizer, n, params=params, batch_size=n, progress=False)
    rows = [list(m.token_ids) for m in molecules]
    probs = token_probabilities(model, tokenizer.bos_id, rows, tokenizer.pad_id if tokenizer.pad_id is not None else 0)
    out = []
    for m, ids, p in zip(molecules, rows, probs):
        mol = parse(m.smiles)
        tokens = [{"id": i, "text": "<eos>" if i == tokenizer.eos_id else tokenizer.decode([i], skip_special_tokens=False),
                   "p": q} for i, q in zip(ids, p)]
        out.append({"smiles": m.smiles, "valid": mol is not None, "ended": m.ended, "logprob": m.logprob,
                    "canonical": chem.MolToSmiles(mol) if mol is not None else None,
                    "tokens": tokens, "svg": molecule_svg(mol) if mol is not None else None})
    valid = [m for m in out if m["valid"]]
    return {"molecules": out, "valid": len(valid), "unique": len({m["canonical"] for m in valid}),
            "params": {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
                       "seed": params.seed}}
