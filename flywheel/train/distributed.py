"""Process-group context for torchrun / Ray Train, DDP wrapping and the FSDP2 path for large backbones."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_finite(self, value: torch.Tensor) -> bool:
        """True when `value` is finite on every rank (one tiny all-reduce when distributed)."""
        flag = torch.tensor([0.0 if torch.isfinite(value).all() else 1.0], device=self.device)
        if self.distributed:
            dist.all_reduce(flag)
        return bool(flag.item() == 0.0)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def setup_distributed(requested_device: str) -> DistContext:
    """Join the process group torchrun (env vars) or Ray Train already set up; single process otherwise."""
    device = resolve_device(requested_device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not dist.is_initialized() and world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        return DistContext(rank, world, device)
    return DistContext(0, 1, device)


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around a module whose forward computes the loss terms (identity when single-process)."""
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def shard_fsdp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """FSDP2: shard every transformer layer of the backbone, then the module itself (GPU, multi-process)."""
    from torch.distributed.fsdp import fully_shard

    if not ctx.distributed:
        return module
    for sub in module.modules():
        if type(sub).__name__.endswith(("EncoderLayer", "DecoderLayer")):
            fully_shard(sub)
    fully_shard(module)
    return module


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module
