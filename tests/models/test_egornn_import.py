"""Ego-RNN import: small modules shaped and named as the reference's, with random weights, must
compute what fpar's imported models compute.

The reference-shaped modules below follow Ego-RNN's computation in its own order: clips as
(T, B, ...), one backbone pass per frame, the top class by sorting, the CAM by a batched matrix
product, one convolution per ConvLSTM gate. Only the state-dict key names are the reference's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchvision.models import resnet34
from typer.testing import CliRunner

from fpar.cli import app
from fpar.errors import CheckpointError, ConfigError, FparError
from fpar.models import load_model
from fpar.models.egornn_import import import_egornn

CLASSES = 4
SIZE = 64  # layer4 2x2
STACK = 2  # L


def _randomize(module: nn.Module) -> nn.Module:
    """Random biases, BN affine parameters and BN statistics (weights are random already), so
    that a wrong mapping shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.dim() != 1 or not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=g) * 0.1
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            elif name.endswith("weight"):  # BN scale
                tensor.copy_(1 + noise)
            else:
                tensor.copy_(noise)
    return module.eval()


class RefResNet(nn.Module):
    """resnetMod.resnet34(noBN=True): returns fc logits, BN layer4 and the last block's conv2 + residual."""

    def __init__(self, in_channels: int = 3, with_fc: bool = True) -> None:
        super().__init__()
        net = resnet34()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1, self.maxpool = net.bn1, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if with_fc:
            self.fc = net.fc

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4[:2](self.layer3(self.layer2(self.layer1(x))))
        last = self.layer4[2]
        out = last.conv2(torch.relu(last.bn1(last.conv1(x))))
        return torch.relu(last.bn2(out) + x), out + x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bn, no_bn = self.features(x)
        return self.fc(bn.mean(dim=(2, 3))), bn, no_bn


class RefConvLSTMCell(nn.Module):
    """MyConvLSTMCell: conv_{i,f,c,o}_xx with bias, conv_{i,f,c,o}_hh without."""

    def __init__(self, channels: int, memory: int) -> None:
        super().__init__()
        for gate in "ifco":
            setattr(self, f"conv_{gate}_xx", nn.Conv2d(channels, memory, 3, padding=1))
            setattr(self, f"conv_{gate}_hh", nn.Conv2d(memory, memory, 3, padding=1, bias=False))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state

        def gate(name: str) -> Tensor:
            return getattr(self, f"conv_{name}_xx")(x) + getattr(self, f"conv_{name}_hh")(h)

        c = torch.tanh(gate("c")) * torch.sigmoid(gate("i")) + c * torch.sigmoid(gate("f"))
        return torch.sigmoid(gate("o")) * torch.tanh(c), c


class RefAttentionModel(nn.Module):
    """objectAttentionModelConvLSTM.attentionModel, on (T, B, 3, H, W) clips."""

    def __init__(self, memory: int = 512) -> None:
        super().__init__()
        self.resNet = RefResNet()
        self.weight_softmax = self.resNet.fc.weight
        self.lstm_cell = RefConvLSTMCell(512, memory)
        self.fc = nn.Linear(memory, CLASSES)
        self.classifier = nn.Sequential(nn.Dropout(0.7), self.fc)
        self.memory = memory

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor]:
        state = None
        for frame in clip:
            logit, bn, no_bn = self.resNet(frame)
            b, c, h, w = bn.shape
            if state is None:
                state = (bn.new_zeros(b, self.memory, h, w), bn.new_zeros(b, self.memory, h, w))
            top = logit.sort(1, True)[1][:, 0]
            cam = torch.bmm(self.weight_softmax[top].unsqueeze(1), bn.view(b, c, h * w))
            attention = torch.softmax(cam.squeeze(1), dim=1).view(b, 1, h, w)
            state = self.lstm_cell(no_bn * attention, state)
        pooled = state[1].mean(dim=(2, 3))
        return self.classifier(pooled), pooled


