"""Molecules: a GPT that writes SMILES, scored exactly as the MOSES benchmark scores models.

- ``data.py``: MOSES's splits (or your SMILES) as rows of ``[BOS] tokens [EOS]`` for training.
- ``sample.py``: molecules sampled from ``<bos>`` to ``<eos>``, batched with the KV cache.
- ``files.py``, ``draw.py``: sample files (bad lines counted, never dropped); a PNG grid.
- ``metrics.py``: the MOSES metric set (validity, uniqueness, novelty, internal diversity, filters,
  SNN, fragment and scaffold similarity, FCD), checked against MOSES's own code; built on
  ``features.py`` (RDKit per molecule), ``fcd.py`` (ChemNet) and ``reference.py`` (cached statistics).

RDKit (and ChemNet's weights for FCD) are optional: ``pip install 'lucidlm[chem]'``.
"""
