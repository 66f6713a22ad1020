"""Ego-RNN's spatial attention: the backbone's own class activation map, as a softmax.

No parameters of its own: it reads the backbone's fc. The class is the fc's top class (argmax,
not differentiable), so the fc's bias only picks the class and never receives a gradient, as in
the reference; the fc's weights do, through the map.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cam_attention(fc_weight: Tensor, logits: Tensor, layer4: Tensor) -> Tensor:
    """The attention map (B, h, w): softmax over h*w of the top class's CAM on BN layer4.

    `fc_weight` (classes, C), `logits` (B, classes), `layer4` (B, C, h, w) after BN + ReLU.
    """
    class_weight = fc_weight[logits.argmax(dim=1)]  # (B, C)
    cam = torch.einsum("bc,bchw->bhw", class_weight, layer4)
    return cam.flatten(1).softmax(dim=1).view_as(cam)


def attend(features: Tensor, attention: Tensor) -> Tensor:
    """Features (B, C, h, w) weighted by the map (B, h, w); Ego-RNN weights layer4's pre-BN map."""
    return features * attention.unsqueeze(1)
