"""Whole training steps replayed from a CUDA graph (`train.cuda_graphs`).

Why: at the recipes' batch sizes a GPU training step waits on kernel launches, not on arithmetic.
previous_frame is the extreme case, its backbone run once per frame: on an H100 (session 9, fp32,
channels_last, in turns) its eager step took 98 ms at the demo size, replayed from a graph 17 ms;
rgb_ms's step 26 -> 6 ms, two_pass 31 -> 9 ms (docs/bench.md, "GPU").

How: PyTorch's whole-network capture. The first step runs eagerly on a side stream (lazy
initialisation: cuDNN handles, the optimizer's moments); the next batch of the same shapes is
captured (forward, losses, backward and optimizer step, into fixed input tensors) and replayed,
and each later one copies its batch into those tensors and replays. Every step trains exactly
once: the captured step is replayed for the batch it was captured on.

What a capture freezes, and so what makes a new one: the batch's shapes, dtypes and strides; the
learning rates (the optimizer's kernels take them as numbers, and the scheduler changes them
between epochs); the modules' train/eval flags (dropout, BatchNorm). A change of LR or modes
recaptures; a batch of other shapes (an epoch's last, smaller batch) runs eagerly. The capture
checks only its own thread: the loader's pin-memory thread goes on allocating meanwhile.

Where it cannot be used (`use_cuda_graphs`): off a GPU; with fp16's GradScaler, which reads the
GPU every step to skip overflowing ones; with torch.compile (whose `reduce-overhead` mode graphs
on its own); under DDP, whose all-reduce this capture does not cover. A replayed step draws its
dropout masks from the graph's own offsets of the generator, so a run is not bit-identical to an
eager one (nor is any GPU run to another: cuDNN's kernels are not deterministic by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from fpar.config import TrainConfig
from fpar.errors import ConfigError

CUDA_GRAPH_MODES = ("auto", "on", "off")
Out = TypeVar("Out")


def use_cuda_graphs(cfg: TrainConfig, device: torch.device, processes: int) -> bool:
    """`train.cuda_graphs`: "auto" captures wherever it can, "on" also raises where it cannot
    (saying why), "off" never captures."""
    if cfg.cuda_graphs not in CUDA_GRAPH_MODES:
        raise ConfigError(f"train.cuda_graphs {cfg.cuda_graphs!r}: expected one of {', '.join(CUDA_GRAPH_MODES)}")
    blockers = [why for blocked, why in (
        (device.type != "cuda", f"it needs a CUDA device, and this run trains on {device}"),
        (cfg.amp == "fp16", "train.amp fp16's GradScaler reads the GPU every step (use bf16 or off)"),
        (cfg.compile, "train.compile is on (torch.compile's mode reduce-overhead makes graphs of its own)"),
        (processes > 1, f"{processes} training processes: DDP's all-reduce is not part of the capture"),
    ) if blocked]
    if cfg.cuda_graphs == "on" and blockers:
        raise ConfigError("train.cuda_graphs on: " + "; ".join(blockers))
    return cfg.cuda_graphs != "off" and not blockers


class GraphedStep(Generic[Out]):
    """`step(batch)` (forward, losses, backward, optimizer step; returns tensors) replayed from a
    CUDA graph (module doc). `step` must set the gradients to None before its backward
    (`zero_grad(set_to_none=True)`, as the trainer's does): the captured backward then writes
    them rather than adding to them. Call it as `step`; read its outputs before the next call,
    which overwrites them."""

    def __init__(self, step: Callable[[dict[str, Any]], Out], optimizer: torch.optim.Optimizer,
                 model: nn.Module) -> None:
        self.step, self.optimizer, self.model = step, optimizer, model
        self.shapes: tuple | None = None  # the warm-up batch's, which every capture is made for
        self.graph: torch.cuda.CUDAGraph | None = None
        self.frozen: tuple = ()  # learning rates and module modes the graph was captured with
        self.inputs: dict[str, Tensor] = {}
        self.outputs: Any = None
        self.captures = 0  # how many graphs were made (tests)

    def __call__(self, batch: dict[str, Any]) -> Out:
        shapes = _shapes(batch)
        if self.shapes is None:
            self.shapes = shapes
            return self._on_side_stream(batch)
        if shapes != self.shapes:
            return self.step(batch)  # another shape (an epoch's smaller last batch): not worth a graph
        frozen = self._frozen()
        if self.graph is None or frozen != self.frozen:
            self._capture(batch, frozen)
        else:
            for key, tensor in self.inputs.items():
                tensor.copy_(batch[key], non_blocking=True)
        self.graph.replay()
        return self.outputs

    def _frozen(self) -> tuple:
        lrs = tuple(group["lr"] for group in self.optimizer.param_groups)
        return lrs, tuple(module.training for module in self.model.modules())

    def _on_side_stream(self, batch: dict[str, Any]) -> Out:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.step(batch)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, batch: dict[str, Any], frozen: tuple) -> None:
        self.graph = self.outputs = None  # the old graph's memory goes back before the new one takes its own
        self.inputs = {key: value.clone() for key, value in batch.items() if isinstance(value, Tensor)}
        graph = torch.cuda.CUDAGraph()
        with _capturable(self.optimizer), torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.outputs = self.step({**batch, **self.inputs})  # thread_local: the loader's pinning thread runs on
        self.graph, self.frozen = graph, frozen
        self.captures += 1


@contextmanager
def _capturable(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Adam's step() refuses a capture unless its groups say `capturable`, and warns when they say
    so outside one. A check in Python alone (the fused kernel is the same either way), so the flag
    is set for the capture only, and state.pt never holds it."""
    if "capturable" not in optimizer.defaults:  # SGD has no such check
        yield
        return
    before = [group["capturable"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["capturable"] = True
    try:
        yield
    finally:
        for group, value in zip(optimizer.param_groups, before):
            group["capturable"] = value


def _shapes(batch: dict[str, Any]) -> tuple:
    return tuple((key, tuple(value.shape), value.dtype, value.stride()) for key, value in sorted(batch.items())
                 if isinstance(value, Tensor))
