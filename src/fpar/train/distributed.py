"""The seam for scale-out: where this process stands among the training processes.

The loop asks this object three things: which samples this process reads (`sampler`), the sum of a
metric over all processes (`sum`), and whether it is the one that writes files (`is_main`). A
single process is rank 0 of 1 and every answer is trivial. Running under `torchrun` (DESIGN
section 4) means building a `Processes` from the environment after `init_process_group` and
wrapping the model in DistributedDataParallel; the loop itself does not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class Processes:
    """This process's rank among `world_size` training processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints, metrics, TensorBoard and prints progress."""
        return self.rank == 0

    def sampler(self, dataset: Dataset, shuffle: bool, seed: int) -> Sampler | None:
        """This rank's share of `dataset` in an order that is a function of `seed`; None for one
        process (the DataLoader then shuffles with its own seeded generator)."""
        if self.world_size == 1:
            return None
        return DistributedSampler(dataset, self.world_size, self.rank, shuffle=shuffle, seed=seed)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over all processes (the epoch's loss sums, correct counts, sample counts)."""
        if self.world_size > 1:
            dist.all_reduce(values)
        return values
