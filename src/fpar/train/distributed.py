"""The seam for scale-out: where this process stands among the training processes.

The loop asks this object which samples this process reads (`sampler`), how many per step
(`batch_size`), the sum of a metric over all processes (`sum`), whether it is the one that writes
files (`is_main`), to wait for the others (`barrier`), and for the module that trains (`wrap`). A
single process is rank 0 of 1 and every answer is trivial; under `torchrun` (`from_environment`)
the process group is NCCL on GPUs, gloo on CPUs, and the model trains inside
DistributedDataParallel.

Same global batches at any world size. `data.batch_size` is the global batch: each of K processes
loads batch_size / K. The training order is one permutation of the training part, a function of
the epoch's seed, dealt round-robin to the ranks (torch's DistributedSampler; one process uses it
too, as rank 0 of 1), so step k's K local batches together are exactly step k's batch of a single
process, and DDP's gradient average is that batch's mean gradient. Where the part does not divide
by K, DistributedSampler repeats its first few samples to even the ranks out. Validation is dealt
round-robin without repeats (no collective runs per validation step, so ranks may differ by one).

Unused parameters. DDP normally waits for a gradient of every trained parameter; some get none:
the backbone's fc bias (fc only picks the attention's class, through its weights) and whatever a
model's forward skips. The loop freezes what a stage does not train before wrapping, and passes
`find_unused_parameters=True` for the rest: DDP then walks the autograd graph each step (a small
cost beside a ResNet-34 forward) and leaves a parameter no rank used with no gradient, so Adam
skips it exactly as in one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Sampler

from fpar.errors import ConfigError


@dataclass(frozen=True)
class Processes:
    """This process's rank among `world_size` training processes (`local_rank` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints, metrics, TensorBoard and prints progress."""
        return self.rank == 0

    def sampler(self, dataset: Dataset, shuffle: bool, seed: int) -> Sampler | list[int] | None:
        """This rank's share of `dataset`: for training (`shuffle`) a permutation that is a function of
        `seed` dealt round-robin; for validation every world_size-th sample; None for one process's
        validation (in order)."""
        if shuffle:
            return DistributedSampler(dataset, self.world_size, self.rank, shuffle=True, seed=seed)
        if self.world_size == 1:
            return None
        return list(range(self.rank, len(dataset), self.world_size))  # type: ignore[arg-type]

    def batch_size(self, global_batch: int) -> int:
        """This rank's share of the global batch `data.batch_size`."""
        if global_batch % self.world_size:
            raise ConfigError(f"data.batch_size {global_batch} is the global batch and must divide by the "
                              f"{self.world_size} training processes")
        return global_batch // self.world_size

    def device(self, device: torch.device) -> torch.device:
        """Under several processes each takes the GPU of its local rank."""
        if self.world_size == 1 or device.type != "cuda":
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """`model` itself, or inside DDP; call after freezing, since DDP hooks only what trains then."""
        if self.world_size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over all processes (the epoch's loss sums, correct counts, sample counts)."""
        if self.world_size > 1:
            dist.all_reduce(values)
        return values

    def barrier(self) -> None:
        """Wait for every process (e.g. until rank 0 has written the files the others read next)."""
        if self.world_size > 1:
            dist.barrier()


@contextmanager
def from_environment(device: torch.device) -> Iterator[Processes]:
    """The processes `torchrun` started (its RANK, WORLD_SIZE, LOCAL_RANK variables), with the
    process group open while inside; one process (rank 0 of 1) when not under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Processes()
        return
    processes = Processes(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(processes.local_rank)
    dist.init_process_group(backend, rank=processes.rank, world_size=world_size)
    try:
        yield processes
    finally:
        dist.destroy_process_group()
