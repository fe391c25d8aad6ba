"""Real nanoGPT (karpathy/nanoGPT) as a peer: its ``train.py`` run unmodified in a subprocess.

    run = run_nanogpt(checkout, work_dir, ["--device=cpu", "--compile=False", ...], one_core=True)

Steps, as nanoGPT's README has a user do them:
  1. copy the checkout (it may be read-only) into ``work_dir`` (``.git`` and old ``out*`` left behind);
  2. put Tiny Shakespeare at ``data/shakespeare_char/input.txt``, so ``prepare.py`` does not download;
  3. ``python data/shakespeare_char/prepare.py`` (char vocabulary, first 90% train / last 10% val);
  4. ``python train.py config/train_shakespeare_char.py <flags>``, optionally pinned to one core
     with one OpenMP/MKL thread; its stdout is read line by line and each line timestamped here.

From its log: ``step N: train loss X, val loss Y`` (each evaluation: eval_iters batches of train and
of val) and ``iter N: loss X, time Yms, mfu Z%`` (each step; the step after an evaluation includes
the evaluation and any checkpoint save in its time). The wall-clock is the whole ``train.py``
subprocess: interpreter start, ``import torch``, model init, every step, evaluation and checkpoint
save, and exit; ``prepare.py`` is timed apart.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# what a checkout must hold for the shakespeare_char recipe
REQUIRED = ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py",
            "data/shakespeare_char/prepare.py")
CONFIG = "config/train_shakespeare_char.py"
EVAL_LINE = re.compile(r"^step (\d+): train loss (\S+), val loss (\S+)")
ITER_LINE = re.compile(r"^iter (\d+): loss (\S+), time (\S+)ms")


class NanoGPTError(RuntimeError):
    """nanoGPT could not run here (not a checkout, a missing package, or train.py failed)."""


@dataclass
class NanoGPTRun:
    wall_s: float  # the whole train.py subprocess
    prepare_s: float  # prepare.py, apart
    first_line_s: float  # from the start to its first line of output (after its imports)
    peak_mb: float  # train.py's peak resident memory
    work_dir: Path  # the copy it ran in (out-shakespeare-char/ckpt.pt, data/shakespeare_char/)
    evals: list[tuple[int, float, float, float]] = field(default_factory=list)  # (step, train, val, seconds)
    iter_ms: list[tuple[int, float]] = field(default_factory=list)  # (iter, ms)
    log: list[str] = field(default_factory=list)

    @property
    def final_val(self) -> float:
        return self.evals[-1][2]

    @property
    def best_val(self) -> float:
        return min(val for _, _, val, _ in self.evals)

    def median_ms(self) -> float:
        """Median time of a training step (iter 0 and each step after an evaluation carry extra work;
        the median is the plain step)."""
        times = sorted(ms for it, ms in self.iter_ms if it > 0)
        return times[len(times) // 2] if times else float("nan")

    def seconds_to(self, target: float) -> float:
        """Seconds from the subprocess start until the first evaluation with val loss <= target."""
        return next((t for _, _, val, t in self.evals if val <= target), float("nan"))


def check_checkout(path: str | os.PathLike) -> Path:
    """``path`` as a nanoGPT checkout, or a NanoGPTError that says what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise NanoGPTError(f"--nanogpt-dir {path}: no such directory (a clone of https://github.com/karpathy/nanoGPT)")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise NanoGPTError(f"--nanogpt-dir {path} is not a nanoGPT checkout: it lacks {', '.join(missing)} "
                           "(clone https://github.com/karpathy/nanoGPT)")
    return path


def missing_imports(checkout: Path) -> list[str]:
    """Third-party modules that nanoGPT's train.py, model.py and prepare.py import at module level
    and this interpreter cannot find (read from their source, not a hard-coded list). wandb is
    imported only inside ``if wandb_log``, so it is not needed."""
    local = {p.stem for p in checkout.glob("*.py")}
    needed: set[str] = set()
    for name in ("train.py", "model.py", "data/shakespeare_char/prepare.py"):
        tree = ast.parse((checkout / name).read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import):
                needed.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                needed.add(node.module.split(".")[0])
    third_party = sorted(needed - local - set(sys.stdlib_module_names))
    return [name for name in third_party if importlib.util.find_spec(name) is None]


def commit_of(checkout: Path) -> str:
    """The checkout's commit: a COMMIT file (a copy of the training files) or git's HEAD."""
    if (checkout / "COMMIT").is_file():
        return (checkout / "COMMIT").read_text().strip()
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def copy_checkout(checkout: Path, work_dir: Path) -> Path:
    """A writable copy (file by file: copytree would keep a read-only tree read-only)."""
    dest = work_dir / "nanoGPT"
    for src in checkout.rglob("*"):
        rel = src.relative_to(checkout)
        if rel.parts[0] == ".git" or rel.parts[0].startswith("out") or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / rel)
    return dest


def parse_line(line: str, evals: list, iters: list, seconds: float) -> None:
    """Add one nanoGPT log line's figures to ``evals`` / ``iters``.

    >>> evals, iters = [], []
    >>> parse_line("step 250: train loss 1.9512, val loss 2.0533", evals, iters, 12.5)
    >>> parse_line("iter 251: loss 1.9873, time 61.02ms, mfu 0.01%", evals, iters, 12.6)
    >>> evals, iters
    ([(250, 1.9512, 2.0533, 12.5)], [(251, 61.02)])
    """
    if m := EVAL_LINE.match(line):
        evals.append((int(m[1]), float(m[2]), float(m[3]), seconds))
    elif m := ITER_LINE.match(line):
        iters.append((int(m[1]), float(m[3])))


