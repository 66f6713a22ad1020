"""(b) Data loading: clips/s of each dataset with 0, 1 and 2 workers, beside a naive loader.

fpar's loader is timed twice: with a warm frame cache (`fpar.data.frame_cache`, the default; the
state after the first epoch) and without one (what the first epoch costs). The naive loader reads
what the fpar dataset reads, the way the reference code does: one PIL image at a time, opened,
converted, resized, flipped, cropped and resized again in PIL, then `to_tensor` and normalised per
frame. All three use the same samples, frame positions and random
choices (`ClipTransform.draw`), so the ratio is the cost of the way of reading, nothing else.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fpar.config import DataConfig
from fpar.data.datasets import DATASETS, ClipDataset, make_dataset
from fpar.data.layout import MAP_THRESHOLD, class_names, discover
from fpar.data.sampling import flow_window, frame_positions, train_flow_start
from fpar.data.transforms import FLOW_MEAN, FLOW_STD, IMAGENET_MEAN, IMAGENET_STD, ClipParams, crop_box
from fpar.bench.timing import Repeats, device_sync, load_average
from fpar.bench.training import STAGE2, Scale, model_config, step_function
from fpar.models.memory_format import channels_last_model
from fpar.models.registry import build_model
from fpar.train.batches import Pass, RunBatches
from fpar.train.distributed import Processes
from fpar.train.loop import to_device

WORKER_COUNTS = (0, 1, 2)


def _pil_image(path, params: ClipParams, size: int, resize: int, gray: bool, invert: bool = False) -> Image.Image:
    """One image through the reference's PIL chain: open, convert, short side to `resize`, flip,
    corner crop, resize to `size`."""
    image = Image.open(path).convert("L" if gray else "RGB")
    width, height = image.size
    scale = resize / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
    if params.flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if invert:
            image = image.point(lambda v: 255 - v)
    top, left, side = crop_box(image.height, image.width, params, size)
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)


class NaiveClips(Dataset):
    """The items of `fast` (same samples, positions and draws), read image by image in PIL."""

    def __init__(self, fast: ClipDataset) -> None:
        self.fast = fast

    def __len__(self) -> int:
        return len(self.fast)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        fast, sample = self.fast, self.fast.samples[index]
        params, t = fast.transform.draw(), fast.transform
        item = {"label": torch.tensor(fast.classes.index(sample.label))}
        if "rgb" in fast.keys:
            positions = frame_positions(sample.rgb_span(fast.rgb_over), fast.frames)
            frames = [TF.normalize(TF.to_tensor(_pil_image(sample.frame(p), params, t.image_size, t.resize, False)),
                                   IMAGENET_MEAN, IMAGENET_STD) for p in positions]
            item["rgb"] = torch.stack(frames)
            if "mmaps" in fast.keys:
                maps = [TF.pil_to_tensor(_pil_image(sample.mmap(p), params, t.image_size, t.resize, True))
                        for p in positions]
                item["mmaps"] = (torch.cat(maps) > MAP_THRESHOLD).long()
        if "flow" in fast.keys:
            planes = []
            for p in flow_window(train_flow_start(sample.n_flows, fast.flow_stack), fast.flow_stack):
                for axis in "xy":
                    image = _pil_image(sample.flow(axis, p), params, t.image_size, t.resize, True, axis == "x")
                    planes.append((TF.to_tensor(image) - FLOW_MEAN) / FLOW_STD)
            item["flow"] = torch.cat(planes)
        return item


def clips_per_second(dataset: Dataset, workers: int, batch_size: int, batches: int) -> float:
    """Clips/s of a DataLoader over `dataset` (workers started before the clock: the rate of a
    running loader, the one training sees)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, drop_last=True)
    for _ in range(2):  # first epoch starts the workers; the second is timed
        start, clips = time.perf_counter(), 0
        for index, batch in enumerate(loader):
            clips += len(batch["label"])
            if index + 1 >= batches:
                break
    return clips / (time.perf_counter() - start)


