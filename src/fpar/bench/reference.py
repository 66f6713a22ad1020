"""The RGB models computed the way the reference code computes them: the bench's baseline.

Ego-RNN's training loop feeds one frame at a time through the whole backbone (attention and MS
head included) and steps a ConvLSTM whose eight gate convolutions run one by one; the feedback
branch runs at the stem's size, in the design's order. This module
does exactly that with the parameters of an fpar model (it holds the model, so both share every
weight), in fp32, so the bench compares fpar's batched form with it on the same batch and checks
that both give the same outputs. It lives here, not in `fpar.models`: nothing trains with it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpar.models.attention import attend, cam_attention
from fpar.models.convlstm import GATES, ConvLSTMCell
from fpar.models.heads import FeedbackBranch
from fpar.models.model import ActionModel, ModelOutput


def design_order_feedback(branch: FeedbackBranch, source: Tensor, stem: Tensor) -> Tensor:
    """The feedback as the design writes it: Conv100's output upsampled to the stem's size, then
    both branches there (fpar runs each branch's first conv before the upsampling)."""
    source = F.interpolate(source, size=stem.shape[-2:], mode="bilinear", align_corners=False)
    return (1 + branch.delta_beta(source)) * stem + branch.gamma(source)


def eight_conv_step(cell: ConvLSTMCell, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """One ConvLSTM step with a separate convolution per gate and per input, as Ego-RNN's cell."""
    h, c = state
    gate = {g: cell.x_convs[g](x) + cell.h_convs[g](h) for g in GATES}
    c = torch.sigmoid(gate["i"]) * torch.tanh(gate["c"]) + torch.sigmoid(gate["f"]) * c
    return torch.sigmoid(gate["o"]) * torch.tanh(c), c


class ReferenceStyle(nn.Module):
    """`model` (an RGB-stream model: rgb, rgb_ms, rgb_ms_feedback) computed frame by frame."""

    def __init__(self, model: ActionModel) -> None:
        super().__init__()
        if set(model.streams) != {"rgb"}:
            raise ValueError(f"the reference-style baseline is for RGB-stream models, not streams {list(model.streams)}")
        self.model = model

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        stream, clip = self.model.streams["rgb"], batch["rgb"]
        backbone, head = stream.backbone, stream.ms_head
        state = None
        attentions, ms_logits, source = [], [], None
        for t in range(clip.shape[1]):
            frame = clip[:, t]
            if stream.feedback is not None and stream.feedback_mode == "two_pass":
                with torch.no_grad():
                    source = head.embed(backbone(frame).layer4)
            stem = backbone.stem(frame)
            if stream.feedback is not None and source is not None:
                stem = design_order_feedback(stream.feedback, source, stem)
            features = backbone.trunk(stem)
            attention = cam_attention(backbone.fc.weight, features.logits, features.layer4)
            attended = attend(features.layer4_pre_bn, attention)
            state = eight_conv_step(stream.lstm, attended, state or stream.lstm.initial_state(attended))
            attentions.append(attention)
            if head is not None:
                embedding = head.embed(features.layer4)
                ms_logits.append(head.classify(embedding))
                source = embedding.detach()  # previous_frame: the next frame's modulation
        cell = state[1]
        features = cell.mean(dim=(2, 3))
        return ModelOutput(logits=self.model.classifier(features), features=features, feature_maps=cell,
                           attention=torch.stack(attentions, dim=1),
                           ms_logits=torch.stack(ms_logits, dim=1) if ms_logits else None)