def _pinned(one_core: int | None) -> tuple[dict, Callable | None]:
    """(environment, preexec_fn) of a subprocess on ``one_core`` with one thread (None: as this one)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if one_core is None:
        return env, None
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, lambda: os.sched_setaffinity(0, {one_core})


def run_nanogpt(checkout: str | os.PathLike, work_dir: Path, flags: list[str], *, text_path: Path,
                one_core: int | None = None, log=None) -> NanoGPTRun:
    """Prepare the data and train with nanoGPT's shakespeare_char config plus ``flags``; see the
    module docstring. ``one_core``: pin the subprocesses to that core, one thread."""
    checkout = check_checkout(checkout)
    missing = missing_imports(checkout)
    if missing:
        raise NanoGPTError(f"nanoGPT needs {', '.join(missing)}, which {sys.executable} cannot import: "
                           f"{sys.executable} -m pip install {' '.join(missing)}")
    copy = copy_checkout(checkout, work_dir)
    data_dir = copy / "data" / "shakespeare_char"
    shutil.copyfile(text_path, data_dir / "input.txt")
    env, preexec = _pinned(one_core)
    start = time.perf_counter()
    prep = subprocess.run([sys.executable, "prepare.py"], cwd=data_dir, env=env, preexec_fn=preexec,
                          capture_output=True, text=True)
    prepare_s = time.perf_counter() - start
    if prep.returncode != 0:
        raise NanoGPTError(f"nanoGPT's prepare.py failed: {_last_line(prep.stderr)}")

    evals: list = []
    iters: list = []
    lines: list[str] = []
    first_line_s = float("nan")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "train.py", CONFIG, *flags], cwd=copy, env=env, preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        for line in proc.stdout:
            now = time.perf_counter() - start
            if not lines:
                first_line_s = now
            line = line.rstrip("\n")
            lines.append(line)
            parse_line(line, evals, iters, now)
            if log is not None and EVAL_LINE.match(line):
                log(f"  nanoGPT {line} ({now:.1f} s)")
        _, status, usage = os.wait4(proc.pid, 0)  # wait() without losing the child's resource usage
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise NanoGPTError(f"nanoGPT's train.py exited with {proc.returncode}: {_last_line(chr(10).join(lines))}")
    if not evals:
        raise NanoGPTError("nanoGPT's train.py printed no 'step N: ... val loss' line; is this its train.py?")
    return NanoGPTRun(wall_s=wall, prepare_s=prepare_s, first_line_s=first_line_s, peak_mb=usage.ru_maxrss / 1024,
                      work_dir=copy, evals=evals, iter_ms=iters, log=lines)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def full_val_loss(loss_of: Callable, val: np.ndarray, block_size: int = 64, batch_size: int = 128) -> float:
    """Mean next-token loss over the whole val split, cut into consecutive windows of block_size
    (every token but the last ~block_size predicted once, each from 0..block_size-1 tokens of
    context, as in training). ``loss_of(x, y)`` gives the mean cross-entropy of a batch of windows
    (int64 (n, T) each). The same windows for every model: a check of the 20-batch evaluation,
    which draws 20 x 12 random windows (+-0.016 between draws, measured).

    >>> uniform = lambda x, y: float(np.log(65))  # a model that knows nothing: log(V) per token
    >>> round(full_val_loss(uniform, np.arange(1000) % 65), 6) == round(float(np.log(65)), 6)
    True
    """
    import torch

    val = np.asarray(val, dtype=np.int64)
    n = (len(val) - 1) // block_size
    if n < 1:
        raise ValueError(f"the val split has {len(val)} tokens, too few for one window of {block_size}")
    x = torch.from_numpy(val[: n * block_size].reshape(n, block_size))  # (n, T)
    y = torch.from_numpy(val[1 : n * block_size + 1].reshape(n, block_size))  # (n, T): the next tokens
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            rows = min(batch_size, n - i)
            total += loss_of(x[i : i + rows], y[i : i + rows]) * rows  # windows are equally long
    return total / n


# Run inside the copy, with nanoGPT's own model.py: its checkpoint on the windows of full_val_loss.
SCORE_SCRIPT = """
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[3])
from _nanogpt import full_val_loss
from model import GPT, GPTConfig
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
model = GPT(GPTConfig(**ckpt["model_args"]))
model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
model.eval()
val = np.fromfile(sys.argv[2], dtype=np.uint16)
loss = full_val_loss(lambda x, y: float(model(x, y)[1]), val, int(ckpt["model_args"]["block_size"]))
print(json.dumps({"iter": int(ckpt["iter_num"]), "full_val": loss}))
"""


def score_checkpoint(run: NanoGPTRun, out_dir: str = "out-shakespeare-char", one_core: int | None = None) -> dict:
    """{"iter", "full_val"}: nanoGPT's saved checkpoint (it saves when val improves, so the best
    evaluation's weights) scored by its own model.py on ``full_val_loss``'s windows, in fp32."""
    ckpt = run.work_dir / out_dir / "ckpt.pt"
    if not ckpt.is_file():
        raise NanoGPTError(f"nanoGPT wrote no checkpoint at {ckpt}")
    val = run.work_dir / "data" / "shakespeare_char" / "val.bin"
    env, preexec = _pinned(one_core)
    out = subprocess.run([sys.executable, "-c", SCORE_SCRIPT, str(ckpt), str(val), str(Path(__file__).parent)],
                         cwd=run.work_dir, env=env, preexec_fn=preexec, capture_output=True, text=True)
    if out.returncode != 0:
        raise NanoGPTError(f"scoring nanoGPT's checkpoint failed: {_last_line(out.stderr)}")
    return json.loads(out.stdout.strip().splitlines()[-1])
