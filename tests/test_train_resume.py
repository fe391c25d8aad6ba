"""Checkpoints and resume: an interrupted-and-resumed run reproduces the uninterrupted one step by
step (exact float equality on CPU), SIGINT through the CLI saves and exits cleanly, and bad input
(an existing run, a changed model, corrupt files, a vocab mismatch) fails before anything is
written. Data: a char-level dataset made by ``lucidlm.data.prepare_dataset`` from Tiny Shakespeare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lucidlm.cli import main as cli_main
from lucidlm.data import prepare_dataset
from lucidlm.loading.checkpoint import read_safetensors
from lucidlm.tokenizers.corpus import tiny_shakespeare
from lucidlm.train import TrainConfig, train
from lucidlm.train.metrics import read_metrics

MODEL = {"n_layer": 2, "n_head": 4, "n_embd": 32, "max_seq_len": 64, "dropout": 0.1}  # dropout: RNG matters


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "shakespeare.txt").write_text(tiny_shakespeare()[:40_000], encoding="utf-8")
    prepare_dataset(root / "shakespeare.txt", root / "chars", "char", progress=False)
    return root / "chars"


def config(dataset, out_dir, **changes) -> TrainConfig:
    base = dict(out_dir=str(out_dir), data=str(dataset), model=dict(MODEL), batch_size=4, grad_accum=2,
                block_size=32, max_steps=12, warmup_steps=3, lr=3e-3, min_lr=3e-4, eval_interval=4, eval_iters=2,
                progress=False, seed=3)
    base.update(changes)
    return TrainConfig(**base)


def test_resume_is_step_exact(dataset, tmp_path):
    """12 steps straight vs 5 steps, stop, resume to 12: the same loss at every step, exactly.
    Exact equality holds because everything a step depends on is restored bit for bit: float32
    weights, AdamW moments, the step (the lr schedule), the data generator and the dropout RNG."""
    full = train(config(dataset, tmp_path / "full"))
    first = train(config(dataset, tmp_path / "split", stop_at_step=5))
    assert first.stopped == "stop_at_step" and first.step == 5
    second = train(config(dataset, tmp_path / "split"), resume=True)
    assert second.stopped == "done" and second.step == 12
    resumed = {**first.losses, **second.losses}
    assert sorted(resumed) == list(range(1, 13))
    assert [resumed[s] for s in range(1, 13)] == [full.losses[s] for s in range(1, 13)]  # tolerance: none
    assert {**first.val_losses, **second.val_losses} == full.val_losses
    a, _ = read_safetensors(tmp_path / "full" / "last" / "model.safetensors")
    b, _ = read_safetensors(tmp_path / "split" / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics.jsonl of the resumed run reads as one uninterrupted run
    steps = [r["step"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 13))


def test_new_run_refuses_an_existing_checkpoint(dataset, tmp_path):
    train(config(dataset, tmp_path / "run", max_steps=2, eval_interval=2))
    with pytest.raises(ValueError, match=r"already holds a checkpoint \(last/, best/\); pass --resume"):
        train(config(dataset, tmp_path / "run", max_steps=2))
    with pytest.raises(ValueError, match="contradict"):
        train(config(dataset, tmp_path / "run"), resume=True, overwrite=True)
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        train(config(dataset, tmp_path / "empty"), resume=True)
    with pytest.raises(ValueError, match="is at step 2 and max_steps=2: nothing to train"):
        train(config(dataset, tmp_path / "run", max_steps=2), resume=True)
    # the changed model config is named, field by field, and nothing is written
    before = (tmp_path / "run" / "last" / "train_state.pt").read_bytes()
    with pytest.raises(ValueError, match=r"model config changed.*n_embd: checkpoint 32, config 48; n_head"):
        train(config(dataset, tmp_path / "run", model={**MODEL, "n_embd": 48, "n_head": 6}), resume=True)
    assert (tmp_path / "run" / "last" / "train_state.pt").read_bytes() == before


@pytest.mark.parametrize("victim, message", [
    ("train_state.pt", "train_state.pt is corrupt or truncated"),
    ("model.safetensors", "is not a readable safetensors file"),
])
def test_corrupt_checkpoint_is_a_clear_error(dataset, tmp_path, victim, message):
    train(config(dataset, tmp_path / "run", max_steps=2, eval_interval=2))
    path = tmp_path / "run" / "last" / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a full disk
    with pytest.raises(ValueError, match=message):
        train(config(dataset, tmp_path / "run", max_steps=4), resume=True)


def test_train_state_refuses_pickled_code(dataset, tmp_path):
    """train_state.pt is read with weights_only=True: a file that would run code is rejected."""
    train(config(dataset, tmp_path / "run", max_steps=2, eval_interval=2))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"version": 1, "evil": Evil()}, tmp_path / "run" / "last" / "train_state.pt")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        train(config(dataset, tmp_path / "run", max_steps=4), resume=True)


def test_data_errors(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset at"):
        train(config(tmp_path / "nowhere", tmp_path / "run"))
    with pytest.raises(ValueError, match="tokenizer/vocab mismatch"):
        train(config(dataset, tmp_path / "run", model={**MODEL, "vocab_size": 40}))
    with pytest.raises(ValueError, match="block_size=128 exceeds the model's max_seq_len=64"):
        train(config(dataset, tmp_path / "run", block_size=128))
    assert not (tmp_path / "run" / "last").exists()


def test_cli_errors_are_one_line(dataset, tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text(f'out_dir = "{tmp_path / "run"}"\ndata = "{dataset}"\nlearning_rate = 0.1\n')
    assert cli_main(["train", "--config", str(toml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidlm: error:") and "unknown key(s) ['learning_rate']" in err
    assert cli_main(["plot", str(tmp_path / "nothing")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_sigint_saves_and_exits_cleanly_then_resumes(dataset, tmp_path):
    out = tmp_path / "run"
    toml = tmp_path / "run.toml"
    model = "\n".join(f"{k} = {json.dumps(v)}" for k, v in MODEL.items())
    toml.write_text(f'out_dir = "{out}"\ndata = "{dataset}"\nbatch_size = 4\nblock_size = 32\nmax_steps = 100000\n'
                    f'eval_interval = 100000\nprogress = false\n[model]\n{model}\n')
    proc = subprocess.Popen([sys.executable, "-m", "lucidlm.cli", "train", "--config", str(toml)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        metrics = out / "metrics.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGINT: finishing step" in stdout and "continue with --resume" in stdout
    step = torch.load(out / "last" / "train_state.pt", weights_only=True)["step"]
    assert step >= 3 and f"stopped after step {step} (signal)" in stdout
    assert cli_main(["train", "--config", str(toml), "--resume", f"--max_steps={step + 2}"]) == 0
    assert torch.load(out / "last" / "train_state.pt", weights_only=True)["step"] == step + 2
