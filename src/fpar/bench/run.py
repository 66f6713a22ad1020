"""`fpar bench`: every section in one run, its JSON, and the check that the JSON is complete.

Sections: (a) prepare, (b) loading (with the loader's share of a training step), (c) training,
(d) inference, (e) CAM, (f) matmul rate and each model's share of it (inside (d)'s rows).
`--quick` runs the same sections at toy sizes with fewer repeats and without `torch.compile`
(compiling takes minutes on a CPU), so CI can check the whole report in under a minute; its
figures say nothing about speed.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fpar.bench.cam import bench_cam
from fpar.bench.loading import bench_loading, loader_wait
from fpar.bench.preparation import bench_prepare
from fpar.bench.timing import Repeats, load_average, machine, matmul_gflops
from fpar.bench.training import CUDA_VARIANTS, VARIANTS, Scale, bench_inference, bench_training, feedback_costs, feedback_turns
from fpar.errors import ConfigError
from fpar.io.atomic import write_atomic

PARTS = ("prepare", "loading", "training", "inference", "cam")  # what `--only` picks from
SECTIONS = ("machine", "prepare", "loading", "training", "feedback", "inference", "cam")  # keys of the result
# Keys whose values are labels or flags, not figures (every other number must be positive).
NOT_FIGURES = {"batch", "workers", "frames", "clips", "frames_per_clip", "batches", "video_seconds", "fps",
               "equal_within_tolerance", "load_average", "load_average_start", "load_average_end", "cores",
               "torch_threads", "image_size", "max_relative_logit_difference", "timed_repeats"}


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one bench run."""

    prepare_size: tuple[int, int]
    prepare_clips: int
    prepare_frames: int
    prepare_workers: tuple[int, ...]
    flow_methods: tuple[str, ...]
    loading_batches: int
    scales: tuple[Scale, ...]
    demo: Scale
    variants: tuple[str, ...]
    matmul_size: int
    cam_seconds: float
    cam_fps: int
    cam_size: tuple[int, int]
    repeats: Repeats
    cam_repeats: int  # each run maps a whole video: one timed run per method after the warm-up


QUICK = Plan(prepare_size=(128, 96), prepare_clips=2, prepare_frames=8, prepare_workers=(1, 2), flow_methods=("dis",),
             loading_batches=2, scales=(Scale("quick", 64, 2, 1, 16),), demo=Scale("quick", 64, 2, 2, 16),
             variants=("fp32", "bf16"), matmul_size=512, cam_seconds=0.5, cam_fps=16, cam_size=(128, 96),
             repeats=Repeats(warmup=1, repeats=1), cam_repeats=1)
DEMO = Scale("demo", 112, 7, 8, 128)
REFERENCE = Scale("224", 224, 7, 2, 512)
FULL = Plan(prepare_size=(320, 240), prepare_clips=8, prepare_frames=48, prepare_workers=(1, 2),
            flow_methods=("dis", "farneback"), loading_batches=12, scales=(DEMO, REFERENCE), demo=DEMO,
            variants=VARIANTS, matmul_size=2048, cam_seconds=10.0, cam_fps=30, cam_size=(320, 240),
            repeats=Repeats(warmup=1, repeats=3), cam_repeats=1)


def pick_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to PyTorch on this machine")
    return torch.device(name)


