"""transforms.py: one draw per clip, the same geometry on frames, maps and flows; flow-x inversion."""

from __future__ import annotations

import pytest
import torch

from fpar.data.transforms import (CORNERS, FLOW_MEAN, FLOW_STD, IMAGENET_MEAN, IMAGENET_STD, SCALES,
                                  ClipParams, ClipTransform, crop_box)
from fpar.errors import ConfigError

H, W = 48, 64


def _textured(seed: int = 0, channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (channels, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _marked() -> tuple[torch.Tensor, torch.Tensor]:
    """A frame bright on an L along the top and left edges, dark elsewhere, and its motion map
    (255 on the L). The L is asymmetric, so a flip or crop missing from either shows, and every
    crop keeps some of it."""
    y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    shape = (y < 24) | (x < 28)
    frame = torch.where(shape, 235, 20).to(torch.uint8).expand(3, H, W)
    return frame, (shape * 255).to(torch.uint8)[None]


def _all_params() -> list[ClipParams]:
    return [ClipParams(flip, scale, corner) for flip in (False, True) for scale in SCALES for corner in CORNERS]


def test_constants_are_the_reference_recipe() -> None:
    """DESIGN section 7, written out: the other tests use the constants, so they pin them here."""
    assert SCALES == (1.0, 0.875, 0.75, 0.65625)
    assert sorted(CORNERS) == ["bl", "br", "c", "tl", "tr"]
    assert (IMAGENET_MEAN, IMAGENET_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (FLOW_MEAN, FLOW_STD) == (0.449, 0.226)
    assert (ClipTransform().image_size, ClipTransform().resize) == (224, 256)


def test_draws_cover_flips_scales_and_corners_and_follow_the_generator() -> None:
    transform = ClipTransform(image_size=32, resize=40, train=True)
    draws = [transform.draw(torch.Generator().manual_seed(s)) for s in range(300)]
    assert 0.4 < sum(d.flip for d in draws) / len(draws) < 0.6  # p = 0.5
    assert {d.scale for d in draws} == set(SCALES)
    assert {d.corner for d in draws} == set(CORNERS)
    assert draws == [transform.draw(torch.Generator().manual_seed(s)) for s in range(300)]
    assert ClipTransform(train=False).draw() == ClipParams()


def test_corner_boxes_are_squares_at_the_corners() -> None:
    assert crop_box(256, 341, ClipParams(scale=1.0, corner="tl"), 224) == (0, 0, 256)
    assert crop_box(256, 341, ClipParams(scale=0.75, corner="tr"), 224) == (0, 149, 192)
    assert crop_box(256, 341, ClipParams(scale=0.75, corner="bl"), 224) == (64, 0, 192)
    assert crop_box(256, 341, ClipParams(scale=0.65625, corner="br"), 224) == (88, 173, 168)
    assert crop_box(256, 341, ClipParams(scale=0.875, corner="c"), 224) == (16, 58, 224)
    assert crop_box(256, 341, ClipParams(), 224) == (16, 58, 224)  # the test crop


@pytest.mark.parametrize("params", _all_params())
def test_every_frame_and_map_of_a_clip_gets_the_same_geometry(params: ClipParams) -> None:
    transform = ClipTransform(image_size=32, resize=40, train=True)
    frame, mmap = _marked()
    clip = transform.rgb([frame, _textured(), frame], params)
    assert clip.shape == (3, 3, 32, 32) and clip.dtype == torch.float32
    assert torch.equal(clip[0], clip[2])  # identical frames stay identical
    maps = transform.mmaps([mmap, mmap], params)
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.int64
    assert set(maps.unique().tolist()) <= {0, 1} and torch.equal(maps[0], maps[1])
    bright = clip[0].mean(0) > 0  # the L, after normalisation (the mean gray is between the levels)
    moving = maps[0].bool()
    assert moving.any() and not moving.all()
    assert (bright != moving).float().mean() < 0.08  # equal up to the L's blurred border


def test_flip_mirrors_the_clip() -> None:
    transform = ClipTransform(image_size=32, resize=48)
    frame = _textured()
    plain = transform.rgb([frame], ClipParams(scale=1.0, corner="c"))
    flipped = transform.rgb([frame], ClipParams(flip=True, scale=1.0, corner="c"))
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-5)


def test_test_transform_is_resize_and_centre_crop() -> None:
    transform = ClipTransform(image_size=112, resize=128)
    clip = transform.rgb([_textured()], ClipParams())
    assert clip.shape == (1, 3, 112, 112)
    value = torch.full((3, 30, 40), 200, dtype=torch.uint8)
    out = transform.rgb([value], ClipParams())[0]
    expected = (200 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out.mean((1, 2)), expected, atol=1e-5)


@pytest.mark.parametrize("flip", [False, True])
def test_flow_stack_interleaves_x_y_and_inverts_x_on_flip(flip: bool) -> None:
    transform = ClipTransform(image_size=32, resize=40)
    xs = [_textured(s, channels=1) for s in (1, 2)]
    ys = [_textured(s, channels=1) for s in (3, 4)]
    params = ClipParams(flip=flip, scale=1.0, corner="tl")
    stack = transform.flow(xs, ys, params)
    assert stack.shape == (4, 32, 32)
    raw = transform.flow(xs, ys, ClipParams(scale=1.0, corner="tr" if flip else "tl"))  # the same pixels unflipped
    to_level = lambda t: t * FLOW_STD + FLOW_MEAN  # noqa: E731 - back to 0..1 gray levels
    if flip:
        # 255 - v before or after the resize differs by rounding: at most one gray level
        assert torch.allclose(to_level(stack[0::2]), 1 - to_level(raw[0::2]).flip(-1), atol=1.01 / 255)
        assert torch.allclose(stack[1::2], raw[1::2].flip(-1), atol=1e-5)
    else:
        assert torch.allclose(stack, raw)
    assert torch.allclose(stack[0], transform.flow(xs[:1], ys[:1], params)[0])


def test_uniform_flow_is_normalised_with_the_flow_statistics() -> None:
    transform = ClipTransform(image_size=32, resize=40)
    gray = torch.full((1, 40, 50), 128, dtype=torch.uint8)
    stack = transform.flow([gray], [gray], ClipParams(flip=True, scale=0.75, corner="br"))
    assert torch.allclose(stack[0], torch.tensor((127 / 255 - FLOW_MEAN) / FLOW_STD))
    assert torch.allclose(stack[1], torch.tensor((128 / 255 - FLOW_MEAN) / FLOW_STD))


def test_image_size_cannot_exceed_resize() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        ClipTransform(image_size=256, resize=224)


def test_motion_maps_shrink_to_the_pixel_under_each_centre_as_pil_does() -> None:
    # the reference resizes its mode-"1" maps with PIL, whose nearest reads the source pixel under
    # each output pixel's centre; torch's plain NEAREST would read the top-left one
    import numpy as np
    from PIL import Image

    columns = torch.arange(64) % 2 == 1  # odd columns move: halving keeps them all, or none
    mmap = torch.where(columns, 255, 0).to(torch.uint8).expand(1, 48, 64).clone()
    transform = ClipTransform(image_size=24, resize=24, train=False)
    labels = transform.mmaps([mmap], ClipParams())[0]
    assert labels.shape == (24, 24) and bool(labels.all())
    pil = Image.fromarray(mmap[0].numpy()).convert("1").resize((32, 24))
    assert (np.array(pil)[:, 4:28] == labels.numpy().astype(bool)).all()
