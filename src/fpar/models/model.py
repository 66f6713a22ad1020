"""The one model class and its typed output: every registered model is streams + a classifier.

A model reads a batch dict (DESIGN section 8): each stream reads its own key (`"rgb"` clips
(B, T, 3, H, W), `"flow"` stacks (B, 2L, H, W)) and gives a pooled feature and the spatial map it
was pooled from; the features are concatenated (flow first, then RGB, as Ego-RNN's two-stream
model does) and classified. Keys a model does not read (`"label"`, `"sample_id"`, `"mmaps"`) are
ignored, so the trainer passes the whole batch and never special-cases a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fpar.errors import DataError
from fpar.models.heads import ClassifierHead


@dataclass
class StreamOutput:
    """What one stream gives the classifier.

    `features` (B, D) is the spatial mean of `feature_maps` (B, D, h, w); the optional fields are
    per-frame extras of the RGB stream.
    """

    features: Tensor
    feature_maps: Tensor
    attention: Tensor | None = None
    ms_logits: Tensor | None = None


@dataclass
class ModelOutput:
    """The output of every registered model.

    - `logits` (B, classes).
    - `features` (B, D): the classifier's input (before its dropout); D = 512 for one stream,
      1024 for `two_stream` (flow half first).
    - `feature_maps` (B, D, h, w): `features` is their spatial mean, and the classifier is linear,
      so `classifier.fc.weight[k] @ feature_maps` is the class-activation map of class k for every
      model (RGB: the ConvLSTM's last cell state; flow: layer4).
    - `attention` (B, T, h, w) or None: the RGB stream's spatial attention per frame, a softmax
      over layer4's h*w positions (sums to 1 per frame).
    - `ms_logits` (B, T, K, s, s) or None: the motion-segmentation head per frame; K = 2
      (not moving / moving, for per-pixel cross entropy over dim 2) or K = 1 for the regression
      variant (a logit: apply sigmoid before MSE).
    """

    logits: Tensor
    features: Tensor
    feature_maps: Tensor
    attention: Tensor | None = None
    ms_logits: Tensor | None = None


def _first_present(values: list[Tensor | None]) -> Tensor | None:
    return next((value for value in values if value is not None), None)


def _missing_key(key: str, input_keys: tuple[str, ...], batch: Mapping[str, Tensor]) -> None:
    raise DataError(f"batch has no {key!r} key: this model reads {', '.join(input_keys)} (model.input_keys); "
                    f"the batch has {', '.join(map(str, batch)) or 'no keys'}")


class ActionModel(nn.Module):
    """Streams keyed by the batch key they read, then one classifier over their features.

    `input_keys` names the batch keys the model needs, so the data layer can pick its dataset:
    the stream keys, plus `"mmaps"` when a stream has a motion-segmentation head (its targets).
    """

    def __init__(self, streams: Mapping[str, nn.Module], classifier: ClassifierHead) -> None:
        super().__init__()
        self.streams = nn.ModuleDict(streams)
        self.classifier = classifier
        needs_mmaps = any(getattr(stream, "ms_head", None) is not None for stream in streams.values())
        self.input_keys: tuple[str, ...] = (*streams, *(("mmaps",) if needs_mmaps else ()))

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        for key in self.streams:
            if key not in batch:  # a Python-side dict check: dynamo guards on the keys, no graph break
                _missing_key(key, self.input_keys, batch)
        outputs: list[StreamOutput] = [stream(batch[key]) for key, stream in self.streams.items()]
        features = torch.cat([out.features for out in outputs], dim=1)
        return ModelOutput(
            logits=self.classifier(features),
            features=features,
            feature_maps=torch.cat([out.feature_maps for out in outputs], dim=1),
            attention=_first_present([out.attention for out in outputs]),
            ms_logits=_first_present([out.ms_logits for out in outputs]),
        )
