"""Class activation maps for every model, one map per frame of the input (DESIGN section 2).

How a map is made (docs/cam.md says the same for users):

* The clip. The checkpoint's N frames are sampled from the video by the reference's rule
  (`frame_positions`; an image is a clip of N copies of itself); flow models read the centre
  window of L flows (`eval_flow_start`). The model classifies this clip once; its top class is
  the *target* every map explains.
* The frame-wise targets. Each stream's spatial maps per frame: for an RGB stream the attended
  layer4 map of each frame as it enters the ConvLSTM, for the flow stream its layer4 map of a
  window (`ModelOutput.feature_maps`). `clip_evidence` records them with hooks during the clip's
  forward pass and takes the gradient of the target logit with respect to them (one backward).
* Every frame gets a map. The frame-wise part (backbone, attention) then runs on every frame of
  the video; a frame's map weighs its own activations with the gradient of the clip slot that
  read it (summed when several slots read it, as for an image), else of the nearest slot. The
  flow stream runs on windows of L flows tiling the video; a window gives its map to the frames
  it covers (window s..s+L-1 to frames s..s+L-1; the last frame has no flow and takes the last
  window's map). For `two_stream` the RGB and flow terms add up before the ReLU, as the 1024
  channels of its feature map would.
* Methods. `gradcam` weighs a channel by its mean gradient (Selvaraju et al.), `gradcam++` by
  the positive gradients with Chattopadhay et al.'s closed-form alphas; `attention` is the RGB
  stream's own spatial attention (Ego-RNN's CAM of the backbone's top ImageNet-fc class, the map
  the model itself used; flow models have none).
* Normalisation is per video, not per frame: all maps of an input are scaled together to [0, 1]
  (min to 0, max to 1), so a frame with little evidence looks weak instead of being stretched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpar.data.sampling import eval_flow_start, frame_positions
from fpar.errors import ConfigError, DataError, FparError
from fpar.explain.media import Media
from fpar.io.video import decode, resize
from fpar.models.checkpoints import CheckpointMeta
from fpar.options import DEFAULT_FRAME_SIZE, Size
from fpar.prepare.flow import warp_flow_images

METHODS = ("attention", "gradcam", "gradcam++")
CHUNK = 16  # frames or flow windows per forward pass when mapping every frame
Progress = Callable[[str, int, int], None]  # (what is being done, units done, units in all)


@dataclass
class ClipEvidence:
    """One forward and backward pass over the clip.

    `activations[key]` and `gradients[key]` (M, C, h, w) per stream key: M = N frames for an RGB
    stream, 1 window for the flow stream.
    """

    logits: Tensor
    target: int
    activations: dict[str, Tensor]
    gradients: dict[str, Tensor]


@dataclass
class CamResult:
    """A model's answer on one input and its map for every frame."""

    label: str  # how figures name the model (its registry name, or the checkpoint when ambiguous)
    class_names: list[str]
    probabilities: np.ndarray  # (classes,), softmax of the clip's logits
    target: int  # the class the maps explain: the clip's prediction
    maps: np.ndarray  # (n frames, h, w) float32 in [0, 1], normalised over the whole input
    sampled: list[int]  # the frame positions the clip read
    method: str

    @property
    def predicted(self) -> str:
        return self.class_names[self.target]

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes with their probabilities, best first."""
        order = np.argsort(-self.probabilities)[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]


# ---- evidence: target maps and their gradients, for any model ------------------------------------

@contextmanager
def capture_targets(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """While open, each forward records every stream's frame-wise target maps (module docstring):
    the input of a stream's recurrent cell at each step where it has one (`lstm`), else the
    stream's `feature_maps`. Lists per stream key, one tensor (B, C, h, w) per step or call."""
    captured: dict[str, list[Tensor]] = {key: [] for key in model.streams}
    handles = []
    for key, stream in model.streams.items():
        store = captured[key]
        cell = getattr(stream, "lstm", None)
        if cell is not None:
            handles.append(cell.register_forward_pre_hook(lambda _m, args, store=store: store.append(args[0])))
        else:
            handles.append(stream.register_forward_hook(
                lambda _m, _args, out, store=store: store.append(out.feature_maps)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def clip_evidence(model: nn.Module, batch: Mapping[str, Tensor], target: int | None = None) -> ClipEvidence:
    """Run `model` on a one-clip batch; return its logits, the target (`target`, or the top
    class) and each stream's target maps with the gradient of the target logit.

    The inputs are made to require grad, so the graph exists even where no weight does (a
    frozen model)."""
    inputs = {key: value.detach().requires_grad_() for key, value in batch.items()}
    with capture_targets(model) as captured, torch.enable_grad():
        logits = model(inputs).logits[0]
        target = int(logits.argmax()) if target is None else target
        keys = [key for key in captured if captured[key]]
        flat = [t for key in keys for t in captured[key]]
        grads = iter(torch.autograd.grad(logits[target], flat, allow_unused=True))
        gradients = {}
        for key in keys:
            per_step = [next(grads) for _ in captured[key]]
            gradients[key] = torch.stack([torch.zeros_like(t) if g is None else g
                                          for g, t in zip(per_step, captured[key])], dim=1)[0]
    activations = {key: torch.stack(captured[key], dim=1)[0].detach() for key in keys}
    return ClipEvidence(logits.detach(), target, activations, gradients)


# ---- methods: channel weights from activations and gradients -------------------------------------

def gradcam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM: a channel's weight is its gradient averaged over positions. (M, C, h, w) -> (M, C)."""
    return gradients.mean(dim=(-2, -1))


def gradcam_pp_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++: positive gradients weighted by alpha = g^2 / (2 g^2 + sum(A) g^3) (0 where the
    denominator is 0), summed over positions. (M, C, h, w) -> (M, C)."""
    g2 = gradients.pow(2)
    denominator = 2 * g2 + activations.sum(dim=(-2, -1), keepdim=True) * gradients.pow(3)
    alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return (alpha * F.relu(gradients)).sum(dim=(-2, -1))


WEIGHTS = {"gradcam": gradcam_weights, "gradcam++": gradcam_pp_weights}


def weighted_maps(activations: Tensor, gradients: Tensor, method: str) -> Tensor:
    """The maps before the ReLU: sum over channels of weight x activation. (M, C, h, w) -> (M, h, w)."""
    return torch.einsum("mc,mchw->mhw", WEIGHTS[method](activations, gradients), activations)


def normalise(maps: Tensor) -> np.ndarray:
    """Min-max over the whole input (all frames together) to float32 [0, 1]; a flat input is 0."""
    low, high = maps.min(), maps.max()
    scaled = (maps - low) / (high - low) if high > low else torch.zeros_like(maps)
    return scaled.float().numpy()


# ---- model inputs ---------------------------------------------------------------------------------

def check_method(method: str, model: nn.Module, name: str) -> None:
    """ConfigError for an unknown method; FparError for `attention` on a model without attention."""
    if method not in METHODS:
        raise ConfigError(f"CAM method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "attention" and "rgb" not in model.streams:
        raise FparError(f"model {name!r} has no spatial attention (it is an RGB stream's); use gradcam or gradcam++")


def clip_positions(n_frames: int, count: int) -> list[int]:
    """The N frame positions the clip reads: the reference's rule, or N copies of a lone frame."""
    return [0] * count if n_frames == 1 else frame_positions(n_frames, count)


def normalised(images: np.ndarray, stats: Mapping[str, list[float]]) -> Tensor:
    """uint8 (..., C, S, S) -> float, scaled to [0, 1] and normalised with the checkpoint's statistics."""
    x = torch.from_numpy(images).float().div_(255)
    shape = (-1, 1, 1)
    mean, std = torch.tensor(stats["mean"]).view(shape), torch.tensor(stats["std"]).view(shape)
    return (x - mean) / std


def model_frames(frames: np.ndarray, image_size: int) -> np.ndarray:
    """Display frames (n, H, W, 3) -> uint8 (n, 3, S, S), resized (whole frame) to the model's size."""
    return np.stack([resize(f, (image_size, image_size)) for f in frames]).transpose(0, 3, 1, 2)


def flow_images(media: Media, meta: CheckpointMeta, frame_size: Size | None = DEFAULT_FRAME_SIZE,
                progress: Progress | None = None) -> np.ndarray:
    """uint8 (n-1, 2, S, S) flow x/y images, made as `fpar prepare` makes them: the video decoded
    at `frame_size`, gray, warp flow (default method), quantised to 8 bits; then resized to S."""
    n = len(media.frames)
    if not media.is_video or n - 1 < meta.flow_stack:
        what = "an image" if not media.is_video else f"a video of {n} frames"
        raise DataError(f"{media.path}: model {meta.model_name!r} reads a stack of {meta.flow_stack} flows, "
                        f"so it needs a video of at least {meta.flow_stack + 1} frames, not {what}")
    side = (meta.image_size, meta.image_size)
    frames = (rgb for _, rgb in decode(media.path, frame_size, last=n - 1))
    images = []
    for index, (x, y) in enumerate(warp_flow_images(frames), 1):
        images.append(np.stack([resize(x, side), resize(y, side)]))
        if progress:
            progress("optical flow", index, n - 1)
    return np.stack(images)


def stack_windows(flows: np.ndarray, starts: list[int], stack: int) -> np.ndarray:
    """uint8 (W, 2L, S, S) stacks interleaved x1, y1, x2, y2, ... from (n-1, 2, S, S) flows."""
    return np.stack([flows[s:s + stack].reshape(2 * stack, *flows.shape[2:]) for s in starts])


def window_starts(n_flows: int, stack: int) -> list[int]:
    """Windows of `stack` flows tiling 0..n_flows-1; the last one ends on the last flow."""
    starts = list(range(0, n_flows - stack + 1, stack))
    if starts[-1] + stack < n_flows:
        starts.append(n_flows - stack)
    return starts


def frame_windows(n_frames: int, starts: list[int], stack: int) -> np.ndarray:
    """For each frame, the index of the first window covering it (the last frame: the last window)."""
    covering = [next((i for i, s in enumerate(starts) if s <= f < s + stack), len(starts) - 1)
                for f in range(n_frames)]
    return np.array(covering)


def nearest_read(n_frames: int, positions: list[int]) -> np.ndarray:
    """For each frame, the nearest frame position the clip read (itself when it was read)."""
    read = np.unique(positions)
    return read[np.abs(np.arange(n_frames)[:, None] - read[None, :]).argmin(axis=1)]


# ---- every frame ------------------------------------------------------------------------------------

def explain(model: nn.Module, meta: CheckpointMeta, media: Media, method: str = "gradcam",
            label: str | None = None, flow_size: Size | None = DEFAULT_FRAME_SIZE,
            progress: Progress | None = None) -> CamResult:
    """Classify `media` as one clip and give every frame its map for the predicted class."""
    check_method(method, model, meta.model_name)
    n, keys = len(media.frames), tuple(model.streams)
    frames = model_frames(media.frames, meta.image_size) if "rgb" in keys else None
    flows = flow_images(media, meta, flow_size, progress) if "flow" in keys else None
    positions = clip_positions(n, meta.frames)
    batch = {}
    if frames is not None:
        batch["rgb"] = normalised(frames[positions], meta.normalization["rgb"])[None]
    if flows is not None:
        start = eval_flow_start(len(flows), meta.flow_stack)
        batch["flow"] = normalised(stack_windows(flows, [start], meta.flow_stack), meta.normalization["flow"])
    evidence = clip_evidence(model, batch)
    maps = torch.zeros(())
    if frames is not None:
        maps = maps + _rgb_maps(model, meta, frames, evidence, positions, method, progress)
    if flows is not None and method != "attention":
        maps = maps + _flow_maps(model, meta, flows, evidence, n, method)
    if method != "attention":
        maps = F.relu(maps)
    return CamResult(label or meta.model_name, list(meta.class_names), evidence.logits.softmax(0).numpy(),
                     evidence.target, normalise(maps), positions, method)


def _rgb_maps(model: nn.Module, meta: CheckpointMeta, frames: np.ndarray, evidence: ClipEvidence,
              positions: list[int], method: str, progress: Progress | None) -> Tensor:
    """(n, h, w): the RGB stream on every frame; its attention, or its Grad-CAM term.

    Frames go through the stream in chunks, as short clips: frames are independent there, except
    under `previous_frame` feedback, where each frame's modulation comes from the one before it
    all the way back, so the whole video is one chunk (that mode runs frame by frame anyway, so
    memory stays per frame)."""
    stream, n = model.streams["rgb"], len(frames)
    chunk_size = n if stream.per_frame else CHUNK
    slot_gradients = evidence.gradients["rgb"]
    summed = torch.zeros(n, *slot_gradients.shape[1:]).index_add_(0, torch.tensor(positions), slot_gradients)
    gradient_of = nearest_read(n, positions)
    parts = []
    for first in range(0, n, chunk_size):
        chunk = normalised(frames[first:first + chunk_size], meta.normalization["rgb"])[None]
        with capture_targets(model) as captured, torch.no_grad():
            attention = stream(chunk).attention[0]
        if method == "attention":
            parts.append(attention)
        else:
            activations = torch.cat(captured["rgb"])
            parts.append(weighted_maps(activations, summed[gradient_of[first:first + chunk_size]], method))
        if progress:
            progress("frames", min(first + chunk_size, n), n)
    return torch.cat(parts)


def _flow_maps(model: nn.Module, meta: CheckpointMeta, flows: np.ndarray, evidence: ClipEvidence,
               n_frames: int, method: str) -> Tensor:
    """(n, h, w): the flow stream's Grad-CAM term of every window, given to the frames it covers."""
    stream, stack = model.streams["flow"], meta.flow_stack
    starts = window_starts(len(flows), stack)
    gradient = evidence.gradients["flow"]
    parts = []
    for first in range(0, len(starts), CHUNK):
        stacks = normalised(stack_windows(flows, starts[first:first + CHUNK], stack), meta.normalization["flow"])
        with torch.no_grad():
            activations = stream(stacks).feature_maps
        parts.append(weighted_maps(activations, gradient.expand_as(activations), method))
    return torch.cat(parts)[torch.from_numpy(frame_windows(n_frames, starts, stack))]


def label_checkpoints(paths: list[Path], metas: list[CheckpointMeta]) -> list[str]:
    """Names for figures: the model name, or `model (parent/file)` where two share a model name."""
    names = [meta.model_name for meta in metas]
    return [name if names.count(name) == 1 else f"{name} ({Path(p).parent.name}/{Path(p).name})"
            for name, p in zip(names, paths)]
