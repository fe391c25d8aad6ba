"""Molecules: a GPT that writes SMILES, scored exactly as the MOSES benchmark scores models.

- ``metrics.py``: the MOSES metric set (validity, uniqueness, novelty, internal diversity, filters,
  SNN, fragment and scaffold similarity, FCD) on RDKit, checked against MOSES's own code.
- ``data.py``: MOSES's splits as ``[BOS] tokens [EOS]`` sequences for training and sampling.

RDKit (and the FCD package) are optional: ``pip install 'lucidlm[chem]'``.
"""
