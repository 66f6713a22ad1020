"""The four datasets over `Sample`s, and the factory that picks one from a model's input keys.

An item is a dict (DESIGN section 8), so the trainer and collate never care which model trains:

* ``"rgb"``: (T, 3, S, S) float, the N frames of `sampling.frame_positions`;
* ``"flow"``: (2L, S, S) float, L consecutive flows interleaved x1, y1, x2, y2, ...
  ((segments, 2L, S, S) when several evaluation windows are asked for, placed by
  ``segment_rule``: `sampling.SEGMENT_RULES`);
* ``"mmaps"``: (T, S, S) int64 0/1, the motion maps of the same N frames at the crop size
  (the model resizes them to its layer4 size);
* ``"label"``: int64 scalar, the index of the sample's class in `classes`;
* ``"sample_id"``: str, ``user/class/instance``.

One `ClipTransform.draw` per item: the frames, maps and flows of an item share flip and crop.
Decoded images shrunk to the resize side are kept on disk between epochs (`frame_cache`,
``data.frame_cache``): after the first epoch an item costs a fraction of a decode, and is the same.

Which samples are kept follows the reference's datasets (`layout.unusable_reason`): RGB datasets
keep every instance of at least 5 frames whatever N, sampling frames with repeats when it has
fewer than N; flow and two-stream datasets count only the flows (at least L). Samples too short
even for that are dropped when the dataset is built, with one warning listing them (and the list
kept in `dropped`), rather than raising: one short instance in a thousand should not stop a
training run. `fpar data check` reports the same samples. Samples whose class is not in `classes`
(e.g. the excluded ``put_tea``) are left out silently: the class list is where exclusion is
decided.

A two-stream clip spreads its N frames over the frames by default, or over the flow count as
Ego-RNN's two-stream dataset does (``rgb_over="flows"``, ``data.two_stream_rgb_over``; see
`DataConfig` for why the default differs).

Randomness (flip, crop, train flow window): an item may be asked for by a key ``(seed, i)`` instead
of the index i (the trainer's loader, `train.batches.RunBatches`, gives the epoch's seed so);
its choices then come from a generator seeded by (seed, i) alone, so an epoch's items are the same
whatever the number of DataLoader workers, and `data.workers` can follow the machine's cores
without changing results. By a plain index they come from torch's global RNG, which DataLoader
seeds per worker (the same items only for the same ``num_workers``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from fpar.config import DataConfig
from fpar.data.frame_cache import FrameCache
from fpar.data.images import read_image as read_array
from fpar.data.layout import RGB_SPANS, Sample, unusable_reason
from fpar.data.sampling import SEGMENT_RULES, eval_flow_start, flow_window, frame_positions, train_flow_start
from fpar.data.transforms import MAP_INTERPOLATION, ClipParams, ClipTransform
from fpar.errors import ConfigError, DataError

BILINEAR = InterpolationMode.BILINEAR


def read_image(path: Path, gray: bool = False) -> torch.Tensor:
    """Decode an image file to a uint8 (C, H, W) tensor (C = 1 if `gray`, else 3).

    `images.read_image` decodes (a DataError naming the file for anything unreadable).
    """
    tensor = torch.from_numpy(read_array(path, gray))
    return tensor[None] if gray else tensor.permute(2, 0, 1)


class ClipDataset(Dataset):
    """Base of the four datasets: `keys` says which modalities an item carries."""

    keys: ClassVar[frozenset[str]]
    rgb_over = "frames"  # what the N frames are spread over; only the two-stream dataset may change it

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], transform: ClipTransform,
                 frames: int = 7, flow_stack: int = 5, segments: int = 1, segment_rule: str = "flow",
                 cache: FrameCache | None = None) -> None:
        """`frames` is N (RGB, maps), `flow_stack` L; `segments` > 1 replaces the single flow window
        (random in training, centre otherwise) with that many, placed by `segment_rule` (a key
        of `sampling.SEGMENT_RULES`: "flow" or "two_stream"); `cache` keeps decoded, shrunk
        images between epochs (None: decode every time)."""
        if frames < 1 or flow_stack < 1 or segments < 1:
            raise ValueError(f"frames, flow_stack and segments must be >= 1, "
                             f"got {frames}, {flow_stack}, {segments}")
        _check_choice("segment_rule", segment_rule, SEGMENT_RULES)
        self.classes = list(classes)
        self.transform = transform
        self.frames = frames
        self.flow_stack = flow_stack
        self.segments = segments
        self.segment_rule = segment_rule
        self.cache = cache
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        usable = [s for s in samples if s.label in self._class_index]
        reasons = {s.id: unusable_reason(s, self.keys, flow_stack, self.rgb_over) for s in usable}
        self.samples = [s for s in usable if reasons[s.id] is None]
        self.dropped = [(s, reasons[s.id]) for s in usable if reasons[s.id] is not None]
        if self.dropped:
            listed = "; ".join(f"{s.id} ({why})" for s, why in self.dropped)
            warnings.warn(f"{type(self).__name__}: dropped {len(self.dropped)} sample(s): {listed}", stacklevel=2)
        if not self.samples:
            first = f", e.g. {self.dropped[0][0].id}: {self.dropped[0][1]}" if self.dropped else ""
            raise DataError(f"{type(self).__name__}: no usable samples among {len(samples)} "
                            f"({len(self.dropped)} too short or incomplete{first})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        """Item `key`: an index, or (seed, index) to draw its random choices from that seed (module doc)."""
        seed, index = key if isinstance(key, tuple) else (None, key)
        sample = self.samples[index]
        generator = None if seed is None else item_generator(seed, index)
        params = self.transform.draw(generator)
        item: dict[str, torch.Tensor | str] = {
            "label": torch.tensor(self._class_index[sample.label], dtype=torch.int64),
            "sample_id": sample.id,
        }
        if "rgb" in self.keys:
            positions = frame_positions(sample.rgb_span(self.rgb_over), self.frames)
            item["rgb"] = self.transform.rgb([self._image(sample.frame(p)) for p in positions], params)
            if "mmaps" in self.keys:  # the maps of the same frames
                maps = [self._image(sample.mmap(p), gray=True, interpolation=MAP_INTERPOLATION) for p in positions]
                item["mmaps"] = self.transform.mmaps(maps, params)
        if "flow" in self.keys:
            item["flow"] = self._flow(sample, params, generator)
        return item

    def _flow(self, sample: Sample, params: ClipParams, generator: torch.Generator | None) -> torch.Tensor:
        if self.segments > 1:
            starts = SEGMENT_RULES[self.segment_rule](sample.n_flows, self.flow_stack, self.segments)
        elif self.transform.train:
            starts = [train_flow_start(sample.n_flows, self.flow_stack, generator)]
        else:
            starts = [eval_flow_start(sample.n_flows, self.flow_stack)]
        stacks = [self._flow_stack(sample, start, params) for start in starts]
        return stacks[0] if self.segments == 1 else torch.stack(stacks)

    def _flow_stack(self, sample: Sample, start: int, params: ClipParams) -> torch.Tensor:
        window = flow_window(start, self.flow_stack)
        xs = [self._image(sample.flow("x", p), gray=True) for p in window]
        ys = [self._image(sample.flow("y", p), gray=True) for p in window]
        return self.transform.flow(xs, ys, params)

    def fill_cache(self) -> int:
        """Put in the cache every image an item can read (RGB frames and maps at their fixed
        positions, every flow image); returns how many reads it made. After it even the first epoch
        decodes no PNG: the state many epochs reach, as flow windows are drawn at random. A no-op
        without a cache."""
        if self.cache is None:
            return 0
        count = 0
        for sample in self.samples:
            if "rgb" in self.keys:
                for p in frame_positions(sample.rgb_span(self.rgb_over), self.frames):
                    self._image(sample.frame(p))
                    count += 1
                    if "mmaps" in self.keys:
                        self._image(sample.mmap(p), gray=True, interpolation=MAP_INTERPOLATION)
                        count += 1
            if "flow" in self.keys:
                for p in range(sample.n_flows):
                    self._image(sample.flow("x", p), gray=True)
                    self._image(sample.flow("y", p), gray=True)
                    count += 2
        return count

    def _image(self, path: Path, gray: bool = False, interpolation: InterpolationMode = BILINEAR) -> torch.Tensor:
        """The image at `path`, decoded and shrunk (`ClipTransform.shrink`), from the cache when there."""
        def make() -> np.ndarray:
            return self.transform.shrink(read_image(path, gray), interpolation).numpy()

        if self.cache is None:
            return torch.from_numpy(make())
        variant = f"{self.transform.resize}/{'L' if gray else 'RGB'}/{interpolation.value}"
        return torch.from_numpy(self.cache.load(path, variant, make, 1 if gray else 3, self.transform.resize))


class RGBClips(ClipDataset):
    """N uniformly sampled RGB frames (the `rgb` model)."""

    keys = frozenset({"rgb"})


class FlowStacks(ClipDataset):
    """One stack of L consecutive warp-flow pairs (the `flow` model)."""

    keys = frozenset({"flow"})


class RGBWithMotionMaps(ClipDataset):
    """RGB frames and their motion maps under the same flip/crop (`rgb_ms`, `rgb_ms_feedback`)."""

    keys = frozenset({"rgb", "mmaps"})


class TwoStreamClips(ClipDataset):
    """RGB frames and a flow stack of the same instance, one draw for both (`two_stream`)."""

    keys = frozenset({"rgb", "flow"})

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], transform: ClipTransform,
                 frames: int = 7, flow_stack: int = 5, segments: int = 1, segment_rule: str = "flow",
                 cache: FrameCache | None = None, rgb_over: str = "frames") -> None:
        """As `ClipDataset`; `rgb_over` "flows" spreads the N frames over the flow count (n - 1),
        as Ego-RNN's two-stream dataset does, instead of the frame count."""
        _check_choice("two_stream_rgb_over", rgb_over, RGB_SPANS)
        self.rgb_over = rgb_over
        super().__init__(samples, classes, transform, frames, flow_stack, segments, segment_rule, cache)


