"""`train.channels_last`: each model in its fastest channels_last form, and inputs to match.

oneDNN (CPU) and cuDNN compute a convolution in NHWC when its input *or* its weight is
channels_last; autograd gives each gradient its parameter's layout. Two forms were timed in turns
on the same batches (bf16 autocast, the 2-core CPU; docs/bench.md):
- weights channels_last (`model.to(memory_format=channels_last)`): best where the whole ResNet
  trains, i.e. the flow stream (0.114 s a demo step, against 0.130 s with NCHW weights);
- weights NCHW, activations channels_last because the inputs are: best for the RGB stream, whose
  backbone is mostly frozen and whose ConvLSTM weights are large (rgb stage 1 at 224: 0.256 s
  against 0.279 s; rgb_ms stage 2: 0.343 against 0.390 s): the fused Adam step was 2x slower on
  channels_last gradients (ten 512x512x3x3 tensors: 20 ms against 9-10 ms).
So `channels_last_model` converts every stream but the RGB stream, and `channels_last_input` lays
out images (N, C, H, W) channels_last and clips (B, T, C, H, W) so that the frames the RGB stream
flattens are channels_last.

The exception is the backbone of an RGB stream with `previous_frame` feedback: it runs once per
frame, and with NCHW weights each of its convolutions re-lays out its weight on every frame, forward
and backward. There channels_last weights more than repay the Adam cost (stage 3, bf16, timed in
turns: 0.681 s against 0.790 at 224, 0.554 against 0.607 at the demo size; each step alone in its
process, against rgb_ms: docs/bench.md, "Feedback"). Its ConvLSTM stays NCHW as in every RGB
stream (it runs step by step whatever the mode); that was 0-7% faster than converting it too (each
variant alone in its process, three runs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fpar.models.rgb import RGBStream


def channels_last_model(model: nn.Module) -> nn.Module:
    """`model` (in place) with channels_last weights except in RGB streams, where only a backbone
    run frame by frame is converted (module doc)."""
    model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, RGBStream):
            module.to(memory_format=torch.contiguous_format)
            if module.per_frame:
                module.backbone.to(memory_format=torch.channels_last)
    return model


def channels_last_input(value: Tensor) -> Tensor:
    """A float image batch (N, C, H, W) or clip (B, T, C, H, W) in channels_last; anything else as it is."""
    if not value.is_floating_point():
        return value
    if value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    if value.dim() == 5:  # (B, T, H, W, C) in memory: flatten(0, 1) then gives channels_last frames
        return value.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return value
