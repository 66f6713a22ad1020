"""CAM maps: shapes and range for every model and method, the attention map is the model's own,
Grad-CAM and Grad-CAM++ on a hand-made model with a known answer, and the every-frame rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cam_testkit import CLASSES, MODEL_NAMES, tiny
from torch import Tensor, nn

from fpar.errors import DataError, FparError
from fpar.explain.cam import (
    METHODS,
    clip_evidence,
    explain,
    frame_windows,
    gradcam_pp_weights,
    model_frames,
    nearest_read,
    normalised,
    weighted_maps,
    window_starts,
)
from fpar.explain.media import Media, read_media
from fpar.models import ActionModel
from fpar.models.heads import ClassifierHead
from fpar.models.model import StreamOutput

SIDE = 2  # layer4 side at 64x64


def _still(media: Media) -> Media:
    return Media(media.path, media.frames[:1], media.fps, is_video=False)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_frame_gets_a_map_in_0_1(name: str, method: str, video: Path) -> None:
    model, meta = tiny(name)
    media = read_media(video)
    if method == "attention" and name == "flow":
        with pytest.raises(FparError, match="no spatial attention"):
            explain(model, meta, media, method)
        return
    result = explain(model, meta, media, method)
    assert result.maps.shape == (len(media.frames), SIDE, SIDE)
    assert result.maps.dtype == np.float32
    assert result.maps.min() == pytest.approx(0.0) and result.maps.max() <= 1.0
    assert result.maps.max() == pytest.approx(1.0) or result.maps.max() == 0.0  # 0 only if the map is flat
    assert result.sampled == [1, 6, 11]  # floor(linspace(1, 16, 3, endpoint=False))
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.predicted == CLASSES[int(np.argmax(result.probabilities))]
    assert [c for c, _ in result.top(5)][0] == result.predicted and len(result.top(5)) == len(CLASSES)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in ("flow", "two_stream")])
def test_an_image_is_a_clip_of_copies_with_one_map(name: str, video: Path) -> None:
    model, meta = tiny(name)
    result = explain(model, meta, _still(read_media(video)), "gradcam++")
    assert result.maps.shape == (1, SIDE, SIDE)
    assert result.sampled == [0, 0, 0]


@pytest.mark.parametrize("name", ["flow", "two_stream"])
def test_flow_models_refuse_an_image(name: str, video: Path) -> None:
    model, meta = tiny(name)
    with pytest.raises(DataError, match="needs a video of at least 3 frames, not an image"):
        explain(model, meta, _still(read_media(video)))


@pytest.mark.parametrize("options", [{"name": "rgb"}, {"name": "rgb_ms_feedback", "feedback_mode": "previous_frame"}])
def test_attention_cam_is_the_models_own_attention(options: dict, video: Path) -> None:
    """The every-frame attention (run in chunks of 16, here over 16+ frames; one chunk under
    previous_frame feedback, whose modulation chains through all frames) equals the attention the
    model itself returns when it reads all frames as one clip, normalised over the video."""
    model, meta = tiny(**options)
    feedback = model.streams["rgb"].feedback
    if feedback is not None:  # its last convs start at zero (no modulation): make the neighbour matter
        with torch.no_grad():
            for parameter in feedback.parameters():
                parameter.normal_(std=0.05)
    media = read_media(video)
    media.frames = np.concatenate([media.frames, media.frames[:4]])  # 20 frames: two chunks
    result = explain(model, meta, media, "attention")
    with torch.no_grad():
        clip = normalised(model_frames(media.frames, meta.image_size), meta.normalization["rgb"])[None]
        own = model({"rgb": clip}).attention[0]
    expected = (own - own.min()) / (own.max() - own.min())
    np.testing.assert_allclose(result.maps, expected.numpy(), atol=1e-5)


class SquareStream(nn.Module):
    """A hand-made stream: its feature map is its input A, its feature mean(A^2), so the gradient
    of logit k is 2 W[k, c] A[c] / (h w), known in closed form."""

    def forward(self, x: Tensor) -> StreamOutput:
        return StreamOutput(features=x.pow(2).mean(dim=(2, 3)), feature_maps=x)


def _hand_made() -> tuple[ActionModel, Tensor]:
    head = ClassifierHead(2, 2, dropout=0.0)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        head.fc.bias.zero_()
    activations = torch.zeros(1, 2, 2, 2)
    activations[0, 0, 0, 0] = 2.0  # channel 0 fires top-left
    activations[0, 1, 1, 1] = 2.0  # channel 1 fires bottom-right
    return ActionModel({"flow": SquareStream()}, head).eval(), activations


@pytest.mark.parametrize("target, peak", [(0, (0, 0)), (1, (1, 1))])
def test_gradcam_on_a_hand_made_model(target: int, peak: tuple[int, int]) -> None:
    """Class 0 = channel 0 - channel 1: Grad-CAM weights are +-mean(2 * 2 / 4 at one of 4
    positions) = +-0.25, so the map is 0.25 * (A0 - A1): 0.5 at channel 0's position, -0.5 at
    channel 1's (ReLU: 0). Class 1 mirrors it."""
    model, activations = _hand_made()
    evidence = clip_evidence(model, {"flow": activations}, target=target)
    assert evidence.target == target
    torch.testing.assert_close(evidence.gradients["flow"], 2 * model.classifier.fc.weight[target].view(1, 2, 1, 1)
                               * activations / 4)
    expected = torch.zeros(1, 2, 2)
    expected[0, peak[0], peak[1]] = 0.5
    expected[0, 1 - peak[0], 1 - peak[1]] = -0.5
    torch.testing.assert_close(weighted_maps(evidence.activations["flow"], evidence.gradients["flow"], "gradcam"),
                               expected)


