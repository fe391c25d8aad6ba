"""Training the original Transformer (encoder-decoder) on a synthetic task, end to end.

The pieces of Vaswani et al. 2017, section 5, at a size a laptop trains in minutes:
- Adam with beta2 = 0.98, eps = 1e-9, and the inverse-square-root ("Noam") schedule: linear
  warmup, then lr ~ 1/sqrt(step) (``train/schedule.py: inverse_sqrt_lr``).
- label smoothing 0.1 (``label_smoothed_loss``).
- padding masks: the encoder never attends to source padding, the decoder neither to target
  padding nor (cross-attention) to source padding; padded target positions carry no loss.
- one vocabulary for source and target, so one embedding matrix serves the encoder, the decoder
  and (tied) the output layer.
- post-LN (the paper: x = norm(x + f(x))) or pre-LN (x = x + f(norm(x)), GPT-2 and later);
  ``norm`` picks. Post-LN needs the warmup more: its gradients near the output are larger at
  initialisation (Xiong et al. 2020), so it tolerates a smaller learning rate.

Checkpoint averaging: the paper evaluates the average of its last 5 checkpoints (section 6.1): the
weights wander around a good point at a high learning rate, and their average sits nearer it.
``ema`` is the running version (Polyak averaging): after every step, avg = d * avg + (1 - d) * w,
with d = min(ema, (1 + step) / (10 + step)) so the first steps do not drag the random
initialisation along. Validation, the test score and the checkpoint then use the average.

One addition the paper did not need: ``position_shift``. Absolute positions that training never
reached (17..20 when training strings have 1..16 characters) have untrained meaning, so a model
fails on longer inputs. Shifting every example's positions by a random offset k in
0..position_shift (the same k for its source and its target, so their alignment is unchanged)
trains every position up to 16 + position_shift and makes only differences of positions
informative (SHAPE, Kiyono et al. 2021). At inference the positions start at 0 as usual.

A run trains until the validation set (held-out distribution, never the test examples) is decoded
exactly right at ``stop_at``, or the time or step budget ends; then it reports exact match on the
test set (and on the task's "extra" set: addition with one more digit) and saves the checkpoint:

    out_dir/best/   config.json, model.safetensors (``loading/checkpoint.py``), seq2seq.json
    out_dir/metrics.jsonl   one record per logged step and per evaluation (``lucidlm plot``)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lucidlm.data.seq2seq_tasks import (
    BOS,
    EOS,
    PAD,
    Example,
    Task,
    TrainSampler,
    Vocab,
    encode_batch,
    get_task,
    make_splits,
    task_from_dict,
)
from lucidlm.files.jsonfile import read_json, write_json_atomic
from lucidlm.generate.seq2seq_decode import beam_search, encode_sources, greedy_decode
from lucidlm.loading.checkpoint import load_checkpoint, save_checkpoint
from lucidlm.models.config import ModelConfig
from lucidlm.models.transformer import build_model
from lucidlm.train.metrics import MetricsLog, log_line
from lucidlm.train.schedule import inverse_sqrt_lr

SEQ2SEQ_FILE = "seq2seq.json"
SEQ2SEQ_FORMAT = "lucidlm-seq2seq"


@dataclass(frozen=True)
class Seq2SeqConfig:
    task: str = "reverse"  # a name in lucidlm.data.seq2seq_tasks.TASKS
    task_options: dict = field(default_factory=dict)  # the task's settings, e.g. {"digits": 3}; {}: defaults
    # the model: n_layer encoder blocks and n_layer decoder blocks
    n_layer: int = 2
    n_embd: int = 64  # d_model (the paper: 512); 64 learns every task here, 4x cheaper than 128
    n_head: int = 4
    ffn: int = 256  # the MLP's hidden width (the paper: 4 * n_embd)
    norm: str = "pre"  # pre: x + f(norm(x)); post: norm(x + f(x)) (the paper)
    dropout: float = 0.0  # the tasks have endless fresh data: nothing to regularise against
    position_shift: int = 0  # train positions shifted by a random 0..position_shift (see the docstring)
    init: str = "xavier"  # xavier: Glorot uniform matrices (the Annotated Transformer); gpt2: N(0, 0.02)
    # the optimisation
    batch_size: int = 64
    lr: float = 3e-3  # the schedule's peak (at warmup_steps); the paper's factor = lr * sqrt(n_embd * warmup)
    warmup_steps: int = 200
    label_smoothing: float = 0.1
    grad_clip: float = 1.0  # clip the gradient norm to this; 0: off
    ema: float = 0.995  # > 0: evaluate and save an exponential moving average of the weights (see below)
    # the budget: stop at whichever comes first
    minutes: float = 10.0
    max_steps: int = 0  # 0: no step limit
    eval_every: int = 200  # steps between validation decodes
    stop_at: float = 1.0  # validation exact match that ends training (0.995 stopped reverse at 98.3% test)
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        self.make_task()  # an unknown name or setting raises, listing the tasks
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm={self.norm!r}: use 'pre' or 'post'")
        if self.init not in ("xavier", "gpt2"):
            raise ValueError(f"init={self.init!r}: use 'xavier' or 'gpt2'")
        for name in ("n_layer", "n_embd", "n_head", "ffn", "batch_size", "warmup_steps", "eval_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        for name, lo, hi in (("dropout", 0, 1), ("label_smoothing", 0, 1), ("stop_at", 0, 1.0001), ("ema", 0, 1)):
            if not lo <= getattr(self, name) < hi:
                raise ValueError(f"{name} must be in [{lo}, {hi:g}), got {getattr(self, name)!r}")
        for name in ("lr", "minutes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("grad_clip", "max_steps", "position_shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def make_task(self) -> Task:
        return get_task(self.task, **self.task_options)

    def model_config(self, task: Task) -> ModelConfig:
        src_len, tgt_len = task.max_lengths()
        return ModelConfig(
            name=f"seq2seq-{task.name}", arch="encoder-decoder", vocab_size=task.vocab().size,
            n_layer=self.n_layer, n_encoder_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
            intermediate_size=self.ffn, max_seq_len=max(src_len, tgt_len) + 2 + self.position_shift,
            positions="sinusoidal", norm_placement=self.norm, final_norm=self.norm == "pre",
            activation="relu", embedding_scale=True, dropout=self.dropout,
            pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# What each task needs beyond Seq2SeqConfig's defaults: the position shift where held-out inputs
# are longer than training ones; GPT-2's smaller initialisation where it measured faster (copy:
# 400 steps against 800 with Xavier; reverse: 1,600 against 3,600; addition went the other way,
# 2,000 against 3,400). Measured with these settings on one CPU thread of a busy 2-core machine,
# steps until validation is all right, and held-out test exact match:
#   copy 400, 99.7%    reverse 1,600, 99.7%    sort 1,000, 99.2%    addition 2,000, 99.7%
#   date 400, 99.8%    roman-to-int 600, 99.75%    int-to-roman 400, 99.75%
TASK_CONFIGS: dict[str, dict] = {
    "copy": {"position_shift": 16, "init": "gpt2"},
    "reverse": {"position_shift": 16, "init": "gpt2"},
    "sort": {"position_shift": 16},
    "addition": {"position_shift": 8},  # the 6-digit "extra" inputs reach positions 12 and 13
}


def config_for(task: str, **overrides) -> Seq2SeqConfig:
    """The recommended config of ``task`` (``TASK_CONFIGS``), with ``overrides`` on top."""
    get_task(task)  # an unknown task raises here, listing the tasks
    return Seq2SeqConfig(task=task, **{**TASK_CONFIGS.get(task, {}), **overrides})


def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy against a smoothed target (Szegedy et al. 2016; Vaswani et al. 5.4):

        q(k) = (1 - eps) * [k = y] + eps / N    over the N tokens that can be a target,
        loss = -sum_k q(k) log p(k),            averaged over the non-<pad> targets.

    <pad> and <bos> are never targets, so they get no share of eps (as in the Annotated
    Transformer); everything else, <eos> included, does. logits (B, T, V), target (B, T)."""
    V = logits.shape[-1]
    logp = torch.log_softmax(logits.float(), dim=-1).view(-1, V)  # (B*T, V)
    y = target.reshape(-1)  # (B*T,)
    keep = y != PAD
    logp, y = logp[keep], y[keep]  # (N_tokens, V)
    nll = -logp.gather(1, y[:, None]).squeeze(1)  # -log p(y)
    can_be_target = torch.ones(V, dtype=torch.bool, device=logits.device)
    can_be_target[[PAD, BOS]] = False
    uniform = -logp[:, can_be_target].mean(dim=1)  # -(1/N) sum_k log p(k)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


