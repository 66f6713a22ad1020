"""The RGB stream (Ego-RNN) and its two options: the MS head and the report's feedback branch.

Input: `batch["rgb"]` (B, T, 3, H, W), ImageNet-normalised frames. Per frame: backbone, CAM
attention on layer4, attended pre-BN layer4 into the ConvLSTM; after the last frame the cell
state c is average-pooled (the reference's feature) and classified.

Two choices of ours, where the reference does not fix them:
- The backbone sees the clip's B*T frames as one batch (only the ConvLSTM is sequential). With BN
  in eval mode, as every reference stage runs it, this equals the per-frame loop of Ego-RNN; in
  train mode BN would pool statistics over all frames of the batch.
- Feedback `two_pass`: pass 1 (unmodulated, no grad) only makes the branch input; it starts from
  pass 2's stem (conv1, bn1, ReLU run once) and runs the trunk's BN in the model's mode (batch
  statistics in train mode) but leaves their running statistics as they were: only the model's
  own pass, pass 2, counts as a batch (the recipes keep BN frozen anyway). `previous_frame` is
  sequential per frame by nature, so it loops over frames; the weight gradients of its small
  trained convolutions (in stage 3: layer4, Conv100, the branch's first convs) are nonetheless
  computed once over all frames (`models.batched_weight_grads`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from fpar.config import ModelConfig
from fpar.errors import ConfigError
from fpar.models.attention import attend, cam_attention
from fpar.models.backbone import FEATURE_CHANNELS, ResNet34Backbone, build_backbone, layer4_side
from fpar.models.batched_weight_grads import batched_weight_grads
from fpar.models.convlstm import ConvLSTMCell
from fpar.models.heads import ClassifierHead, FeedbackBranch, MotionSegmentationHead
from fpar.models.model import ActionModel, StreamOutput
from fpar.models.registry import register_model

FEEDBACK_MODES = ("two_pass", "previous_frame")
RGB_DROPOUT = 0.7


@contextmanager
def running_statistics_kept(*modules: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm layers of `modules` normalise with batch statistics inside the block, but
    their running statistics (and batch count) are put back after it.

    Only for layers that no graph has read yet: the copy back is an in-place write (the stem's bn1,
    already run with grad, must stay out).
    """
    layers = [m for module in modules for m in module.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    saved = [[buffer.clone() for buffer in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in layers]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, (mean, var, count) in zip(layers, saved):
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
                layer.num_batches_tracked.copy_(count)


class FrameFeatures(NamedTuple):
    """Per-frame results, leading dims (N,) or (B, T): attended map, attention, Conv100 output."""

    attended: Tensor
    attention: Tensor
    ms_embedding: Tensor | None


class RGBStream(nn.Module):
    """Attention ConvLSTM over a clip; `ms_head` and `feedback` are optional parts."""

    def __init__(
        self,
        backbone: ResNet34Backbone,
        lstm: ConvLSTMCell,
        ms_head: MotionSegmentationHead | None = None,
        feedback: FeedbackBranch | None = None,
        feedback_mode: str = "two_pass",
    ) -> None:
        super().__init__()
        if feedback_mode not in FEEDBACK_MODES:
            raise ConfigError(f"feedback_mode {feedback_mode!r}: expected one of {', '.join(FEEDBACK_MODES)}")
        if feedback is not None and ms_head is None:
            raise ConfigError("the feedback branch reads the motion-segmentation head: it needs ms_head")
        if backbone.fc is None:
            raise ConfigError("the RGB stream's attention reads the backbone's fc: build it with keep_fc=True")
        self.backbone = backbone
        self.lstm = lstm
        self.ms_head = ms_head
        self.feedback = feedback
        self.feedback_mode = feedback_mode

    @property
    def per_frame(self) -> bool:
        """True where the backbone runs frame by frame (`previous_frame` feedback), not on B*T frames."""
        return self.feedback is not None and self.feedback_mode == "previous_frame"

    def _frames(self, stem: Tensor, source: Tensor | None) -> FrameFeatures:
        """The backbone's trunk on `stem` (modulated by `source` when given), attention and MS embedding."""
        if source is not None:
            stem = self.feedback(source, stem)
        features = self.backbone.trunk(stem)
        attention = cam_attention(self.backbone.fc.weight, features.logits, features.layer4)
        embedding = None if self.ms_head is None else self.ms_head.embed(features.layer4)
        return FrameFeatures(attend(features.layer4_pre_bn, attention), attention, embedding)

    def _encode_batched(self, frames: Tensor) -> FrameFeatures:
        """All frames in one batch; with feedback (`two_pass`), pass 1 without grad makes the
        branch input and pass 2 is the modulated model."""
        stem = self.backbone.stem(frames)
        source = None
        if self.feedback is not None:  # pass 1 shares pass 2's stem: the same conv1 output, computed once
            with torch.no_grad(), running_statistics_kept(*self.backbone.trunk_layers):
                source = self.ms_head.embed(self.backbone.trunk(stem).layer4)
        return self._frames(stem, source)

    def _encode_previous_frame(self, clip: Tensor) -> FrameFeatures:
        """Frame t modulated by frame t-1's (detached) Conv100 output; frame 0 unmodulated.

        The frames' graphs are independent (the source is detached), so the small convolutions'
        weight gradients can wait for all frames and run as one batch (`batched_weight_grads`)."""
        per_frame: list[FrameFeatures] = []
        source = None
        with batched_weight_grads(self):
            for frame in clip.unbind(1):
                out = self._frames(self.backbone.stem(frame), source)
                source = out.ms_embedding.detach()
                per_frame.append(out)
        return FrameFeatures(*(torch.stack(field, dim=1) for field in zip(*per_frame)))

    def _encode(self, clip: Tensor) -> FrameFeatures:
        if self.per_frame:
            return self._encode_previous_frame(clip)
        batch, steps = clip.shape[:2]
        flat = self._encode_batched(clip.flatten(0, 1))
        return FrameFeatures(*(None if x is None else x.unflatten(0, (batch, steps)) for x in flat))

    def forward(self, clip: Tensor) -> StreamOutput:
        frames = self._encode(clip)
        cell = self.lstm.run(frames.attended.unbind(1))[1]
        ms_logits = None
        if self.ms_head is not None:
            ms_logits = self.ms_head.classify(frames.ms_embedding.flatten(0, 1)).unflatten(0, clip.shape[:2])
        return StreamOutput(
            features=cell.mean(dim=(2, 3)), feature_maps=cell, attention=frames.attention, ms_logits=ms_logits
        )


def rgb_stream(cfg: ModelConfig, motion_segmentation: bool = False, feedback: bool = False) -> RGBStream:
    """The RGB stream of `cfg`, with the MS head (sized for cfg.image_size) and feedback on demand."""
    ms_head = None
    if motion_segmentation:
        ms_head = MotionSegmentationHead(FEATURE_CHANNELS, layer4_side(cfg.image_size), cfg.ms_variant)
    return RGBStream(
        build_backbone(cfg.weights),
        ConvLSTMCell(FEATURE_CHANNELS, cfg.mem_size),
        ms_head=ms_head,
        feedback=FeedbackBranch() if feedback else None,
        feedback_mode=cfg.feedback_mode,
    )


def _rgb_model(cfg: ModelConfig, **options: bool) -> ActionModel:
    head = ClassifierHead(cfg.mem_size, cfg.num_classes, RGB_DROPOUT)
    return ActionModel({"rgb": rgb_stream(cfg, **options)}, head)


@register_model("rgb")
def build_rgb(cfg: ModelConfig) -> ActionModel:
    """Ego-RNN: ResNet-34, CAM attention, ConvLSTM (ConvLSTM)."""
    return _rgb_model(cfg)


@register_model("rgb_ms")
def build_rgb_ms(cfg: ModelConfig) -> ActionModel:
    """rgb + motion-segmentation head (SparNet baseline)."""
    return _rgb_model(cfg, motion_segmentation=True)


@register_model("rgb_ms_feedback")
def build_rgb_ms_feedback(cfg: ModelConfig) -> ActionModel:
    """rgb_ms + feedback branch modulating conv1 (the report's model)."""
    return _rgb_model(cfg, motion_segmentation=True, feedback=True)