DATASETS: dict[frozenset[str], type[ClipDataset]] = {
    cls.keys: cls for cls in (RGBClips, FlowStacks, RGBWithMotionMaps, TwoStreamClips)
}


def make_dataset(samples: Sequence[Sample], classes: Sequence[str], needs: Iterable[str],
                 cfg: DataConfig, train: bool, segments: int = 1) -> ClipDataset:
    """The dataset giving exactly the inputs a model needs (its `input_keys`), built from `cfg`
    (N, L, sizes, `segment_rule`, `frame_cache`, and `two_stream_rgb_over` for the two-stream dataset)."""
    wanted = frozenset(needs)
    if wanted not in DATASETS:
        known = ", ".join(sorted("{" + ", ".join(sorted(k)) + "}" for k in DATASETS))
        raise DataError(f"no dataset gives inputs {sorted(wanted)}; known input sets: {known}")
    transform = ClipTransform(image_size=cfg.image_size, resize=cfg.resize_side(), train=train)
    kind = DATASETS[wanted]
    options = {"rgb_over": cfg.two_stream_rgb_over} if kind is TwoStreamClips else {}
    return kind(samples, classes, transform, frames=cfg.frames, flow_stack=cfg.flow_stack, segments=segments,
                segment_rule=cfg.segment_rule, cache=FrameCache.from_setting(cfg.frame_cache), **options)


def item_generator(seed: int, index: int) -> torch.Generator:
    """A generator seeded by a mix of (`seed`, `index`): neighbouring pairs give unrelated streams."""
    mixed = np.random.SeedSequence([seed % 2**64, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def _check_choice(option: str, value: str, choices: Iterable[str]) -> None:
    """ConfigError naming the `data.` option when `value` is not one of `choices`."""
    if value not in choices:
        raise ConfigError(f"data.{option} must be one of {', '.join(choices)}, got {value!r}")
