"""Timing rules shared by every part of the bench, and what the machine is.

On a shared machine one timing says little; the ratio of two timings taken in turns says much more.
So candidates are timed interleaved (A, B, C, A, B, C, ...) after their warm-up calls, and each
gets the median of its repeats: a burst of load from another process lands on one round of every
candidate alike, not on one candidate's whole series.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Repeats:
    """How often each candidate runs: `warmup` untimed calls, then `repeats` timed ones."""

    warmup: int = 1
    repeats: int = 5


def interleaved(candidates: Mapping[str, Callable[[], object]], repeats: Repeats,
                sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in turns (module doc). `sync` waits for
    queued device work (CUDA) so a call is timed to its end, not to its launch."""
    for _ in range(repeats.warmup):
        for run in candidates.values():
            run()
            sync()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats.repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def device_sync(device: torch.device) -> Callable[[], None]:
    """What to call before reading the clock on `device`."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def load_average() -> float:
    """The 1-minute load average (what else the machine was doing), 0 where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def machine(device: torch.device) -> dict[str, object]:
    """The facts a reader needs beside the figures: CPU, cores, torch's threads, device, load."""
    facts: dict[str, object] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_start": load_average(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def matmul_gflops(device: torch.device, size: int, repeats: Repeats, dtype: torch.dtype = torch.float32) -> float:
    """This machine's measured dense matmul speed (GFLOP/s) at `size` x `size`: the ceiling the
    models' achieved FLOP rates are compared with."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = interleaved({"matmul": lambda: a @ b}, repeats, device_sync(device))["matmul"]
    return 2 * size**3 / seconds / 1e9
