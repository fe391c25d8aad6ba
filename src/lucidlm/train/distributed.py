"""Data-parallel training across processes, launched with ``torchrun``.

    torchrun --standalone --nproc_per_node=2 -m lucidlm.cli train --config run.toml

torchrun starts one process per device and tells each its RANK (0..WORLD_SIZE-1) and LOCAL_RANK
(its device on this machine) through environment variables. Every process holds a copy of the
model (DDP) or a shard of it (FSDP), reads different rows of the batch, and the gradients are
averaged across processes before each optimizer step, so all copies stay identical.

The batch: every rank draws the same global micro-batch of world_size * batch_size windows from
a generator seeded identically, and rank r keeps rows r, r + world_size, ... So one optimizer step
sees world_size * batch_size * grad_accum sequences, exactly the windows a single process with
batch_size * world_size would see: the loss curve does not depend on how many processes share
the work (tests/test_train_distributed.py), and a run can resume on a different number of them.
Drawing the whole global batch on every rank costs a few random integers, not data reads.

Only rank 0 logs and writes files; a stop request (SIGINT/SIGTERM on any rank) is agreed on with
an all-reduce, so every rank finishes the same step and exits together.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    mode: str = "none"  # none | ddp | fsdp

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> the local rank's GPU when there is one, else CPU; 'cuda' -> this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA GPU is available; use device='cpu' or 'auto'")
    return device


def setup(mode: str, device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (and ``mode`` allows); returns the rank
    information and this process's device. NCCL between GPUs, gloo between CPU processes."""
    if mode == "none" or not launched_by_torchrun():
        return DistInfo(), resolve_device(device_name)
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = resolve_device(device_name, local)
    if world == 1:
        return DistInfo(rank, world, local, "none"), device
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank, world, local, "fsdp" if mode == "fsdp" else "ddp"), device


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """The model DDP (or FSDP) trains; the caller keeps the unwrapped one for saving and eval."""
    if info.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if info.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # Shard each block, then the rest (embeddings, head): a block's full weights exist only
        # while it runs. Tied embedding/head weights stay in the root's shard together.
        for layer in getattr(model, "layers", []):
            fully_shard(layer)
        fully_shard(model)
        return model
    return model


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo) -> dict:
    """The optimizer's state keyed by parameter *name* (not position), whole even when FSDP shards
    it (then a collective: every rank calls it; rank 0 gets the state). Keyed by name, one
    checkpoint resumes under none, DDP or FSDP alike."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options(info, offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, info: DistInfo) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=_full_options(info, offload=False))


def full_model(model: nn.Module, info: DistInfo) -> nn.Module | None:
    """A model to save: ``model`` itself, or under FSDP a CPU copy on rank 0 with the gathered
    full weights (None on other ranks). A collective under FSDP."""
    if info.mode != "fsdp":
        return model
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from lucidlm.loading.checkpoint import load_state_checked
    from lucidlm.models.transformer import build_model

    state = get_model_state_dict(model, options=_full_options(info, offload=True))
    if not info.is_main:
        return None
    return load_state_checked(build_model(model.cfg), state, "FSDP full state")


def _full_options(info: DistInfo, offload: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    if info.mode != "fsdp":
        return None
    return StateDictOptions(full_state_dict=True, cpu_offload=offload)


def no_sync(model: nn.Module, skip: bool):
    """Inside it, DDP's backward does not all-reduce: on every micro-step but the last of a
    gradient-accumulation step, gradients only need to add up locally."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    if skip and hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        return _resync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _resync(model):
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``value`` over all ranks (itself when there is one)."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (all ranks get the same answer)."""
    if not info.enabled:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def cleanup(info: DistInfo, *, clean: bool = True) -> None:
    """Leave the process group; ``clean``: every rank finished normally (else no barrier, which a
    rank that failed alone would wait on forever)."""
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            # all ranks reach the end before the group goes: a rank tearing gloo down while its
            # peer still talks to it aborts the peer ("terminate called without an active exception")
            if clean:
                dist.barrier()
            dist.destroy_process_group()
