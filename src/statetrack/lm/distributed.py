"""The process group and the model's parallel wiring: torch.distributed as torchrun sets it up, FSDP2, per-block
compile and activation checkpointing. Nothing here is distributed machinery of its own; it only wires torch's.

One process without torchrun gets a world of 1 (an in-process store), so the same code runs everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from statetrack.train.device import resolve_device


@dataclass
class Dist:
    """This process in the job. ``group``: a gloo group beside the default one, for what runs on the CPU
    (checkpoint coordination, background saves, the stop flag) so it never waits behind GPU collectives."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    group: object
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str) -> Dist:
        """Join (or make) the process group. ``device``: "auto" | "cpu" | "cuda" (cuda:LOCAL_RANK is used)."""
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device)
        if dev.type == "cuda":
            if dev.index is None:
                dev = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(dev)
        elif dev.type != "cpu":
            raise ValueError(f"train.device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        owns = not dist.is_initialized()
        if owns:
            backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
            if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:  # torchrun
                dist.init_process_group(backend, device_id=dev if dev.type == "cuda" else None)
            else:
                dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        group = dist.new_group(backend="gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, dev, group, owns)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self.group)

    def max(self, value: int) -> int:
        """The largest ``value`` over ranks, on every rank (a CPU all-reduce: no GPU sync)."""
        if self.world_size == 1:
            return int(value)
        t = torch.tensor([int(value)], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return int(t.item())

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a CPU tensor (on every rank)."""
        if self.world_size == 1:
            return values
        v = values.detach().double().cpu().clone()
        dist.all_reduce(v, op=dist.ReduceOp.SUM, group=self.group)
        return v / self.world_size

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group(self.group)
            if self.owns_group:
                dist.destroy_process_group()


def parallelize(model: nn.Module, dist_: Dist, *, fsdp: bool, bf16: bool, compile: bool,
                activation_checkpointing: bool) -> nn.Module:  # fmt: skip
    """Wire a StateTrackForCausalLM in place, in torchtitan's order: activation checkpointing, per-block compile,
    then FSDP2 (``fully_shard`` on each block, then the root; bf16 parameters with fp32 gradient reduction when
    ``bf16``). Parameter names stay those of the plain model, so checkpoints do not depend on these choices."""
    blocks = model.model.layers
    if activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compile:
        for block in blocks:
            block.compile()
    if fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
        kw = {} if mp is None else {"mp_policy": mp}
        for i, block in enumerate(blocks):
            # the last block's parameters are needed again at once by the backward: keep them gathered
            fully_shard(block, reshard_after_forward=i < len(blocks) - 1, **kw)
        fully_shard(model, **kw)
    return model
