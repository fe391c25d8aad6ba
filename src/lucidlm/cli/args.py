"""Argument types the command groups share (argparse ``type=`` functions), and what commands do
before torch is imported (``quiet_openmp``, the garbage collector's pause while starting)."""

from __future__ import annotations

import argparse
import gc


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


def starts_fast(command):
    """Mark a command that imports torch and loads a model before its real work (``generate``,
    ``chat``, ``serve``, ``inspect``): the ``lucidlm`` process runs it with the garbage collector
    paused until the command calls ``startup_done()``. Importing torch and loading a model make
    ~200k objects that live as long as the process and are never garbage; the collector walked
    them again and again meanwhile (full collections of 20-85 ms; 0.22 s of a 2 s ``generate``,
    0.2 s of torch's own import)."""
    command.starts_fast = True
    return command


_GC_PAUSED = {"by_startup": False}


def pause_gc_for_startup() -> None:
    """What ``main`` does before a ``starts_fast`` command, in the ``lucidlm`` process only."""
    if gc.isenabled():
        gc.disable()
        _GC_PAUSED["by_startup"] = True


def startup_done() -> None:
    """The command has imported and loaded what it needs: those objects move to the collector's
    permanent generation (``gc.freeze``: later collections skip them) and collecting resumes. Does
    nothing where ``pause_gc_for_startup`` did not pause it (a test or notebook calling ``main``)."""
    if _GC_PAUSED["by_startup"]:
        _GC_PAUSED["by_startup"] = False
        gc.freeze()
        gc.enable()


def quiet_openmp() -> None:
    """Let PyTorch's idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``), unless
    the user chose: generation runs most of its work in lucidlm's own C threads, and a spinning
    PyTorch thread on the same core halved a 28-token prompt's speed on 2 cores (324 ms -> 78 ms
    passive) and cost 15% of two-thread decoding. OpenMP reads it once, when torch is imported, so
    commands call this first; PyTorch's large matrix products (long prompts) are unaffected."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
