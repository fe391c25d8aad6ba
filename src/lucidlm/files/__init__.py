"""File formats and file plumbing, the lowest layer: no torch or numpy at import.

- ``jsonfile``: JSON read and written atomically, with errors that name the file.
- ``gguf``: the GGUF container (llama.cpp): metadata and tensor index, read with ``struct``.
- ``derived_cache``: files derived from a model file (dequantised weights, a built vocab), kept
  beside the asset cache and trusted only while their source is unchanged.
- ``plotting``: matplotlib's pyplot for PNGs (Agg, except inside Jupyter), imported on first use.
"""
