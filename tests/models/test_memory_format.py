"""`train.channels_last`: which weights are converted, and inputs laid out so the frames are channels_last."""

from __future__ import annotations

import torch
from model_testkit import small_config

from fpar.models.memory_format import channels_last_input, channels_last_model
from fpar.models.registry import build_model


def test_rgb_stream_weights_stay_nchw_and_the_flow_streams_are_converted() -> None:
    model = channels_last_model(build_model(small_config("two_stream")))
    rgb, flow = model.streams["rgb"], model.streams["flow"]
    assert rgb.backbone.conv1.weight.is_contiguous() and rgb.lstm.h_convs["i"].weight.is_contiguous()
    assert flow.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not flow.backbone.conv1.weight.is_contiguous()


def test_a_backbone_run_frame_by_frame_gets_channels_last_weights() -> None:
    """Under previous_frame feedback NCHW weights would be re-laid out on every frame; the ConvLSTM
    stays NCHW in every RGB stream."""
    batched = channels_last_model(build_model(small_config("rgb_ms_feedback")))
    per_frame = channels_last_model(build_model(small_config("rgb_ms_feedback", feedback_mode="previous_frame")))
    assert batched.streams["rgb"].backbone.layer4[0].conv1.weight.is_contiguous()
    for name, weight in per_frame.streams["rgb"].backbone.named_parameters():
        if weight.dim() == 4 and weight.shape[-1] > 1:  # a 1x1 kernel is both layouts at once
            assert weight.is_contiguous(memory_format=torch.channels_last), name
            assert not weight.is_contiguous(), name
    assert per_frame.streams["rgb"].lstm.h_convs["i"].weight.is_contiguous()


def test_clip_frames_are_channels_last_after_the_stream_flattens_them() -> None:
    clip = torch.randn(2, 3, 4, 5, 6)  # (B, T, C, H, W)
    laid_out = channels_last_input(clip)
    assert torch.equal(laid_out, clip)
    frames = laid_out.flatten(0, 1)  # what the RGB stream does
    assert frames.is_contiguous(memory_format=torch.channels_last)
    assert frames.data_ptr() == laid_out.data_ptr()  # a view, no copy


def test_images_are_channels_last_and_labels_untouched() -> None:
    images, labels, maps = torch.randn(2, 10, 4, 4), torch.tensor([1, 2]), torch.zeros(2, 3, 4, 4, dtype=torch.int64)
    assert channels_last_input(images).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last_input(images), images)
    assert channels_last_input(labels) is labels and channels_last_input(maps) is maps
