"""(b) Data loading: clips/s of each dataset with 0, 1 and 2 workers, beside a naive loader.

The naive loader reads what the fpar dataset reads, the way the reference code does: one PIL
image at a time, opened, converted, resized, flipped, cropped and resized again in PIL, then
`to_tensor` and normalised per frame. Both use the same samples, frame positions and random
choices (`ClipTransform.draw`), so the ratio is the cost of the way of reading, nothing else.
"""

from __future__ import annotations

import statistics
import time

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
from fpar.models.registry import build_model

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


def bench_loading(root, image_size: int, frames: int, batch_size: int, batches: int, repeats: Repeats,
                  workers: tuple[int, ...] = WORKER_COUNTS) -> dict:
    """Section (b): per dataset and worker count, fpar's loader and the naive one, in turns."""
    cfg = DataConfig(root=str(root), frames=frames, image_size=image_size)
    found = discover(root)
    rows = []
    for keys, kind in DATASETS.items():
        fast = make_dataset(found.samples, class_names(found.samples), keys, cfg, train=True)
        naive = NaiveClips(fast)
        for count in workers:
            rates: dict[str, list[float]] = {"fpar": [], "naive": []}
            for _ in range(repeats.repeats):
                for name, dataset in (("fpar", fast), ("naive", naive)):
                    rates[name].append(clips_per_second(dataset, count, batch_size, batches))
            medians = {name: statistics.median(values) for name, values in rates.items()}
            rows.append({"dataset": kind.__name__, "workers": count, "clips_per_s": medians["fpar"],
                         "naive_clips_per_s": medians["naive"], "speedup": medians["fpar"] / medians["naive"],
                         "load_average": load_average()})
    return {"image_size": image_size, "frames": frames, "batch_size": batch_size, "rows": rows}



def loader_wait(root, scale: Scale, device: torch.device, batches: int, workers: int = DataConfig().workers) -> dict:
    """The demo's `rgb` stage-2 step fed by fpar's loader with the default workers: the share of
    the time spent waiting for the next batch (the target: at most 5%)."""
    cfg = DataConfig(root=str(root), frames=scale.frames, image_size=scale.image_size, batch_size=scale.batch)
    model = build_model(model_config("rgb", "two_pass", scale)).to(device)
    found = discover(root)
    dataset = make_dataset(found.samples, class_names(found.samples), model.input_keys, cfg, train=True)
    loader = DataLoader(dataset, batch_size=scale.batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    step = step_function(model, model, STAGE2, {}, device)
    sync = device_sync(device)
    timings: list[tuple[float, float]] = []  # (waited, stepped) per batch; the first is the warm-up
    while len(timings) <= batches:
        for waited, batch in _timed_batches(loader):
            start = time.perf_counter()
            step({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
            sync()
            timings.append((waited, time.perf_counter() - start))
            if len(timings) > batches:
                break
    waited, stepped = (sum(column) for column in zip(*timings[1:]))
    return {"model": "rgb", "stage": "stage2", "scale": scale.name, "workers": workers, "batches": batches,
            "wait_s_per_batch": waited / batches, "step_s_per_batch": stepped / batches,
            "wait_share": waited / (waited + stepped), "load_average": load_average()}


def _timed_batches(loader: DataLoader):
    """(seconds waited, batch) for each batch of `loader`."""
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:
            return
        yield time.perf_counter() - start, batch