def run_bench(device: str = "cpu", quick: bool = False, threads: int | None = None,
              only: tuple[str, ...] = PARTS, progress: Callable[[str], None] = lambda _: None,
              repeats: int | None = None) -> dict:
    """The sections in `only` (module doc) with torch on `threads` threads (None: torch's default,
    or 1 for `quick`, whose toy steps only lose from threads on a busy machine), each candidate
    timed `repeats` times after its warm-up (None: the plan's); `progress` hears each section's
    name as it starts."""
    plan, dev = (QUICK if quick else FULL), pick_device(device)
    if dev.type == "cuda":
        plan = replace(plan, variants=plan.variants + CUDA_VARIANTS)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads}: expected at least 1")
    if repeats is not None:
        if repeats < 1:
            raise ConfigError(f"--repeats {repeats}: expected at least 1")
        plan = replace(plan, repeats=Repeats(warmup=plan.repeats.warmup, repeats=repeats))
    if not only or any(name not in PARTS for name in only):
        raise ConfigError(f"--only {','.join(only)}: expected some of {','.join(PARTS)}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or (1 if quick else previous))
    try:
        return _run(plan, dev, quick, only, progress)
    finally:
        torch.set_num_threads(previous)


def _run(plan: Plan, dev: torch.device, quick: bool, only: tuple[str, ...], progress: Callable[[str], None]) -> dict:
    result: dict = {"quick": quick, "sections": list(only), "machine": machine(dev)}
    result["machine"]["timed_repeats"] = plan.repeats.repeats
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fpar-bench-") as folder:
        work = Path(folder)
        root: Path | None = None
        for name in PARTS:
            if name not in only:
                continue
            progress(name)
            start = time.perf_counter()
            if name == "prepare":
                result["prepare"], root = _prepare(plan, work, plan.repeats)
            elif name == "loading":
                root = root or _prepare(plan, work, Repeats(warmup=0, repeats=1))[1]  # a root to read
                cache = work / "frame_cache"  # the bench's own, never the user's
                result["loading"] = bench_loading(root, cache, plan.demo.image_size, plan.demo.frames,
                                                  plan.demo.batch, plan.loading_batches, plan.repeats)
                result["loading"]["loader_wait"] = loader_wait(root, cache, plan.demo, dev, plan.loading_batches)
            elif name == "training":
                result["training"] = [row for scale in plan.scales
                                      for row in bench_training(scale, dev, plan.repeats, plan.variants)]
                turns = {scale.name: feedback_turns(scale, dev, plan.repeats, plan.variants) for scale in plan.scales}
                result["feedback"] = feedback_costs(result["training"], turns)
            elif name == "inference":
                matmul = {"fp32": matmul_gflops(dev, plan.matmul_size, plan.repeats),
                          "bf16": matmul_gflops(dev, plan.matmul_size, plan.repeats, torch.bfloat16)}
                rows = [row for scale in plan.scales for row in bench_inference(scale, dev, plan.repeats, matmul)]
                result["inference"] = {"matmul_gflops": matmul, "rows": rows}
            else:
                result["cam"] = bench_cam(work / "cam", plan.scales[-1], plan.cam_seconds, plan.cam_fps,
                                          plan.cam_size, plan.cam_repeats)
            seconds[name] = time.perf_counter() - start
    result["machine"].update(load_average_end=load_average(), section_seconds=seconds,
                             seconds=sum(seconds.values()))
    return result


def _prepare(plan: Plan, work: Path, repeats: Repeats) -> tuple[dict, Path]:
    return bench_prepare(work / "prepare", plan.prepare_size, plan.prepare_clips, plan.prepare_frames,
                         plan.flow_methods, plan.prepare_workers, repeats)


def figures(value, path: str = "") -> Iterator[tuple[str, object]]:
    """(dotted path, value) of every leaf of the result that is a figure (`NOT_FIGURES` left out)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in NOT_FIGURES:
                yield from figures(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from figures(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def problems(result: dict) -> list[str]:
    """What makes `result` incomplete: a missing or empty section (of those it was asked for), a
    figure that is not a positive finite number."""
    asked = {"machine", *result.get("sections", PARTS)}
    if "training" in asked:
        asked.add("feedback")
    found = [f"section {name!r} is missing or empty" for name in SECTIONS if name in asked and not result.get(name)]
    found += [f"{path} = {value!r} is not a positive number" for path, value in figures(result)
              if not (math.isfinite(value) and value > 0)]
    return found


def write_json(result: dict, path: Path) -> Path:
    write_atomic(Path(path), json.dumps(result, indent=2) + "\n")
    return Path(path)
