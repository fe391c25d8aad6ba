"""Shared by the benchmarks: pin to one core, time with medians, print tables with ratios."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def pin_to_one_core() -> int | None:
    """Run this process (and the Rust peers' thread pools) on a single core, as the issue asks."""
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers' thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if hasattr(os, "sched_setaffinity"):
        core = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {core})
        return core
    return None


def median_time(fn: Callable[[], object], repeat: int = 3, setup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    print(f"\n{title}")
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def machine_line() -> str:
    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
