"""`lucidlm demo` end to end, as a user runs it but on a tiny time budget (its 50-step minimum), then
the commands it tells the user to run next (one run covers all five parts of the demo); and the
Makefile's other commands, `make test` and the benchmarks."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lucidlm.cli import main


def test_demo_runs_end_to_end_and_the_next_commands_run(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", "0.01", "--vocab-size", "400", "--color", "never"]) == 0
    text = capsys.readouterr().out

    # 1. tokenizers: ours (saved with its readable .vocab) beside cl100k/o200k (cached by `make test`)
    assert "cl100k_base" in text and "o200k_base" in text and "bytes/token" in text
    assert (out / "shakespeare-bpe.json").is_file() and (out / "shakespeare-bpe.vocab").is_file()
    # 4. training: 0.01 minutes is less than the 50-step minimum
    assert re.search(r"Training for ~0\.01 min: 50 steps x 8 x 256 tokens", text)
    val_loss = float(re.search(r"final val loss (\d+\.\d+)", text)[1])
    assert val_loss < 3.0  # from ln(65) = 4.17 at the start
    # 3. and 5. samples before and after, the loss plot, and what to run next
    assert "before training" in text and "after training" in text and "lucidlm generate --model" in text
    plot = Path(re.search(r"loss curve: (.+)", text)[1])
    assert plot.is_file() and plot.stat().st_size > 10_000
    best = out / "gpt" / "best"
    assert json.loads((best / "config.json").read_text())["positions"] == "rope"
    # the models kept to watch it learn (lucidlm explore): 7, evenly spaced, from step 0 to the last
    from lucidlm.train.state import kept_steps

    assert [step for step, _ in kept_steps(out / "gpt")] == [0, 9, 18, 27, 36, 45, 50]

    assert main(["generate", "--model", str(best), "--max-tokens", "20", "--seed", "1", "JULIET:"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["generate", "--model", str(best), "--show-probs", "3", "--max-tokens", "5", "ROMEO:"]) == 0
    assert main(["inspect", "walkthrough", "--model", str(best), "To be, or not"]) == 0
    assert "logits" in capsys.readouterr().out


def make_dry_run(*args: str) -> str:
    """The commands ``make ARGS`` would run (``make -n`` runs none of them)."""
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["make", "-n", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_makefile_runs_tests_in_parallel_and_each_benchmark_under_the_one_lock():
    test = [line for line in make_dry_run("test").splitlines() if "-m pytest" in line]
    assert len(test) == 1 and "-n auto" in test[0] and "--durations=15" in test[0]  # .ci/run shows the slowest

    for target in ("bench", "bench-long"):
        runs = [line for line in make_dry_run(target, "BENCH_LOCK=/tmp/lock-for-test").splitlines()
                if "benchmarks" in line and "bin/python" in line]
        assert runs, target
        assert all(re.search(r"flock /tmp/lock-for-test \S*python", line) for line in runs), runs
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert re.findall(r"^BENCH_LOCK \?= (.+)$", makefile, re.M) == ["/tmp/lucidlm-bench.lock"]  # one, named once