def bench_loading(root, cache: Path, image_size: int, frames: int, batch_size: int, batches: int,
                  repeats: Repeats, workers: tuple[int, ...] = WORKER_COUNTS) -> dict:
    """Section (b): per dataset and worker count, in turns: fpar's loader with a warm frame cache
    in `cache` (filled first: `ClipDataset.fill_cache`), fpar's loader without a cache (every
    epoch decodes, as a first epoch does), and the naive one."""
    found = discover(root)
    rows = []
    for keys, kind in DATASETS.items():
        candidates: dict[str, Dataset] = {}
        for name, setting in (("fpar", str(cache)), ("fpar_no_cache", "off")):
            cfg = DataConfig(root=str(root), frames=frames, image_size=image_size, frame_cache=setting)
            candidates[name] = make_dataset(found.samples, class_names(found.samples), keys, cfg, train=True)
        candidates["fpar"].fill_cache()
        candidates["naive"] = NaiveClips(candidates["fpar_no_cache"])
        for count in workers:
            rates: dict[str, list[float]] = {name: [] for name in candidates}
            for _ in range(repeats.repeats):
                for name, dataset in candidates.items():
                    rates[name].append(clips_per_second(dataset, count, batch_size, batches))
            medians = {name: statistics.median(values) for name, values in rates.items()}
            rows.append({"dataset": kind.__name__, "workers": count, "clips_per_s": medians["fpar"],
                         "no_cache_clips_per_s": medians["fpar_no_cache"],
                         "naive_clips_per_s": medians["naive"], "speedup": medians["fpar"] / medians["naive"],
                         "no_cache_speedup": medians["fpar_no_cache"] / medians["naive"],
                         "load_average": load_average()})
    return {"image_size": image_size, "frames": frames, "batch_size": batch_size, "rows": rows}


def loader_wait(root, cache: Path, scale: Scale, device: torch.device, batches: int,
                workers: int | None = None) -> dict:
    """The demo's `rgb` stage-2 step (bf16 autocast, as configs/demo/rgb.yaml trains) fed by fpar's
    loader with `workers` (None: the default, `config.default_workers`): the share of the time spent
    waiting for data (the target: at most 5%), with a warm frame cache in `cache` and without a
    cache (as in a first epoch).

    As in the trainer, one `train.batches.RunBatches` serves every pass, loading ahead across them
    (into pinned memory on a GPU, whose thread also takes the batches from the workers), and an
    epoch has `batches` batches (the bench's clips repeated; the demo has 12). The first
    epoch (workers starting) is the warm-up; the second is timed.
    """
    workers = DataConfig().workers if workers is None else workers  # the default: this machine's cores
    model = channels_last_model(build_model(model_config("rgb", "two_pass", scale)).to(device))  # as the demo
    step = step_function(model, model, STAGE2, {}, device, bf16=True)
    sync = device_sync(device)
    found = discover(root)
    result = {"model": "rgb", "stage": "stage2", "amp": "bf16", "scale": scale.name, "workers": workers,
              "batches": batches}
    for prefix, setting in (("", str(cache)), ("no_cache_", "off")):
        cfg = DataConfig(root=str(root), frames=scale.frames, image_size=scale.image_size, batch_size=scale.batch,
                         frame_cache=setting)
        dataset = make_dataset(found.samples, class_names(found.samples), model.input_keys, cfg, train=True)
        dataset.fill_cache()
        epochs = [Pass("train", seed) for seed in range(2)]
        run = RunBatches(Processes(), {"train": _Repeated(dataset, batches * scale.batch)}, scale.batch, epochs,
                         workers, seed=0, pin_memory=device.type == "cuda")  # as the trainer
        try:
            for epoch in epochs:
                waited = stepped = 0.0
                for wait, batch in _timed_batches(run.take(epoch)[1]):
                    start = time.perf_counter()
                    step(to_device(batch, device, channels_last=True))
                    sync()
                    waited, stepped = waited + wait, stepped + time.perf_counter() - start
        finally:
            run.close()
        result.update({f"{prefix}wait_s_per_batch": waited / batches, f"{prefix}step_s_per_batch": stepped / batches,
                       f"{prefix}wait_share": waited / (waited + stepped)})
    return result | {"load_average": load_average()}


class _Repeated(Dataset):
    """`dataset`'s items over and over, `length` of them, asked for by (seed, index) keys."""

    def __init__(self, dataset: ClipDataset, length: int) -> None:
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: tuple[int, int]) -> dict:
        seed, index = key
        return self.dataset[(seed, index % len(self.dataset))]


def _timed_batches(batches: Iterator[dict]) -> Iterator[tuple[float, dict]]:
    """(seconds waited, batch) for each of `batches`, the first wait counted from this call."""
    start = time.perf_counter()
    iterator = iter(batches)
    while True:
        batch = next(iterator, None)
        if batch is None:
            return
        yield time.perf_counter() - start, batch
        start = time.perf_counter()