def test_gradcam_pp_on_a_hand_made_model() -> None:
    """Grad-CAM++ for class 0: channel 0's gradient is 1 at its one active position, so
    alpha = 1 / (2 * 1 + sum(A0) * 1) = 1/4 there and its weight is 1/4; channel 1's gradient is
    negative, so its weight is 0: the map is A0 / 4."""
    model, activations = _hand_made()
    evidence = clip_evidence(model, {"flow": activations})
    assert evidence.target == 0  # logits: mean(A0^2) - mean(A1^2) = 0 for both; argmax takes the first
    weights = gradcam_pp_weights(evidence.activations["flow"], evidence.gradients["flow"])
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.0]]))
    torch.testing.assert_close(weighted_maps(evidence.activations["flow"], evidence.gradients["flow"], "gradcam++"),
                               activations[:, 0] / 4)


def test_flow_windows_tile_the_video_and_give_their_maps_to_the_frames_they_cover() -> None:
    assert window_starts(10, 4) == [0, 4, 6]  # the last window ends on the last flow
    assert window_starts(8, 4) == [0, 4]
    assert frame_windows(11, [0, 4, 6], 4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_unread_frames_take_the_nearest_read_frame() -> None:
    assert nearest_read(9, [1, 4, 7]).tolist() == [1, 1, 1, 4, 4, 4, 7, 7, 7]
    assert nearest_read(3, [1, 1, 1]).tolist() == [1, 1, 1]


def test_flow_is_the_flow_fpar_prepare_writes(video: Path, tmp_path: Path) -> None:
    """Flow models read flow made exactly as `fpar prepare` makes it (same decode size, warp flow,
    quantisation): the CAM's flow images equal the prepared root's files, resized to the model."""
    from fpar.data.images import read_image
    from fpar.data.layout import discover
    from fpar.explain.cam import flow_images
    from fpar.io.video import resize
    from fpar.prepare.pipeline import PrepareSettings, prepare

    labels = tmp_path / "labels.csv"
    labels.write_text(f"video,user,label\n{video},S1,take_cup\n")
    prepare(labels, tmp_path / "root", PrepareSettings(size=(64, 48)), workers=1, progress=False)
    sample = discover(tmp_path / "root").samples[0]
    _, meta = tiny("flow", image_size=32)
    made = flow_images(read_media(video), meta, frame_size=(64, 48))
    assert made.shape == (sample.n_flows, 2, 32, 32) == (15, 2, 32, 32)
    for position, pair in enumerate(made):
        for axis, image in zip("xy", pair):
            np.testing.assert_array_equal(image, resize(read_image(sample.flow(axis, position), gray=True), (32, 32)))
