"""The training loop: one flat function, read top to bottom.

    result = train(TrainConfig(data="data/shakespeare-char", model={"n_layer": 4, "n_embd": 128}))

One optimizer step, in nanoGPT's order:
  1. set this step's learning rate (a pure function of the step: ``schedule.lr_at``);
  2. for each of grad_accum micro-batches: draw (x, y), forward under autocast, loss / grad_accum,
     backward (DDP syncs gradients only on the last micro-batch);
  3. clip the global gradient norm; check the loss is finite;
  4. optimizer step, zero the gradients;
  5. log; every eval_interval steps evaluate on val and save last/ (and best/); with keep_every, keep
     the model alone every keep_every steps in steps/ (to watch it learn).

Before the loop: ``model_for_run`` finds the model (from scratch, init_from, resume, or the
caller's), ``_check_run`` refuses what cannot work, and a ``state.RunState`` gathers what a
checkpoint saves; the loop advances its ``step`` and ``best_val`` and calls its ``save``.

Hooks for fine-tuning: ``train(cfg, model=..., tokenizer=..., get_batch=...)`` takes a model built
elsewhere (only its ``requires_grad`` parameters are optimised) and any batch source
``get_batch(split, n, generator) -> (x, y)``, int64 (n, T) each, where y = -100 marks positions
that carry no loss. Notation: B batch, T time (block_size), V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lucidlm.train import distributed as dist_
from lucidlm.train import state as state_
from lucidlm.train.config import TrainConfig
from lucidlm.train.metrics import MetricsLog, Progress, log_line
from lucidlm.train.optim import build_optimizer
from lucidlm.train.schedule import lr_for

GetBatch = Callable[[str, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
MAX_SKIPPED_IN_A_ROW = 20  # nan_policy="skip": this many non-finite steps in a row is divergence


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite."""


@dataclass
class TrainResult:
    step: int  # the last completed step
    stopped: str  # "done" | "signal" | "stop_at_step" | "stop_when"
    losses: dict[int, float] = field(default_factory=dict)  # step -> train loss (mean over the global batch)
    val_losses: dict[int, float] = field(default_factory=dict)
    best_val_loss: float = math.inf
    skipped_steps: list[int] = field(default_factory=list)
    checkpoint: Path | None = None  # last/ as written at the end
    is_main: bool = True  # rank 0 (the one that logs and writes) of a distributed run


