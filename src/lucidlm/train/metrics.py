"""What a run reports: one log line per step, ``metrics.jsonl``, a progress bar, the loss plot.

    step 10 | loss 2.3456 | grad-norm 0.91 | lr 1.0e-03 | 118.2 ms | 6.5k tok/s

``metrics.jsonl`` holds one JSON object per line: ``{"step", "split": "train", "loss",
"grad_norm", "lr", "ms", "tok_per_s"}`` per logged step and ``{"step", "split": "val", "loss"}``
per evaluation. It is flushed line by line, so another process can follow it while it grows.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lucidlm.files.plotting import pyplot

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def format_count(x: float) -> str:
    """6543.2 -> '6.5k', 1.25e6 -> '1.2M', 950 -> '950'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def log_line(step: int, loss: float, grad_norm: float, lr: float, ms: float, tok_per_s: float,
             note: str = "") -> str:
    line = (f"step {step} | loss {loss:.4f} | grad-norm {grad_norm:.2f} | lr {lr:.1e} | {ms:.1f} ms | "
            f"{format_count(tok_per_s)} tok/s")
    return f"{line} | {note}" if note else line


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl``. On resume, ``truncate_after(step)`` first
    drops records past the checkpoint's step (the interrupted run logged them; they will be
    logged again), so the file reads as one uninterrupted run."""

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._file = None

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
        os.replace(tmp, self.path)

    def start_fresh(self) -> None:
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl; a torn last line (a killed run) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} at {path.parent}; is it a run directory (train's out_dir)?")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Progress:
    """A tqdm bar with ETA over the run's steps; log lines print above it (``tqdm.write``) so the
    bar is never torn. Without the bar, log lines are plain prints; ``quiet`` (ranks > 0) prints nothing."""

    def __init__(self, total: int, initial: int, bar: bool, quiet: bool = False) -> None:
        self.bar, self.quiet = None, quiet
        if bar and not quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)

    def update(self, n: int = 1, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def write(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw train and val loss against step from ``run_dir/metrics.jsonl`` into ``loss.png``."""
    plt = pyplot("loss plots")
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / METRICS_FILE)
    train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train" and _finite(r.get("loss"))]
    val = [(r["step"], r["loss"]) for r in records if r.get("split") == "val" and _finite(r.get("loss"))]
    if not train and not val:
        raise ValueError(f"{run_dir / METRICS_FILE} has no finite loss values to plot")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), label="val", marker="o", markersize=3, linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(out) if out is not None else run_dir / PLOT_FILE
    fig.savefig(path)
    plt.close(fig)
    return path


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