@torch.no_grad()
def exact_match(model, vocab: Vocab, examples: Sequence[Example], *, beam: int = 1, alpha: float = 0.6,
                batch_size: int = 256) -> tuple[float, list[tuple[Example, str]]]:
    """(fraction decoded exactly right, the (example, wrong output) pairs)."""
    if not examples:
        return float("nan"), []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    wrong = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        src, src_mask = encode_sources([e.source for e in chunk], vocab, device)
        max_len = min(model.cfg.max_seq_len, max(len(e.target) for e in chunk) + 2)
        if beam == 1:
            outs = greedy_decode(model, src, src_mask, max_len=max_len)
        else:
            outs = [h[0].ids if h else [] for h in beam_search(model, src, src_mask, beam=beam, alpha=alpha,
                                                                max_len=max_len)]
        wrong += [(e, vocab.decode(o)) for e, o in zip(chunk, outs) if vocab.decode(o) != e.target]
    model.train(was_training)
    return 1 - len(wrong) / len(examples), wrong


@dataclass
class Seq2SeqResult:
    step: int
    seconds: float  # wall-clock time of training, validation decodes included
    stopped: str  # "target" (validation reached stop_at), "time", "steps" or "diverged"
    valid_exact: float  # at the best validation point (the saved model)
    test_exact: float
    extra_exact: float | None  # the task's finding beyond the goal, when it has one
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)  # one record per validation


