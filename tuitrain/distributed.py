"""More than one process: DistributedDataParallel on PyTorch's own engine (torchrun).

``torchrun --nproc-per-node N -m tuitrain DATASET --headless`` sets RANK/WORLD_SIZE/LOCAL_RANK;
each rank trains on its shard of every epoch's (shared, seeded) order. Rank 0 alone writes the
run directory and checkpoints and owns the control channel; its commands are broadcast to every
rank at the same step (a logging step, so no extra per-step collective), so all ranks apply them
together. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes, reports and listens for commands."""
        return self.rank == 0


def from_env() -> DistContext | None:
    """The context torchrun describes in the environment, or None for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return DistContext(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (once)."""
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shard(order: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's part of the epoch's order: equal lengths on every rank (the remainder is dropped)."""
    usable = len(order) - len(order) % ctx.world
    return order[:usable][ctx.rank :: ctx.world]


def take_commands(commands: queue.Queue, ctx: DistContext, timeout: float = 0.0) -> list:
    """Rank 0's queued commands (waiting up to ``timeout`` seconds for a first one), on every rank."""
    pending = []
    if ctx.is_main:
        try:
            pending.append(commands.get(timeout=timeout) if timeout else commands.get_nowait())
            while True:
                pending.append(commands.get_nowait())
        except queue.Empty:
            pass
    return broadcast_commands(pending, ctx)


def broadcast_commands(commands: list, ctx: DistContext) -> list:
    """Rank 0's pending commands, on every rank."""
    box = [commands if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0] or []


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a small tensor over ranks (in place on a copy)."""
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def window_sum(ctx: DistContext):
    """A reducer for MetricWindow.read: sums, counts and flags over ranks, the gradient norm averaged."""

    def reduce(window: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        out = all_sum(window)
        out[3] /= ctx.world
        return out, count * ctx.world

    return reduce


def ranks_in_sync(model: torch.nn.Module) -> bool:
    """Whether every rank holds bitwise the same weights (compared through per-tensor checksums)."""
    sums = torch.stack([p.detach().double().sum() for p in model.state_dict().values() if p.is_floating_point()])
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def close() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()
