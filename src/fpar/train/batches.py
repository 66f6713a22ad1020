"""The run's batches: one DataLoader, one iterator, for every pass the run has left.

Why one iterator and not a loader per part, restarted or persistent:
- A pass's first batch had to wait for a whole batch to load: the workers of a restarted (or
  persistent but re-iterated) loader only learn the next pass's indices when it starts. On an H200
  the demo's `rgb` step takes 13 ms and that wait was 20% of an epoch of 12 steps, even with 8
  workers and a warm frame cache (docs/bench.md, GPU). Here the workers already load the next
  pass's first batches while the last steps of this one run, validation's during training, the
  next epoch's during validation.
- A loader per part kept two sets of workers per rank, one of them idle at any time.
- The run ends them in one place (`RunBatches.close`), also when a pass raises.

Each pass is (part, seed): "train" or "val" and the epoch's seed (`loop.epoch_seed`), known
ahead for the whole run, which is what makes the look-ahead possible. A batch is a list of
(part, seed, index) keys; `ClipDataset` draws an item's flip, crop and flow window from (seed,
index) alone, so items are the same for any number of workers and whatever they loaded before.
The indices are this rank's share of the part (`Processes.sampler`), cut into batches of the
rank's batch size in order, the last one possibly smaller: the batches a DataLoader with that
sampler and batch size would make. (The few samples DistributedSampler repeats to even out the
ranks therefore repeat with the same crop and flip.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fpar.train.distributed import Processes

Key = tuple[str, int, int]  # (part, seed, index)


@dataclass(frozen=True)
class Pass:
    """One pass over a part: "train" (shuffled by `seed`) or "val" (in order); items drawn from `seed`."""

    part: str
    seed: int


class Parts(Dataset):
    """The items of several datasets by (part, seed, index) keys."""

    def __init__(self, parts: Mapping[str, Dataset]) -> None:
        self.parts = dict(parts)

    def __len__(self) -> int:
        return sum(len(d) for d in self.parts.values())  # type: ignore[arg-type]

    def __getitem__(self, key: Key) -> Any:
        part, seed, index = key
        return self.parts[part][(seed, index)]


class PassBatches(Sampler[list[Key]]):
    """This rank's batches of each pass in `passes`, in order (module doc)."""

    def __init__(self, processes: Processes, parts: Mapping[str, Dataset], batch_size: int,
                 passes: list[Pass]) -> None:
        self.processes, self.parts, self.batch_size, self.passes = processes, dict(parts), batch_size, passes

    def _indices(self, step: Pass) -> Sampler | list[int] | range:
        """This rank's share of the pass's part, in the pass's order (drawn only when iterated)."""
        dataset = self.parts[step.part]
        order = self.processes.sampler(dataset, shuffle=step.part == "train", seed=step.seed)
        return range(len(dataset)) if order is None else order  # type: ignore[arg-type]

    def batches(self, step: Pass) -> list[list[Key]]:
        keys = [(step.part, step.seed, int(i)) for i in self._indices(step)]
        return [keys[i:i + self.batch_size] for i in range(0, len(keys), self.batch_size)]

    def count(self, step: Pass) -> int:
        """How many batches `batches(step)` holds, without drawing the order."""
        return -(-len(self._indices(step)) // self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[Key]]:
        for step in self.passes:
            yield from self.batches(step)

    def __len__(self) -> int:
        return sum(self.count(step) for step in self.passes)


class RunBatches:
    """The batches of `passes`, taken one pass at a time with `take`; `close` ends the workers."""

    def __init__(self, processes: Processes, parts: Mapping[str, Dataset], batch_size: int, passes: list[Pass],
                 workers: int, seed: int, pin_memory: bool = False) -> None:
        self.sampler = PassBatches(processes, parts, batch_size, passes)
        self._ahead = list(passes)
        self._unread = 0  # batches of the last pass taken that were not read yet
        # Its own generator: starting the workers draws their base seed from it, never from the
        # global RNG, whose draws (dropout) must not depend on when the workers started (resume).
        loader = DataLoader(Parts(parts), batch_sampler=self.sampler, num_workers=workers, pin_memory=pin_memory,
                            generator=torch.Generator().manual_seed(seed))
        self._batches = self._iterate(loader)

    @staticmethod
    def _iterate(loader: DataLoader) -> Iterator[dict[str, Any]]:
        """The loader's batches; its workers end when this generator is closed or fails."""
        iterator = iter(loader)
        try:
            yield from iterator
        finally:
            # A failed batch's traceback still holds the iterator (and with it the workers) after
            # the generator is done; DataLoader has no public way to end them, this is its own.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def take(self, step: Pass) -> tuple[int, Iterator[dict[str, Any]]]:
        """(number of batches, the batches) of the next pass, which must be `step`, the previous
        pass read to its end: the passes are loaded ahead in the order given, so they must be taken
        in that order, whole."""
        if self._unread:
            raise RuntimeError(f"pass {step} taken while {self._unread} batch(es) of the previous pass are unread")
        if not self._ahead or self._ahead[0] != step:
            expected = self._ahead[0] if self._ahead else "no more passes"
            raise RuntimeError(f"pass {step} taken out of order: the loader has {expected} next")
        self._ahead.pop(0)
        self._unread = count = self.sampler.count(step)
        return count, self._read(count)

    def _read(self, count: int) -> Iterator[dict[str, Any]]:
        for _ in range(count):
            batch = next(self._batches)
            self._unread -= 1
            yield batch

    def close(self) -> None:
        self._batches.close()
