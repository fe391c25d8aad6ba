"""The training benchmarks against real nanoGPT (benchmarks/train_shakespeare.py, train_shakespeare_gpu.py,
_nanogpt.py): what they read from nanoGPT's log, the windows they score, the errors they give, and a few
steps of the real thing when a nanoGPT checkout is at hand (LUCIDLM_NANOGPT_DIR, or the project's shared
copy beside the repository)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import _nanogpt  # noqa: E402
import train_shakespeare_gpu as gpu_bench  # noqa: E402


def _nanogpt_dir() -> Path | None:
    for candidate in (os.environ.get("LUCIDLM_NANOGPT_DIR"), ROOT.parent / "shared" / "peers" / "nanoGPT"):
        if candidate and all((Path(candidate) / name).is_file() for name in _nanogpt.REQUIRED):
            return Path(candidate)
    return None


NANOGPT = _nanogpt_dir()
needs_nanogpt = pytest.mark.skipif(NANOGPT is None, reason="no nanoGPT checkout: set LUCIDLM_NANOGPT_DIR")
TINY_FLAGS = ["--device=cpu", "--compile=False", "--max_iters=3", "--lr_decay_iters=3", "--eval_interval=3",
              "--eval_iters=2", "--log_interval=1", "--batch_size=4", "--block_size=32", "--n_layer=1", "--n_head=2",
              "--n_embd=32", "--dropout=0.0"]


def test_parse_line_reads_nanogpt_log_lines():
    evals, iters = [], []
    lines = ["tokens per iteration will be: 768", "step 0: train loss 4.1676, val loss 4.1649",
             "iter 0: loss 4.1759, time 3290.11ms, mfu -100.00%", "iter 1: loss 4.0911, time 70.52ms, mfu 0.01%",
             "step 2000: train loss 1.7648, val loss 1.8857", "saving checkpoint to out-shakespeare-char"]
    for t, line in enumerate(lines):
        _nanogpt.parse_line(line, evals, iters, float(t))
    assert evals == [(0, 4.1676, 4.1649, 1.0), (2000, 1.7648, 1.8857, 4.0)]
    assert iters == [(0, 3290.11), (1, 70.52)]
    run = _nanogpt.NanoGPTRun(wall_s=5.0, prepare_s=0.1, first_line_s=0.5, peak_mb=1.0, work_dir=Path("."),
                              evals=evals, iter_ms=iters + [(2, 60.0), (3, 80.0)])
    assert run.median_ms() == 70.52  # iter 0 (the first evaluation's time) left out
    assert run.best_val == run.final_val == 1.8857
    assert run.seconds_to(2.0) == 4.0 and np.isnan(run.seconds_to(1.0))


@pytest.mark.parametrize("make", ["empty", "missing-config", "file"])
def test_check_checkout_names_what_is_missing(tmp_path, make):
    if make == "file":
        path = tmp_path / "train.py"
        path.write_text("")
    else:
        path = tmp_path / "nano"
        for name in _nanogpt.REQUIRED if make == "missing-config" else ():
            if name != "config/train_shakespeare_char.py":
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_text("")
        path.mkdir(exist_ok=True)
    with pytest.raises(_nanogpt.NanoGPTError) as err:
        _nanogpt.check_checkout(path)
    if make == "missing-config":
        assert "lacks config/train_shakespeare_char.py (" in str(err.value)
    elif make == "empty":
        assert "lacks train.py, model.py" in str(err.value)
    else:
        assert "no such directory" in str(err.value)


def test_missing_imports_reads_module_level_imports(tmp_path):
    for name in _nanogpt.REQUIRED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "train.py").write_text(
        "import os, numpy as np\nimport torch.nn\nfrom model import GPT\nimport surely_absent_pkg_1\n"
        "if False:\n    import wandb\n")
    (tmp_path / "model.py").write_text("from dataclasses import dataclass\nfrom surely_absent_pkg_2.sub import x\n")
    assert _nanogpt.missing_imports(tmp_path) == ["surely_absent_pkg_1", "surely_absent_pkg_2"]


def test_full_val_loss_equals_a_direct_bigram_sum():
    """A bigram model sees one token of context, so scoring every window position equals scoring
    the flat stream's first n*T positions directly: an independent reference."""
    rng = np.random.default_rng(0)
    val = rng.integers(0, 7, size=1000)
    logp = np.log(rng.dirichlet(np.ones(7), size=7))  # (V, V) log p(next | current)
    table = torch.tensor(logp)

    def loss_of(x, y):
        return float(-table[x, y].mean())

    block = 64
    n = (len(val) - 1) // block
    expected = -np.mean([logp[val[i], val[i + 1]] for i in range(n * block)])
    for batch in (1, 5, 128):  # a short last batch is weighted by its windows
        assert _nanogpt.full_val_loss(loss_of, val, block, batch) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="too few"):
        _nanogpt.full_val_loss(loss_of, val[:10], block)


