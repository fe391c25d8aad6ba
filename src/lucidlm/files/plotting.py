"""matplotlib for lucidlm's PNGs (loss curves, attention heatmaps, alignment plots).

Plots are written to files, so pyplot runs on the Agg backend, which needs no display. Inside
Jupyter the backend is left alone: switching it would turn the notebook's inline plots off for the
rest of the session. matplotlib is imported here, on first use, never at import of lucidlm.
"""

from __future__ import annotations

import sys


def pyplot(what: str = "plots"):
    """``matplotlib.pyplot``, on Agg unless inside Jupyter; a clear error without matplotlib."""
    try:
        import matplotlib

        if "ipykernel" not in sys.modules:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError(f"{what} need matplotlib: pip install matplotlib") from None
    return plt
