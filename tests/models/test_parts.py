"""Parts: backbone outputs and weights, the ConvLSTM cell, flow input adaptation, the flow flip convention."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_testkit import RunsCode
from torchvision.models import ResNet34_Weights, resnet34

from fpar.data.transforms import FLOW_MEAN, FLOW_STD, ClipParams, ClipTransform
from fpar.errors import CheckpointError
from fpar.bench.reference import eight_conv_step
from fpar.models.backbone import build_backbone, layer4_side
from fpar.models.convlstm import ConvLSTMCell

IMAGENET_FILE = Path(ResNet34_Weights.IMAGENET1K_V1.url).name


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder, and downloads that fail as they do without internet."""

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize(("size", "side"), [(224, 7), (112, 4), (64, 2), (200, 7)])
def test_layer4_side_matches_the_network(size: int, side: int) -> None:
    assert layer4_side(size) == side
    with torch.no_grad():
        assert build_backbone(keep_fc=False).eval()(torch.zeros(1, 3, size, size)).layer4.shape[-1] == side


def test_backbone_matches_torchvision_and_exposes_the_pre_bn_map() -> None:
    net = resnet34().eval()
    backbone = build_backbone().eval()
    backbone.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 64, 64)
    seen: dict[str, torch.Tensor] = {}
    net.layer4[2].register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        expected_logits = net(x)
        out = backbone(x)
        block = net.layer4[2]
        pre_bn = block.conv2(F.relu(block.bn1(block.conv1(seen["x"])))) + seen["x"]
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.layer4, seen["out"])
    torch.testing.assert_close(out.layer4_pre_bn, pre_bn)
    torch.testing.assert_close(F.relu(block.bn2(pre_bn - seen["x"]) + seen["x"]), out.layer4)


def test_imagenet_offline_names_the_file_and_the_folder(offline_hub: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        build_backbone("imagenet")
    assert IMAGENET_FILE in str(error.value)
    assert str(offline_hub) in str(error.value)


def test_imagenet_from_the_hub_cache_and_cross_modality_conv1(offline_hub: Path) -> None:
    """A cached file is used without network; the flow conv1 is its RGB mean, repeated."""
    reference = resnet34().state_dict()
    offline_hub.mkdir(parents=True)
    torch.save(reference, offline_hub / IMAGENET_FILE)
    rgb = build_backbone("imagenet")
    torch.testing.assert_close(rgb.layer4[2].conv2.weight, reference["layer4.2.conv2.weight"])
    flow = build_backbone("imagenet", in_channels=10, keep_fc=False)
    assert flow.fc is None and flow.conv1.weight.shape == (64, 10, 7, 7)
    expected = reference["conv1.weight"].mean(dim=1, keepdim=True).expand(-1, 10, -1, -1)
    torch.testing.assert_close(flow.conv1.weight, expected)
    torch.testing.assert_close(flow.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])


def test_imagenet_cache_file_is_read_weights_only(offline_hub: Path) -> None:
    """A cached ImageNet file that would run code on unpickling is refused, and the code never runs."""
    marker = offline_hub.parent / "code_ran"
    offline_hub.mkdir(parents=True)
    torch.save({"conv1.weight": RunsCode(marker)}, offline_hub / IMAGENET_FILE)
    with pytest.raises(CheckpointError, match=f"{IMAGENET_FILE}: .* cannot be read"):
        build_backbone("imagenet")
    assert not marker.exists()


def test_local_weight_file(tmp_path: Path) -> None:
    reference = resnet34().state_dict()
    good, bad = tmp_path / "resnet34.pth", tmp_path / "other.pth"
    torch.save(reference, good)
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    torch.testing.assert_close(build_backbone(str(good)).conv1.weight, reference["conv1.weight"])
    with pytest.raises(CheckpointError, match="other.pth: not a ResNet-34 state dict") as error:
        build_backbone(str(bad))
    assert "\n" not in str(error.value) and "layer4.2.conv2.weight" in str(error.value)  # one line, keys listed
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone(str(tmp_path / "missing.pth"))


