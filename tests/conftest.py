"""Shared test setup: share the cores fairly when pytest-xdist runs the suite in several processes.

``make test`` runs ``pytest -n auto``: one worker process per core. PyTorch (and the C decode kernel,
which follows ``torch.get_num_threads()``) would otherwise start one thread per core in *every*
worker, and OpenMP threads that wait for a busy core spin: on 2 cores, 2 workers with 2 threads
each train the demo's model ~2x slower than with 1 thread each, and far slower still on a machine
that others use too. So each worker gets its share of the cores, also passed on to the commands
the tests start (``OMP_NUM_THREADS``). A plain ``pytest`` run (no ``-n``) is left as it is.
"""

from __future__ import annotations

import os


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_configure(config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))  # set in xdist's worker processes only
    if workers < 1:
        return
    threads = max(1, _cores() // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