def xavier_init(model: torch.nn.Module) -> None:
    """Glorot & Bengio (2010) uniform initialisation of every matrix, U(-a, a) with
    a = sqrt(6 / (fan_in + fan_out)), as the Annotated Transformer does; biases and norms keep theirs.

    Why it matters here: for n_embd = 64 it draws weights with std ~0.125, six times GPT-2's 0.02.
    Learning to attend by position starts from q . k, a product of two weight matrices, whose
    gradient is proportional to the other matrix: from 0.02 the first hundreds of steps barely
    move it. The shared embedding (V, C) gets std ~0.17, times sqrt(C) = 8 (embedding_scale):
    tokens then speak as loudly as the sinusoidal positions (amplitude 1), as in the paper."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                torch.nn.init.xavier_uniform_(p)


def _shifted_positions(B: int, T: int, offsets: torch.Tensor) -> torch.Tensor:
    """(B, T) positions offset[b] + 0 .. T-1 (padding positions get numbers too; nothing reads them)."""
    return offsets[:, None] + torch.arange(T)[None, :]


def train_seq2seq(cfg: Seq2SeqConfig, out_dir: str | os.PathLike | None = None, *,
                  log: Callable[[str], None] | None = print) -> Seq2SeqResult:
    """Train a fresh model on ``cfg.task``; see the module docstring."""
    log = log or (lambda _line: None)
    torch.manual_seed(cfg.seed)
    task = cfg.make_task()
    vocab = task.vocab()
    splits = make_splits(task)  # fixed held-out sets: the same for every run of this task
    heldout = splits.sources()
    sampler = TrainSampler(task, heldout, seed=cfg.seed)
    model = build_model(cfg.model_config(task))  # GPT-2's N(0, 0.02) initialisation
    if cfg.init == "xavier":
        xavier_init(model)
    model.train()
    averaged = copy.deepcopy(model).eval() if cfg.ema else None  # what is evaluated and saved, if on
    evaluated = averaged if averaged is not None else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9)
    shift_rng = torch.Generator().manual_seed(cfg.seed)
    run_dir = Path(out_dir) if out_dir is not None else None
    metrics = MetricsLog(run_dir or ".", enabled=run_dir is not None)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics.start_fresh()
    best_acc, best_state, best_step, history = -1.0, None, 0, []
    stopped, step, start = "time", 0, time.perf_counter()
    while True:
        step += 1
        t0 = time.perf_counter()
        lr = inverse_sqrt_lr(step, lr=cfg.lr, warmup_steps=cfg.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        b = encode_batch(sampler.batch(cfg.batch_size), vocab)
        src_pos = tgt_pos = None
        if cfg.position_shift:
            offsets = torch.randint(0, cfg.position_shift + 1, (b.src.shape[0],), generator=shift_rng)  # (B,)
            src_pos = _shifted_positions(*b.src.shape, offsets)  # (B, S)
            tgt_pos = _shifted_positions(*b.tgt_in.shape, offsets)  # (B, T)
        logits = model(b.src, b.tgt_in, src_mask=b.src_mask, tgt_mask=b.tgt_mask, src_positions=src_pos,
                       tgt_positions=tgt_pos)  # (B, T, V)
        loss = label_smoothed_loss(logits, b.tgt_out, cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else math.inf)
        opt.step()
        if averaged is not None:
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for avg, w in zip(averaged.parameters(), model.parameters()):
                    avg.lerp_(w, 1 - decay)  # avg + (1 - decay) * (w - avg)
        loss_value = loss.item()
        if step % cfg.log_every == 0 or step == 1:
            ms = (time.perf_counter() - t0) * 1000
            tokens = int(b.src_mask.sum() + b.tgt_mask.sum())
            log(log_line(step, loss_value, float(grad_norm), lr, ms, tokens / (ms / 1000)))
            metrics.write({"step": step, "split": "train", "loss": loss_value, "grad_norm": float(grad_norm),
                           "lr": lr, "ms": ms})
        if not math.isfinite(loss_value):
            stopped = "diverged"
            break
        elapsed = time.perf_counter() - start
        out_of_time = elapsed > cfg.minutes * 60
        out_of_steps = bool(cfg.max_steps) and step >= cfg.max_steps
        if step % cfg.eval_every == 0 or out_of_time or out_of_steps:
            acc, _ = exact_match(evaluated, vocab, splits.valid)
            # fresh examples of the training distribution: did it learn the task where it was taught?
            seen_acc, _ = exact_match(evaluated, vocab, TrainSampler(task, heldout, seed=-step).batch(100))
            record = {"step": step, "split": "val", "exact_match": acc, "train_exact_match": seen_acc,
                      "seconds": round(elapsed, 1)}
            history.append(record)
            metrics.write(record)
            log(f"step {step} | valid exact match {acc:.4f} | train-distribution {seen_acc:.2f} | "
                f"{elapsed / 60:.1f} min")
            if acc > best_acc:
                best_acc, best_step = acc, step
                best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
            if acc >= cfg.stop_at:
                stopped = "target"
                break
        if out_of_time or out_of_steps:
            stopped = "time" if out_of_time else "steps"
            break
    seconds = time.perf_counter() - start
    metrics.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    test_acc, _ = exact_match(model, vocab, splits.test)
    extra_acc = exact_match(model, vocab, splits.extra)[0] if splits.extra else None
    log(f"{stopped} after {step} steps, {seconds / 60:.2f} min: test exact match {test_acc:.4f} (model of step "
        f"{best_step}, valid {best_acc:.4f})" + (f"; extra {extra_acc:.4f}" if extra_acc is not None else ""))
    result = Seq2SeqResult(step, seconds, stopped, best_acc, test_acc, extra_acc, None, history)
    if run_dir is not None:
        result.checkpoint = save_seq2seq(model, run_dir / "best", task, cfg, result)
    return result


def save_seq2seq(model, path: str | os.PathLike, task: Task, cfg: Seq2SeqConfig | None = None,
                 result: Seq2SeqResult | None = None) -> Path:
    """A lucidlm checkpoint plus ``seq2seq.json`` (the task, its vocabulary, the training config
    and results), so that ``load_seq2seq`` rebuilds everything needed to decode and evaluate."""
    info = {"format": SEQ2SEQ_FORMAT, "version": 1, "task": task.to_dict(), "vocab": task.vocab().chars,
            "train_config": cfg.to_dict() if cfg else None,
            "result": {k: v for k, v in dataclasses.asdict(result).items() if k not in ("checkpoint", "history")}
            if result else None}
    return save_checkpoint(model, path, extra=lambda folder: write_json_atomic(folder / SEQ2SEQ_FILE, info))


def load_seq2seq(path: str | os.PathLike) -> tuple[torch.nn.Module, Task, Vocab, dict]:
    """(model in eval mode, task, vocab, seq2seq.json's contents) from a checkpoint directory
    or from a run directory that holds ``best/``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not (path / SEQ2SEQ_FILE).is_file() and (path / "best" / SEQ2SEQ_FILE).is_file():
        path = path / "best"
    if not (path / SEQ2SEQ_FILE).is_file():
        raise ValueError(f"{path} is not a seq2seq checkpoint (no {SEQ2SEQ_FILE}); train one with "
                         "`lucidlm seq2seq train --task NAME --out DIR`")
    info = read_json(path / SEQ2SEQ_FILE, "seq2seq info")
    if not isinstance(info, dict) or info.get("format") != SEQ2SEQ_FORMAT:
        raise ValueError(f"{path / SEQ2SEQ_FILE} is not a {SEQ2SEQ_FORMAT} file")
    task = task_from_dict(info["task"])
    vocab = Vocab(info["vocab"])
    model, _ = load_checkpoint(path, tokenizer=False)
    if model.cfg.arch != "encoder-decoder" or model.cfg.vocab_size != vocab.size:
        raise ValueError(f"{path}: the model ({model.cfg.arch}, vocab {model.cfg.vocab_size}) does not match "
                         f"{SEQ2SEQ_FILE} (encoder-decoder, vocab {vocab.size})")
    return model, task, vocab, info