class RefFlowResNet(RefResNet):
    """flow_resnet.flow_resnet34: 2L input channels, avgpool, dropout 0.5, fc_action."""

    def __init__(self) -> None:
        super().__init__(in_channels=2 * STACK, with_fc=False)
        self.dp = nn.Dropout(0.5)
        self.fc_action = nn.Linear(512, CLASSES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        pooled = self.features(x)[0].mean(dim=(2, 3))
        return self.fc_action(self.dp(pooled)), pooled


class RefTwoStream(nn.Module):
    """twoStreamModel.twoStreamAttentionModel: cat(flow, rgb) features, dropout 0.5, fc2."""

    def __init__(self) -> None:
        super().__init__()
        self.flowModel = RefFlowResNet()
        self.frameModel = RefAttentionModel()
        self.fc2 = nn.Linear(1024, CLASSES)
        self.classifier = nn.Sequential(nn.Dropout(0.5), self.fc2)

    def forward(self, flow: Tensor, clip: Tensor) -> tuple[Tensor, Tensor]:
        features = torch.cat((self.flowModel(flow)[1], self.frameModel(clip)[1]), dim=1)
        return self.classifier(features), features


def _reference(name: str) -> nn.Module:
    return _randomize({"rgb": RefAttentionModel, "flow": RefFlowResNet, "two_stream": RefTwoStream}[name]())


def _run_reference(name: str, model: nn.Module, clip: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    frames_first = clip.transpose(0, 1)  # the reference takes (T, B, ...)
    return {"rgb": lambda: model(frames_first), "flow": lambda: model(flow),
            "two_stream": lambda: model(flow, frames_first)}[name]()


@pytest.mark.parametrize("name", ["rgb", "flow", "two_stream"])
def test_imported_model_computes_what_the_reference_computes(name: str, tmp_path: Path) -> None:
    reference = _reference(name)
    source, out = tmp_path / f"{name}_state_dict.pth", tmp_path / f"{name}.pt"
    torch.save(reference.state_dict(), source)
    meta = import_egornn(source, name, out, frames=3)
    model, loaded_meta = load_model(out)
    assert loaded_meta == meta and meta.config.num_classes == CLASSES and len(meta.class_names) == CLASSES
    if name != "rgb":
        assert meta.flow_stack == STACK
    rgb = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # the reference's transforms
    expected_normalization = {"rgb": rgb, "flow": {"mean": [0.449], "std": [0.226]}}
    assert meta.normalization == {key: expected_normalization[key] for key in model.input_keys}
    clip = torch.randn(2, 3, 3, SIZE, SIZE)
    flow = torch.randn(2, 2 * STACK, SIZE, SIZE)
    with torch.no_grad():
        expected_logits, expected_features = _run_reference(name, reference, clip, flow)
        result = model({"rgb": clip, "flow": flow})
    torch.testing.assert_close(result.features, expected_features, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.logits, expected_logits, rtol=1e-4, atol=1e-5)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = _reference("rgb").state_dict()
    del state["lstm_cell.conv_f_hh.weight"]
    state["attention_layer.weight"] = torch.zeros(3)
    source = tmp_path / "broken.pth"
    torch.save(state, source)
    with pytest.raises(CheckpointError) as error:
        import_egornn(source, "rgb", tmp_path / "out.pt")
    message = str(error.value)
    assert "broken.pth" in message
    assert "streams.rgb.lstm.h_convs.f.weight" in message  # missing, under fpar's name
    assert "attention_layer.weight" in message  # unexpected, under the reference's name


@pytest.mark.parametrize(("key", "value", "message"), [
    ("classifier.1.weight", torch.tensor(1.0), r"classifier\.fc\.weight has shape \(\)"),
    ("lstm_cell.conv_i_hh.weight", torch.zeros(3000), r"lstm\.h_convs\.i\.weight has shape \(3000,\)"),
    ("lstm_cell.conv_i_hh.weight", torch.zeros(4096, 1, 1, 1), "model.mem_size must be at most 2048"),
    ("lstm_cell.conv_i_hh.weight", torch.zeros(1024, 1, 3, 3), "does not fit fpar's model: .*shape mismatch"),
])
def test_a_crafted_state_dict_is_refused_before_a_model_is_allocated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: Tensor, message: str) -> None:
    """Ego-RNN files are untrusted: the model size read from one tensor's shape is checked on the
    meta device (and against the config's bounds) before anything is built in memory."""
    import fpar.models.egornn_import as egornn

    devices, original = [], egornn.build_model

    def recording(cfg):  # the default device where the model would be built
        devices.append(torch.empty(0).device.type)
        return original(cfg)

    monkeypatch.setattr(egornn, "build_model", recording)
    state = _reference("rgb").state_dict()
    state[key] = value
    source = tmp_path / "crafted.pth"
    torch.save(state, source)
    with pytest.raises(CheckpointError, match=rf"crafted\.pth: .*{message}"):
        import_egornn(source, "rgb", tmp_path / "out.pt")
    assert set(devices) <= {"meta"} and not (tmp_path / "out.pt").exists()


def test_an_unknown_model_name_fails_before_reading_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'rgb_ms'; expected one of rgb, flow, two_stream"):
        import_egornn(tmp_path / "absent.pth", "rgb_ms", tmp_path / "out.pt")


def test_a_flow_state_dict_is_not_an_rgb_one(tmp_path: Path) -> None:
    source = tmp_path / "flow.pth"
    torch.save(_reference("flow").state_dict(), source)
    with pytest.raises(CheckpointError, match="not an Ego-RNN rgb state dict"):
        import_egornn(source, "rgb", tmp_path / "out.pt")


def test_cli_import_egornn(tmp_path: Path) -> None:
    source, out, classes = tmp_path / "flow.pth", tmp_path / "flow.pt", tmp_path / "classes.txt"
    torch.save(_reference("flow").state_dict(), source)
    classes.write_text("".join(f"class_{c}\n" for c in "abcd"))
    result = CliRunner().invoke(
        app, ["import-egornn", str(source), "--model", "flow", "--out", str(out), "--classes", str(classes)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert load_model(out)[1].class_names == ["class_a", "class_b", "class_c", "class_d"]


def test_cli_import_egornn_class_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    source, classes = tmp_path / "flow.pth", tmp_path / "classes.txt"
    torch.save(_reference("flow").state_dict(), source)
    classes.write_bytes("caf\u00e9\n".encode("latin-1"))
    result = CliRunner().invoke(app, ["import-egornn", str(source), "--model", "flow", "--out",
                                      str(tmp_path / "flow.pt"), "--classes", str(classes)])
    assert isinstance(result.exception, FparError)  # main() prints it in one line, exit code 1
    assert str(result.exception).startswith(f"{classes}: class-name file is not UTF-8 text")


def test_cli_refuses_a_frame_count_out_of_range_before_reading_the_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["import-egornn", str(tmp_path / "absent.pth"), "--model", "rgb",
                                      "--out", str(tmp_path / "out.pt"), "--frames", "200"])
    assert result.exit_code == 2 and "--frames" in result.output  # a usage error, not the weights file's