def train(
    cfg: TrainConfig,
    *,
    model: nn.Module | None = None,
    tokenizer=None,
    get_batch: GetBatch | None = None,
    resume: bool = False,
    overwrite: bool = False,
    handle_signals: bool = False,
    stop_when: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train per ``cfg``; returns the losses and how the run ended. ``resume`` continues from
    ``out_dir/last``; ``overwrite`` allows a new run over an existing one; ``handle_signals``
    turns SIGINT/SIGTERM into "finish this step, save, return" (the CLI sets it). ``stop_when(step,
    val_loss)`` is asked after each evaluation; True ends the run there (a time-to-loss benchmark)."""
    if get_batch is None and cfg.resolved_task == "chat":
        raise ValueError(f"task='chat' ({cfg.data}): chat data is read by lucidlm.train.instruct.finetune(cfg), "
                         "which renders the chats with the model's template; call it, or set task='lm' for a "
                         "token dataset directory")
    lora = getattr(model, "lora_config", None)  # a model given with adapters (nn.lora.apply_lora)
    if lora is not None and not cfg.lora:
        # recorded in train_config.json, which load_model needs to rebuild the adapters it saves
        cfg = cfg.replace(lora=dataclasses.asdict(lora))
    info, device = dist_.setup(cfg.distributed, cfg.device)
    try:
        result = _train(cfg, info=info, device=device, model=model, tokenizer=tokenizer, get_batch=get_batch,
                        resume=resume, overwrite=overwrite, handle_signals=handle_signals, stop_when=stop_when)
    except BaseException:
        dist_.cleanup(info, clean=False)
        raise
    dist_.cleanup(info)
    return result


def _train(cfg: TrainConfig, *, info: dist_.DistInfo, device: torch.device, model: nn.Module | None, tokenizer,
           get_batch: GetBatch | None, resume: bool, overwrite: bool, handle_signals: bool,
           stop_when: Callable[[int, float], bool] | None) -> TrainResult:
    out_dir = Path(cfg.out_dir)
    main = info.is_main
    say = print if main else (lambda *a, **k: None)

    # -- 1. everything that can fail on bad input, before anything is written -----------------
    resume_from = state_.check_out_dir(out_dir, resume=resume, overwrite=overwrite)
    dataset = None
    if get_batch is None:
        get_batch, dataset = _token_batches(cfg)
        tokenizer = dataset.tokenizer() if tokenizer is None else tokenizer
    train_state = state_.load_train_state(resume_from) if resume_from is not None else None
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank, and run to run
    model, loaded_tokenizer = model_for_run(cfg, model=model, dataset=dataset, resume_from=resume_from,
                                            train_state=train_state)
    tokenizer = loaded_tokenizer if tokenizer is None else tokenizer
    _check_run(cfg, model, dataset=dataset, loaded_tokenizer=loaded_tokenizer, resume_from=resume_from,
               train_state=train_state)

    # -- 2. the machine: device, precision, optimizer, RNG ------------------------------------
    model.to(device).train()
    autocast_dtype = _autocast_dtype(cfg.precision, device)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext())
    # fp16 has a narrow exponent range: scale the loss up so small gradients don't flush to 0
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    raw_model = model  # saved and evaluated: no compile / DDP wrapper around it (FSDP shards it in place)
    if info.mode == "fsdp":
        model = dist_.wrap(model, info, device)  # before the optimizer: FSDP replaces the parameters
    if cfg.compile:
        model = torch.compile(model)
    if info.mode == "ddp":
        model = dist_.wrap(model, info, device)
    optimizer, fused = build_optimizer(raw_model, cfg, device)
    data_gen = torch.Generator().manual_seed(cfg.seed)  # the same draws on every rank (see distributed.py)
    torch.manual_seed(cfg.seed + info.rank)  # dropout masks differ per rank
    run = state_.RunState(cfg=cfg, info=info, out_dir=out_dir, model=raw_model, tokenizer=tokenizer,
                          optimizer=optimizer, scaler=scaler, data_gen=data_gen)
    if train_state is not None:
        run.restore(train_state, resume_from)

    n_params = sum(p.numel() for p in raw_model.parameters())
    n_train = sum(p.numel() for p in raw_model.parameters() if p.requires_grad)
    rows = info.world_size * cfg.batch_size  # the global micro-batch
    tokens_per_step = rows * cfg.block_size * cfg.grad_accum
    say(f"model: {n_params / 1e6:.2f}M parameters ({n_train / 1e6:.2f}M trainable); device {device}, "
        f"precision {autocast_dtype or 'fp32'}, fused AdamW {'on' if fused else 'off'}, compile {cfg.compile}, "
        f"{info.world_size} process(es) ({info.mode})")
    say(f"batch: {info.world_size} x {cfg.batch_size} x {cfg.grad_accum} sequences x {cfg.block_size} tokens = "
        f"{tokens_per_step:,} tokens per step; {'resuming at step ' + str(run.step) if run.step else 'starting'}")

    metrics = MetricsLog(out_dir, enabled=main)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.step:
            metrics.truncate_after(run.step)
        else:
            metrics.start_fresh()

    def micro_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = get_batch(split, rows, generator)  # (world * B, T): this rank keeps every world-th row
        x, y = x[info.rank::info.world_size], y[info.rank::info.world_size]  # (B, T)
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    # -- 3. signals: finish the step, save, stop -----------------------------------------------
    progress = Progress(total=cfg.max_steps, initial=run.step, bar=main and cfg.progress, quiet=not main)
    stop_requested = []
    previous_handlers = {}
    if handle_signals:
        def on_signal(signum, frame):
            stop_requested.append(signum)
            progress.write(f"{signal.Signals(signum).name}: finishing step {run.step}, then saving "
                           "(send it again to quit without saving)")
            signal.signal(signum, previous_handlers.get(signum, signal.SIG_DFL))

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[sig] = signal.signal(sig, on_signal)

    # -- 4. the loop ---------------------------------------------------------------------------
    result = TrainResult(step=run.step, stopped="done", best_val_loss=run.best_val, is_main=main)
    last_step = min(cfg.max_steps, cfg.stop_at_step) if cfg.stop_at_step else cfg.max_steps
    skipped_in_a_row, saved_at = 0, run.step
    try:
        if cfg.keep_every and run.step == 0:
            run.keep()  # the untrained model: where watching it learn starts
        while run.step < last_step:
            t0 = time.perf_counter()
            run.step += 1
            step = run.step  # this iteration's step, as the log and the checkpoints name it
            lr = lr_for(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's groups run at their own peak lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                x, y = micro_batch("train", data_gen)
                with dist_.no_sync(model, skip=micro < cfg.grad_accum - 1):
                    with autocast:
                        logits = model(x)  # (B, T, V)
                    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
                    # The loss is a mean over each micro-batch's tokens, and backward() *adds* into
                    # .grad; dividing by grad_accum makes the summed gradient the gradient of the
                    # mean over the whole batch, as one big batch would give (llm.c's comment).
                    scaler.scale(loss / cfg.grad_accum).backward()
                loss_sum += loss.detach()
            scaler.unscale_(optimizer)  # clip and report the true gradient norm, not the fp16-scaled one
            # max_norm=inf: computes the global norm for the log line without clipping
            grad_norm = nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip or math.inf)
            loss_value = float(dist_.mean(loss_sum / cfg.grad_accum, info))
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            # under fp16 an overflowing gradient is routine: the scaler skips that update and
            # lowers its scale; only a non-finite loss means the run diverged
            finite = math.isfinite(loss_value) and (scaler.is_enabled() or math.isfinite(grad_norm))
            if not finite:
                what = f"loss is {loss_value}" if not math.isfinite(loss_value) else f"gradient norm is {grad_norm}"
                if cfg.nan_policy == "stop":
                    raise TrainingDiverged(
                        f"step {step}: {what}; training stopped without saving (checkpoints in {out_dir} "
                        f"are from before it). Lower lr (now {lr:.1e} at this step), keep grad_clip on, or "
                        "set nan_policy='skip' to skip such batches")
                skipped_in_a_row += 1
                result.skipped_steps.append(step)
                optimizer.zero_grad(set_to_none=True)
                progress.write(f"step {step} | {what}: batch skipped (nan_policy='skip')")
                if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    raise TrainingDiverged(f"step {step}: {skipped_in_a_row} non-finite steps in a row; the run has "
                                           f"diverged. Lower lr (now {lr:.1e}) or resume from an earlier checkpoint")
            else:
                skipped_in_a_row = 0
                scaler.step(optimizer)  # under fp16, skips the update when the gradients overflowed
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                result.losses[step] = loss_value
            if device.type == "cuda":
                torch.cuda.synchronize()  # honest timing: wait for the GPU to finish the step
            ms = (time.perf_counter() - t0) * 1000
            result.step = step
            if finite and (step % cfg.log_interval == 0 or step == last_step):
                tok_per_s = tokens_per_step / (ms / 1000)
                progress.write(log_line(step, loss_value, grad_norm, lr, ms, tok_per_s))
                metrics.write({"step": step, "split": "train", "loss": loss_value, "grad_norm": grad_norm,
                               "lr": lr, "ms": round(ms, 3), "tok_per_s": round(tok_per_s, 1)})
            progress.update(1, loss=f"{loss_value:.4f}")

            # -- evaluation and checkpoints ---------------------------------------------------
            if cfg.keep_every and (step % cfg.keep_every == 0 or step == cfg.max_steps):
                run.keep()
            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                val = evaluate(raw_model, micro_batch, cfg, info, autocast)
                result.val_losses[step] = val
                metrics.write({"step": step, "split": "val", "loss": val})
                improved = val < run.best_val
                run.best_val = min(run.best_val, val)
                progress.write(f"step {step} | val loss {val:.4f}{' (best)' if improved else ''}")
                if improved and cfg.save_best:
                    run.save(state_.BEST)
                result.checkpoint, saved_at = run.save(state_.LAST), step
                if stop_when is not None and stop_when(step, val):
                    result.stopped = "stop_when"
                    break
            if dist_.any_rank(bool(stop_requested), info, device):
                result.stopped = "signal"
                break
        if result.stopped == "done" and run.step < cfg.max_steps:
            result.stopped = "stop_at_step"
        if saved_at != run.step:
            result.checkpoint = run.save(state_.LAST)  # the final state, unless this step already saved it
    finally:
        progress.close()
        metrics.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    result.best_val_loss = run.best_val
    if result.stopped != "done":
        say(f"stopped after step {run.step} ({result.stopped}); checkpoint {result.checkpoint}; "
            f"continue with --resume")
    return result


def model_for_run(cfg: TrainConfig, *, model: nn.Module | None = None, dataset=None, resume_from: Path | None = None,
                  train_state: dict | None = None) -> tuple[nn.Module, object]:
    """The model a run trains, and the tokenizer that came with it (None unless loaded by init_from).

    Four sources, the first that applies:
      resume        ``resume_from`` (out_dir/last): the saved model, after checking that the config
                    still asks for it; a caller's ``model`` gets the saved weights loaded into it
      the caller's  ``model`` built elsewhere (fine-tuning, LoRA): trained as it is
      scratch       ``cfg.model_config`` with the dataset's vocab_size, freshly initialised (seed first)
      init_from     ``lucidlm.load_model(cfg.init_from)``: a checkpoint, HF directory, GGUF file or asset
    """
    wanted_cfg = None  # the architecture a from-scratch run asks for (resume checks it did not change)
    if cfg.init_from == "scratch" and model is None:
        wanted_cfg = cfg.model_config(dataset.vocab_size if dataset is not None else None)
    if resume_from is not None:
        if model is None:
            return state_.load_model_for_resume(resume_from, train_state, wanted_cfg, cfg.init_from), None
        from lucidlm.loading.checkpoint import load_state_checked, read_safetensors

        load_state_checked(model, read_safetensors(resume_from / "model.safetensors")[0], str(resume_from))
        return model, None
    if model is not None:
        return model, None
    if wanted_cfg is not None:
        from lucidlm.models.transformer import build_model

        return build_model(wanted_cfg), None
    from lucidlm.loading.load import load_model

    return load_model(cfg.init_from)


def _check_run(cfg: TrainConfig, model: nn.Module, *, dataset, loaded_tokenizer, resume_from: Path | None,
               train_state: dict | None) -> None:
    """Refuse a model that does not fit the data or the config, and a resume with nothing left to do."""
    if dataset is not None and loaded_tokenizer is not None:
        dataset.check_tokenizer(loaded_tokenizer)  # GPT-2 fine-tuned on another tokenizer's ids learns noise
    if dataset is not None:
        dataset.check_vocab(model.cfg.vocab_size)
    if cfg.block_size > model.cfg.max_seq_len:
        raise ValueError(f"block_size={cfg.block_size} exceeds the model's max_seq_len={model.cfg.max_seq_len}; "
                         "lower block_size or raise model.max_seq_len")
    if train_state is not None:
        done = int(train_state["step"])
        for name in ("max_steps", "stop_at_step"):
            if 0 < getattr(cfg, name) <= done:
                raise ValueError(f"{resume_from} is at step {done} and {name}={getattr(cfg, name)}: nothing to "
                                 f"train; raise {name} to continue")


@torch.no_grad()
def evaluate(model: nn.Module, micro_batch, cfg: TrainConfig, info, autocast) -> float:
    """Mean val loss over eval_iters batches. The val generator is re-seeded each time, so every
    evaluation scores the same windows: val curves compare checkpoints, not batches, and the
    training RNG is untouched."""
    model.eval()
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    total = 0.0
    for _ in range(cfg.eval_iters):
        x, y = micro_batch("val", generator)
        with autocast:
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)
        total += float(dist_.mean(loss.detach(), info))
    model.train()
    return total / cfg.eval_iters


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. Weights and optimizer state stay fp32 either way."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None  # autocast on CPU is slower than fp32 for small models
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("precision='fp16' needs a GPU (CPU autocast supports bf16); use 'bf16' or 'fp32'")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _token_batches(cfg: TrainConfig):
    """(get_batch, the train split's TokenDataset) for a prepared token dataset directory."""
    if not cfg.data:
        raise ValueError("no training data: set data = 'DATASET_DIR' (a directory made by `lucidlm data prepare`)")
    from lucidlm.data import TokenDataset

    splits = {split: TokenDataset(cfg.data, split=split) for split in ("train", "val")}
    for split, ds in splits.items():
        if ds.row_length is not None:  # one sequence per row (data/rows.py): a row must fit block_size
            ds.check_rows(cfg.block_size)
        elif len(ds) <= cfg.block_size:
            raise ValueError(f"{cfg.data}: the {split} split has {len(ds)} tokens, too few for block_size="
                             f"{cfg.block_size}; lower block_size or prepare more data")

    def get_batch(split: str, n: int, generator: torch.Generator):
        return splits[split].get_batch(n, cfg.block_size, generator)

    return get_batch, splits["train"]
