"""Argument types the command groups share (argparse ``type=`` functions)."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """A whole number >= 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def port(value: str) -> int:
    """A TCP port, 0..65535 (0: any free port)."""
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {value!r}")
    return n


def quiet_openmp() -> None:
    """Let PyTorch's idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``), unless
    the user chose: generation runs most of its work in lucidlm's own C threads, and a spinning
    PyTorch thread on the same core halved a 28-token prompt's speed on 2 cores (324 ms -> 78 ms
    passive) and cost 15% of two-thread decoding. OpenMP reads it once, when torch is imported, so
    commands call this first; PyTorch's large matrix products (long prompts) are unaffected."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