@pytest.mark.parametrize("script", ["train_shakespeare.py", "train_shakespeare_gpu.py"])
def test_not_a_checkout_is_a_one_line_error(tmp_path, script):
    out = subprocess.run([sys.executable, str(BENCH / script), "--nanogpt-dir", str(tmp_path), "--device", "cpu"]
                         if script.endswith("gpu.py") else
                         [sys.executable, str(BENCH / script), "--nanogpt-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "is not a nanoGPT checkout" in out.stderr and "train.py" in out.stderr


def test_gpu_script_without_a_gpu_says_so(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, str(BENCH / "train_shakespeare_gpu.py"), "--nanogpt-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "sees no GPU" in out.stderr


def test_gpu_script_flags_and_overrides(tmp_path):
    args = _gpu_args(["--nanogpt-dir", "x"])
    assert gpu_bench.nanogpt_flags(args) == []  # the published run: the config as it is
    args = _gpu_args(["--nanogpt-dir", "x", "--device", "cpu", "--no-compile", "--max-iters", "3", "--eval-iters", "2"])
    assert gpu_bench.nanogpt_flags(args) == ["--device=cpu", "--compile=False", "--max_iters=3", "--lr_decay_iters=3",
                                             "--eval_interval=3", "--eval_iters=2"]
    cfg = gpu_bench.lucidlm_config(args, ["--lr=5e-4", "--model.n_layer=2"], tmp_path / "d", tmp_path / "o")
    assert (cfg.lr, cfg.model["n_layer"], cfg.model["n_embd"], cfg.max_steps, cfg.eval_iters, cfg.compile,
            cfg.device) == (5e-4, 2, 384, 3, 2, False, "cpu")
    assert gpu_bench.lucidlm_config(_gpu_args(["--nanogpt-dir", "x"]), [], tmp_path, tmp_path).max_steps == \
        gpu_bench.GPU_STEPS
    with pytest.raises(ValueError, match="unknown key 'no_such_key'"):
        gpu_bench.lucidlm_config(args, ["--no_such_key=1"], tmp_path / "d", tmp_path / "o")


def _gpu_args(argv):
    return gpu_bench.build_parser().parse_known_args(argv)[0]


@needs_nanogpt
def test_nanogpt_prepare_writes_lucidlms_dataset(tmp_path):
    """nanoGPT's prepare.py and lucidlm's char dataset hold the same ids in the same 90/10 split."""
    from lucidlm.data import tiny_shakespeare_path
    from lucidlm.data.prepare import prepare_dataset

    copy = _nanogpt.copy_checkout(NANOGPT, tmp_path)
    data = copy / "data" / "shakespeare_char"
    (data / "input.txt").write_bytes(tiny_shakespeare_path().read_bytes())
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True, timeout=120)
    ours = tmp_path / "ours"
    prepare_dataset([tiny_shakespeare_path()], ours, "char", val_fraction=0.1, progress=False)
    for split in ("train", "val"):
        assert (data / f"{split}.bin").read_bytes() == (ours / f"{split}.bin").read_bytes()


@needs_nanogpt
def test_real_nanogpt_runs_and_its_checkpoint_is_scored(tmp_path):
    from lucidlm.data import tiny_shakespeare_path

    run = _nanogpt.run_nanogpt(NANOGPT, tmp_path, TINY_FLAGS, text_path=tiny_shakespeare_path(),
                               one_core=sorted(os.sched_getaffinity(0))[0])
    assert [step for step, *_ in run.evals] == [0, 3]
    assert [it for it, _ in run.iter_ms] == [0, 1, 2, 3]
    assert 0 < run.first_line_s < run.evals[0][3] < run.evals[1][3] < run.wall_s
    assert run.evals[0][2] == pytest.approx(np.log(65), abs=0.1)  # untrained: about log(vocab)
    score = _nanogpt.score_checkpoint(run)
    assert score["iter"] == 3
    assert score["full_val"] == pytest.approx(run.evals[1][2], abs=0.05)  # 2 random batches vs all windows


@needs_nanogpt
def test_gpu_script_smoke_on_cpu():
    out = subprocess.run([sys.executable, str(BENCH / "train_shakespeare_gpu.py"), "--nanogpt-dir", str(NANOGPT),
                          "--device", "cpu", "--no-compile", "--max-iters", "3", "--eval-iters", "2", "--smoke",
                          "--target=9.0"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "nanoGPT: best val" in out.stdout
    assert "lucidlm: best val" in out.stdout and "ratio:" in out.stdout
    assert "ratio: nan" not in out.stdout  # a target of 9.0 is reached at the first evaluation
