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
