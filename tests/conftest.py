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

import pytest


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



def _asset_path_or_skip(name: str, keys: tuple[str | None, ...]):
    """The cached path of a pretrained asset's first file (all of ``keys`` fetched); the test is
    skipped when the asset is neither cached nor reachable."""
    from lucidlm.assets import asset_path

    try:
        return [asset_path(name, key) for key in keys][0]
    except Exception as exc:  # offline and not cached
        pytest.skip(f"asset {name} cannot be had (offline? set LUCIDLM_WHEELHOUSE): {exc}")


@pytest.fixture(scope="session")
def smollm2_path():
    """SmolLM2-135M-Instruct's GGUF file."""
    return _asset_path_or_skip("smollm2-135m-instruct", (None,))


@pytest.fixture(scope="session")
def minilm_dir():
    """The folder holding all-MiniLM-L6-v2's model.safetensors, config.json and tokenizer.json."""
    return _asset_path_or_skip("all-minilm-l6-v2", ("model", "config.json", "tokenizer.json")).parent


@pytest.fixture(scope="session")
def moses_path():
    """MOSES's train split (csv.gz) from the molsets wheel; the other splits are cached beside it."""
    return _asset_path_or_skip("moses", ("train", "test", "test_scaffolds"))
