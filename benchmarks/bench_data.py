"""Token datasets: batch sampling from one open memmap vs nanoGPT's re-open per batch, and the
throughput of ``prepare_dataset`` on one process vs two.

    flock /tmp/lucidlm-bench.lock .venv/bin/python benchmarks/bench_data.py

nanoGPT re-creates its ``np.memmap`` for every batch "to avoid a memory leak". The memory is the
pages a batch touched: they stay mapped, so the process's resident size grows towards the file
size, but as *file-backed* pages (RssFile), which the kernel drops under pressure - not anonymous
memory (RssAnon), which would be a real leak. This prints both, for both ways.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import pin_to_one_core, print_table  # noqa: E402
from lucidlm.data import TokenDataset, prepare_dataset, tiny_shakespeare_path  # noqa: E402

B, T, BATCHES = 12, 1024, 20_000
FILE_TOKENS = 128 << 20  # 256 MB of uint16


def rss_kib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0])
    return fields


def sample(ds: TokenDataset, reopen: bool) -> tuple[float, dict[str, int]]:
    gen = torch.Generator().manual_seed(0)
    before = rss_kib()
    file, dtype = ds.path / "train.bin", ds.data.dtype
    start = time.perf_counter()
    for _ in range(BATCHES):
        if reopen:  # nanoGPT: a fresh memmap each batch, dropped at the end of it
            ds.data = np.memmap(file, dtype=dtype, mode="r")
        ds.get_batch(B, T, gen)
    per_batch = (time.perf_counter() - start) / BATCHES
    after = rss_kib()
    return per_batch, {k: after[k] - before[k] for k in after}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ds"
        text = tiny_shakespeare_path().read_text(encoding="utf-8")
        (Path(tmp) / "in").mkdir()
        for k in range(8):  # 8.9 MB: big enough for workers to pay off
            (Path(tmp) / "in" / f"part{k}.txt").write_text(text, encoding="utf-8")
        rows = []
        # Unpinned: two workers need two cores. A first run warms up what every later run reuses
        # (the tokenizer's saved copy, its chunk cache).
        prepare_dataset([Path(tmp) / "in" / "part0.txt"], Path(tmp) / "warm", "gpt2", workers=1, progress=False)
        for workers in (1, 2):
            start = time.perf_counter()
            meta = prepare_dataset([Path(tmp) / "in"], Path(tmp) / f"gpt2-{workers}", "gpt2", workers=workers,
                                   progress=False)
            sec = time.perf_counter() - start
            n = sum(s["tokens"] for s in meta["splits"].values())
            rows.append([f"prepare gpt2, {workers} worker(s)", sec, f"{n / sec / 1e6:.2f} M tok/s"])
        core = pin_to_one_core()
        print(f"sampling pinned to core {core}; batch {B} x {T}, {BATCHES:,} batches, file {FILE_TOKENS * 2 >> 20} MB")

        # A 256 MB dataset written directly (prepare would take minutes): random ids, real meta.
        meta = dict(meta, dtype="uint16", vocab_size=50257, splits={"train": {"file": "train.bin", "tokens": FILE_TOKENS},
                                                                     "val": {"file": "val.bin", "tokens": 0}})
        folder.mkdir()
        rng = np.random.default_rng(0)
        with open(folder / "train.bin", "wb") as f:
            for _ in range(FILE_TOKENS // (1 << 24)):
                rng.integers(0, 50257, 1 << 24, dtype=np.uint16).tofile(f)
        (folder / "val.bin").touch()
        import json

        (folder / "meta.json").write_text(json.dumps(meta))
        for reopen in (False, True):
            ds = TokenDataset(folder)
            per_batch, grew = sample(ds, reopen)
            label = "re-open memmap per batch (nanoGPT)" if reopen else "one open memmap (lucidlm)"
            rows.append([label, per_batch * 1e6, f"RssAnon +{grew['RssAnon'] >> 10} MB, RssFile +{grew['RssFile'] >> 10} MB"])
            del ds
    print_table("token datasets", ["what", "seconds / us per batch", "note"], rows)


if __name__ == "__main__":
    main()
