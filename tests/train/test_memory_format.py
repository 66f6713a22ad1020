"""`train.channels_last`: inputs laid out channels_last (clips so that their frames are), values unchanged."""

from __future__ import annotations

import torch

from fpar.train.memory_format import to_channels_last


def test_clip_frames_are_channels_last_after_the_streams_flatten() -> None:
    clip = torch.randn(2, 3, 4, 5, 6)  # (B, T, C, H, W)
    laid_out = to_channels_last(clip)
    assert torch.equal(laid_out, clip)
    frames = laid_out.flatten(0, 1)  # what the RGB stream does
    assert frames.is_contiguous(memory_format=torch.channels_last)
    assert frames.data_ptr() == laid_out.data_ptr()  # a view, no copy


def test_images_are_channels_last_and_labels_untouched() -> None:
    images, labels, maps = torch.randn(2, 10, 4, 4), torch.tensor([1, 2]), torch.zeros(2, 3, 4, 4, dtype=torch.int64)
    assert to_channels_last(images).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(to_channels_last(images), images)
    assert to_channels_last(labels) is labels and to_channels_last(maps) is maps
