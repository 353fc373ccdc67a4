"""Process-group setup for one process or ``torchrun --nproc_per_node N`` (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tvts.device import pick_device


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); a plain ``python``/``tvts`` run is
    one process and needs none of it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def main_process_first(info: DistInfo, fn):
    """``fn()`` on process 0, then, after it finished, on every other process; returns its result. For
    one-off files that process 0 writes and the others then read (a frame store, a text-feature table)."""
    result = None
    for main_turn in (True, False):
        if main_turn == info.is_main:
            result = fn()
        if info.world_size > 1:
            dist.barrier()
    return result


def all_reduce_sum(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum scalars over processes (for counters such as skipped samples)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def shard_fsdp(net: torch.nn.Module, bf16: bool) -> torch.nn.Module:
    """PyTorch FSDP2 (``fully_shard``) over ``net``, in place: every member of every ``nn.ModuleList`` (the
    transformer blocks of each tower, the sort head's blocks) is one unit whose parameters are gathered
    just before its forward and freed after it; everything else joins the root unit. Parameters,
    gradients and optimiser state are sharded across the processes. ``bf16``: parameters are gathered in
    bf16 and gradients reduced in fp32 (mixed precision). Build the optimiser after this call."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    # Deepest lists first: a unit must be sharded before the unit that contains it.
    for module in reversed(list(net.modules())):
        if isinstance(module, torch.nn.ModuleList):
            for child in module:
                if any(p.numel() for p in child.parameters(recurse=True)):
                    fully_shard(child, mp_policy=policy)
    fully_shard(net, mp_policy=policy)
    return net


def full_tensor(x: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP's sharded values, e.g. a clipped gradient norm) as one ordinary tensor; others as they are."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x
