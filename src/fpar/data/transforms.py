"""Clip-consistent spatial transforms: one draw per clip, applied to all of its images.

A clip's frames, its motion maps and its flow images get the same flip and the same crop, so
motion maps stay aligned with their frames and a flow stack stays one coherent motion field.
The numbers follow Ego-RNN's training recipe (DESIGN section 7), scaled by `resize`/`image_size`
so the demo can run at 112 (resize 128) with the same code:

* train: short side to `resize`, horizontal flip with p=0.5, a square crop of a random share
  (1, 0.875, 0.75, 0.65625) of the short side at a random one of 5 positions (4 corners, centre),
  resized to `image_size`;
* test: short side to `resize`, centre crop of `image_size`.

Then RGB is normalised with ImageNet's mean/std, flow (8-bit grayscale) with their averages
(0.449, 0.226) as the reference does; motion maps are resized nearest-neighbour, never
normalised, and come out as 0/1 labels. Nearest-neighbour as PIL computes it, which the reference
used on its mode-"1" maps: each output pixel reads the source pixel under its centre
(`NEAREST_EXACT`); torch's plain `NEAREST` reads the top-left one, half a pixel off. On a flip, x-flow images are also inverted
(255 - v): mirroring the image reverses horizontal motion, and 8-bit flow stores -u as 255 - u.

Deliberate differences from the reference: its top-right and bottom-left crops start at pixel 1
and are one pixel narrower than square (an off-by-one); ours are exact squares at the corners.
The flip is drawn independently of the crop, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import InterpolationMode

from fpar.data.layout import MAP_THRESHOLD
from fpar.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLOW_MEAN = 0.449  # mean of IMAGENET_MEAN, as the reference normalises 1-channel flow
FLOW_STD = 0.226  # mean of IMAGENET_STD
# The same constants per input key, as checkpoints store them ({key: {"mean": [...], "std": [...]}}).
NORMALIZATION: dict[str, dict[str, list[float]]] = {
    "rgb": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    "flow": {"mean": [FLOW_MEAN], "std": [FLOW_STD]},
}
MAP_INTERPOLATION = InterpolationMode.NEAREST_EXACT  # motion maps: the pixel under each centre, as PIL
SCALES = (1.0, 0.875, 0.75, 0.65625)
CORNERS = ("c", "tl", "tr", "bl", "br")


@dataclass(frozen=True)
class ClipParams:
    """The random choices for one clip. The defaults are the test transform (no flip, centre)."""

    flip: bool = False
    scale: float | None = None  # share of the short side to crop and resize; None: centre crop of image_size
    corner: str = "c"  # c, tl, tr, bl, br


def crop_box(height: int, width: int, params: ClipParams, image_size: int) -> tuple[int, int, int]:
    """(top, left, side) of the square crop `params` selects in a height x width image."""
    side = int(min(height, width) * params.scale) if params.scale is not None else image_size
    free_y, free_x = height - side, width - side
    top, left = {
        "c": (int(round(free_y / 2)), int(round(free_x / 2))),
        "tl": (0, 0),
        "tr": (0, free_x),
        "bl": (free_y, 0),
        "br": (free_y, free_x),
    }[params.corner]
    return top, left, side


def _choice(options: Sequence, generator: torch.Generator | None):
    return options[int(torch.randint(len(options), (), generator=generator))]


@dataclass(frozen=True)
class ClipTransform:
    """Train or test transform at a given size; `draw` once per clip, then transform each modality.

    Images come in as uint8 tensors (C, H, W), as `datasets.read_image` returns them. The crop
    box is computed per image from the drawn share and corner, so frames and flow images of
    different sizes still get the same relative crop.
    """

    image_size: int = 224
    resize: int = 256
    train: bool = False
    scales: tuple[float, ...] = SCALES

    def __post_init__(self) -> None:
        if not 0 < self.image_size <= self.resize:
            raise ConfigError(f"data.image_size ({self.image_size}) must be > 0 and not exceed "
                              f"data.resize ({self.resize}), the short side before cropping")

    def draw(self, generator: torch.Generator | None = None) -> ClipParams:
        """One clip's choices; `generator` None uses torch's global RNG (seeded per worker)."""
        if not self.train:
            return ClipParams()
        flip = bool(torch.rand((), generator=generator) < 0.5)
        return ClipParams(flip=flip, scale=_choice(self.scales, generator), corner=_choice(CORNERS, generator))

    def shrink(self, image: torch.Tensor, interpolation: InterpolationMode) -> torch.Tensor:
        """`image` with its short side at `resize`: the part of the transform that is the same every
        epoch, which is why `frame_cache.FrameCache` keeps its output. An image already at that
        size passes through unchanged (torchvision returns it as it is), so `rgb`, `flow` and
        `mmaps` take images shrunk here or not, with the same result."""
        return F.resize(image, [self.resize], interpolation=interpolation, antialias=True)

    def rgb(self, frames: Sequence[torch.Tensor], params: ClipParams) -> torch.Tensor:
        """(T, 3, S, S) float frames, ImageNet-normalised."""
        clip = torch.stack([self._geometry(f, params, InterpolationMode.BILINEAR) for f in frames])
        return F.normalize(F.to_dtype(clip, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD))

    def flow(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], params: ClipParams) -> torch.Tensor:
        """(2L, S, S) float stack interleaved x1, y1, x2, y2, ...; x inverted when flipped."""
        planes = []
        for x, y in zip(xs, ys, strict=True):
            planes.append(self._geometry(x, params, InterpolationMode.BILINEAR, negate_on_flip=True))
            planes.append(self._geometry(y, params, InterpolationMode.BILINEAR))
        stack = F.to_dtype(torch.cat(planes), torch.float32, scale=True)
        return (stack - FLOW_MEAN) / FLOW_STD

    def mmaps(self, maps: Sequence[torch.Tensor], params: ClipParams) -> torch.Tensor:
        """(T, S, S) int64 labels, 1 = moving; nearest-neighbour so no label is blended."""
        clip = torch.stack([self._geometry(m, params, MAP_INTERPOLATION) for m in maps])
        return (clip[:, 0] > MAP_THRESHOLD).long()

    def _geometry(self, image: torch.Tensor, params: ClipParams, interpolation: InterpolationMode,
                  negate_on_flip: bool = False) -> torch.Tensor:
        image = self.shrink(image, interpolation)
        if params.flip:
            image = F.hflip(image)
            if negate_on_flip:
                image = 255 - image
        top, left, side = crop_box(image.shape[-2], image.shape[-1], params, self.image_size)
        if params.scale is None:
            return F.crop(image, top, left, side, side)
        return F.resized_crop(image, top, left, side, side, [self.image_size, self.image_size],
                              interpolation=interpolation, antialias=True)