def hflip_flow_stack(stack: torch.Tensor) -> torch.Tensor:
    """The flip convention the flow stream expects, written out independently of the data layer
    (the oracle of the test below): mirror every image of a uint8 (2L, H, W) stack, invert its x
    images."""
    flipped = stack.flip(-1)
    flipped[0::2] = 255 - flipped[0::2]
    return flipped


def _gray_levels(stack: torch.Tensor) -> torch.Tensor:
    """A normalised flow stack back to its 0..255 gray levels."""
    return ((stack * FLOW_STD + FLOW_MEAN) * 255).round().to(torch.uint8)


def test_flow_flip_mirrors_and_inverts_x_only() -> None:
    """fpar's flow transform on a stack x1, y1, x2, y2 of 3x3 images (resize and crop keep 3x3, so
    only the flip acts): a rightward x flow (v > 128) becomes leftward at the mirrored place."""
    x1, y1, x2, y2 = (torch.full((1, 3, 3), 128, dtype=torch.uint8) for _ in range(4))
    x1[0, 0, 0] = 200  # moving right at the top-left corner
    y1[0, 0, 0] = 60  # moving up at the same place
    transform = ClipTransform(image_size=3, resize=3)
    flipped = _gray_levels(transform.flow([x1, x2], [y1, y2], ClipParams(flip=True)))
    assert flipped[0].tolist() == [[127, 127, 55], [127, 127, 127], [127, 127, 127]]  # mirrored, 255 - v
    assert flipped[1].tolist() == [[128, 128, 60], [128, 128, 128], [128, 128, 128]]  # y: mirrored only
    assert (flipped[2] == 127).all() and (flipped[3] == 128).all()  # x: 128 -> 127, y unchanged
    plain = _gray_levels(transform.flow([x1, x2], [y1, y2], ClipParams()))
    assert torch.equal(plain, torch.cat([x1, y1, x2, y2]))  # no flip: the stack as read


def test_flow_flip_agrees_with_the_data_layer() -> None:
    """On random images, the transform's flipped stack is `hflip_flow_stack` of the raw stack."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8, generator=g) for _ in range(3)]
    ys = [torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8, generator=g) for _ in range(3)]
    transform = ClipTransform(image_size=8, resize=8)
    flipped = transform.flow(xs, ys, ClipParams(flip=True))
    raw = torch.cat([plane for pair in zip(xs, ys) for plane in pair])  # x1, y1, x2, y2, ...
    expected = (hflip_flow_stack(raw).float() / 255 - FLOW_MEAN) / FLOW_STD
    torch.testing.assert_close(flipped, expected)


@pytest.mark.parametrize(("hidden", "convolutions"), [(64, 1), (100, 1), (200, 2), (256, 2), (300, 4), (512, 4), (768, 4)])
def test_convlstm_gate_groups_compute_the_per_gate_cell(hidden: int, convolutions: int) -> None:
    """Whatever the grouping of its gates (all four in one convolution, two pairs, one each), the
    cell computes Ego-RNN's eight-convolution step, in `run` and step by step, with channels_last
    inputs and weights (a channels_last model) too."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(32, hidden)
    for conv in cell.h_convs.values():  # nonzero hidden-state weights matter from step 2 on
        torch.nn.init.normal_(conv.weight, std=0.02)
    steps = [torch.randn(2, 32, 4, 4) for _ in range(3)]
    state = cell.initial_state(steps[0])
    for x in steps:
        state = eight_conv_step(cell, x, state)
    cell.to(memory_format=torch.channels_last)
    steps = [x.contiguous(memory_format=torch.channels_last) for x in steps]
    stepped = cell.initial_state(steps[0])
    for x in steps:
        stepped = cell(x, stepped)
    assert len(cell._groups()) == convolutions
    for h, c in (cell.run(steps), stepped):
        torch.testing.assert_close(h, state[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c, state[1], rtol=1e-5, atol=1e-5)
