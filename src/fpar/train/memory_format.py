"""`train.channels_last`: the activations in channels_last (NHWC), the weights left NCHW.

oneDNN (CPU) and cuDNN compute a convolution in NHWC when its input *or* its weight is
channels_last, so converting the inputs is enough for the whole network to run in NHWC: the first
convolution's output is channels_last and batch norm, ReLU and pooling keep it. The weights stay
NCHW on purpose: autograd gives a gradient the layout of its parameter, and the fused Adam step
was 2x slower on channels_last gradients (20 against 9-10 ms for ten 512x512x3x3 tensors on the
2-core CPU). Measured against converting the model as well (`model.to(channels_last)`), in turns
on the same batch, bf16 autocast: 4-12% faster a step at 224 (rgb stage 1 0.256 against 0.279 s,
rgb_ms stage 2 0.343 against 0.390 s), equal or up to 5% faster at the demo size, 8-10% faster in
fp32 at 224.

Clips are (B, T, C, H, W); the RGB stream flattens them to B*T frames. A clip is laid out here so
that this flattening is a view whose frames are channels_last.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_channels_last(value: Tensor) -> Tensor:
    """A float image batch (N, C, H, W) or clip (B, T, C, H, W) in channels_last; anything else as it is."""
    if not value.is_floating_point():
        return value
    if value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    if value.dim() == 5:  # (B, T, H, W, C) in memory: flatten(0, 1) then gives channels_last frames
        return value.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return value
