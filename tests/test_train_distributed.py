"""Data-parallel training: ``torchrun --nproc_per_node=2`` (DDP over gloo, CPU) with batch_size b
reaches the same loss curve as one process with batch_size 2b.

Both see the same windows (every rank draws the global batch; rank r keeps rows r::2), and DDP
averages the two ranks' gradients, which equals the gradient of the mean over all rows. What
differs is float32 summation order (two half-batch means averaged vs one mean; an all-reduce), so
the curves agree to ~1e-6; the test allows 1e-5 relative. Gradient accumulation (DDP's no_sync on
the first micro-step) is on in both runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lucidlm.data import prepare_dataset
from lucidlm.tokenizers.corpus import tiny_shakespeare
from lucidlm.train import TrainConfig, train
from lucidlm.train.metrics import read_metrics

MODEL = {"n_layer": 2, "n_head": 4, "n_embd": 32, "max_seq_len": 64}
STEPS = 8


def _curve(run_dir, split: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == split}


@pytest.mark.parametrize("mode", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_two_processes_match_one_process(tmp_path, mode):
    """FSDP (sharded weights and optimizer state) is also stopped at step 5 and resumed: the
    checkpoint gathers the shards into one file and the resume shards it again."""
    (tmp_path / "text.txt").write_text(tiny_shakespeare()[:30_000], encoding="utf-8")
    prepare_dataset(tmp_path / "text.txt", tmp_path / "data", "char", progress=False)
    common = dict(data=str(tmp_path / "data"), block_size=32, grad_accum=2, max_steps=STEPS, warmup_steps=2,
                  lr=3e-3, eval_interval=4, eval_iters=2, progress=False, seed=11)

    single = train(TrainConfig(out_dir=str(tmp_path / "one"), batch_size=8, model=dict(MODEL), **common))

    toml = tmp_path / "ddp.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in common.items()]
    lines += [f'out_dir = "{tmp_path / "two"}"', "batch_size = 4", "[model]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in MODEL.items()]
    toml.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(*overrides: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             "-m", "lucidlm.cli", "train", "--config", str(toml), f"--distributed={mode}", *overrides],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"2 process(es) ({mode})" in proc.stdout
        return proc.stdout

    if mode == "fsdp":
        torchrun("--stop_at_step=5")
        stdout = torchrun("--resume")
        assert "resuming at step 5" in stdout
    else:
        stdout = torchrun()
        assert stdout.count("step 1 | loss") == 1  # only rank 0 logs
    assert stdout.count("done: 8 steps") == 1

    train_two, val_two = _curve(tmp_path / "two", "train"), _curve(tmp_path / "two", "val")
    assert sorted(train_two) == list(range(1, STEPS + 1))
    assert [train_two[s] for s in range(1, STEPS + 1)] == \
        pytest.approx([single.losses[s] for s in range(1, STEPS + 1)], rel=1e-5)
    assert sorted(val_two) == [4, 8]
    assert [val_two[s] for s in (4, 8)] == pytest.approx([single.val_losses[s] for s in (4, 8)], rel=1e-5)
    # one writer: rank 0's checkpoint, no stray temporary directories from rank 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best", "last", "metrics.jsonl"]
