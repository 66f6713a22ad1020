"""Every registered model, timm style: shapes, gradients, determinism, sizes, compile, channels_last."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from model_testkit import MODEL_NAMES, NUM_CLASSES, make_batch, small_config

from fpar.config import ModelConfig
from fpar.errors import ConfigError, FparError
from fpar.models import ModelOutput, build_model
from fpar.models.backbone import build_backbone, layer4_side
from fpar.models.memory_format import channels_last_input, channels_last_model

RESNET34 = 21_797_672  # torchvision's ResNet-34 with its 1000-way fc
IMAGENET_FC = 512 * 1000 + 1000
CONV1_RGB = 64 * 3 * 7 * 7
CONVLSTM = 4 * (512 * 512 * 9 + 512 + 512 * 512 * 9)  # per gate: conv(x) with bias, conv(h) without
FC_61 = 512 * 61 + 61
MS_HEAD_224 = (512 * 100 + 100) + (100 * 49 * 2 * 49 + 2 * 49)  # Conv100, fc 100*s*s -> 2*s*s, s = 7
FEEDBACK = 2 * ((100 * 64 + 64) + (64 * 64 + 64))
FLOW_BACKBONE = RESNET34 - IMAGENET_FC - CONV1_RGB + 64 * 10 * 7 * 7  # 2L = 10 input channels, no fc
EXPECTED_PARAMETERS = {  # the reference architecture at 224x224, 61 classes, L = 5
    "flow": FLOW_BACKBONE + FC_61,
    "rgb": RESNET34 + CONVLSTM + FC_61,
    "rgb_ms": RESNET34 + CONVLSTM + FC_61 + MS_HEAD_224,
    "rgb_ms_feedback": RESNET34 + CONVLSTM + FC_61 + MS_HEAD_224 + FEEDBACK,
    "two_stream": RESNET34 + CONVLSTM + FLOW_BACKBONE + (1024 * 61 + 61),
}
# Parameters that get no gradient by design: the RGB backbone's fc bias only shifts the logits
# whose argmax picks the attention's class (the same holds in Ego-RNN).
NO_GRADIENT = {"streams.rgb.backbone.fc.bias"}
# Parameters whose gradient is exactly zero in the first backward pass of these tests (T = 2 frames,
# at initialisation), every element, and why:
# - the ConvLSTM output gate's recurrent conv: the classifier pools the cell state c_T, which the
#   output gate never touches; o_t only shapes h_t, and h_t only feeds step t+1. At t = 1 the
#   recurrent conv reads h_0 = 0 (the zero initial state), and h_2 feeds nothing at T = 2. So at
#   T = 2 its gradient is zero whatever the weights (from T = 3 on it is not: checked below). Its
#   input conv does get one (o_1 shapes h_1, which feeds step 2).
# - the first conv of each feedback branch (delta_beta, gamma): the branch's last conv is
#   zero-initialised so that the model starts as rgb_ms, and a zero conv passes no gradient back;
#   the first convs get one once the last ones have moved (test_feedback checks that).
OUTPUT_GATE_H_CONV = "streams.rgb.lstm.h_convs.o.weight"
FEEDBACK_FIRST_CONVS = {f"streams.rgb.feedback.{branch}.0.{kind}" for branch in ("delta_beta", "gamma")
                        for kind in ("weight", "bias")}
ZERO_GRADIENT_AT_T2 = {
    "flow": set(),
    "rgb": {OUTPUT_GATE_H_CONV},
    "rgb_ms": {OUTPUT_GATE_H_CONV},
    "rgb_ms_feedback": {OUTPUT_GATE_H_CONV, *FEEDBACK_FIRST_CONVS},
    "two_stream": {OUTPUT_GATE_H_CONV},
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_output(out: ModelOutput, cfg: ModelConfig, batch: int) -> None:
    side = layer4_side(cfg.image_size)
    width = 1024 if cfg.name == "two_stream" else 512
    assert out.logits.shape == (batch, cfg.num_classes)
    assert out.features.shape == (batch, width)
    assert out.feature_maps.shape == (batch, width, side, side)
    torch.testing.assert_close(out.features, out.feature_maps.mean(dim=(2, 3)))
    has_rgb = cfg.name != "flow"
    assert (out.attention is not None) == has_rgb
    if has_rgb:
        assert out.attention.shape == (batch, cfg.frames, side, side)
    assert (out.ms_logits is not None) == cfg.name.startswith("rgb_ms")
    if out.ms_logits is not None:
        assert out.ms_logits.shape == (batch, cfg.frames, 2, side, side)
    for value in dataclasses.astuple(out):
        assert value is None or torch.isfinite(value).all()


def test_registry_has_the_five_models() -> None:
    assert sorted(MODEL_NAMES) == ["flow", "rgb", "rgb_ms", "rgb_ms_feedback", "two_stream"]
    with pytest.raises(ConfigError, match="registered: flow"):
        build_model(ModelConfig(name="resnet"))


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="feedback_mode"):
        build_model(small_config("rgb_ms_feedback", feedback_mode="next_frame"))
    with pytest.raises(ConfigError, match="ms_variant"):
        build_model(small_config("rgb_ms", ms_variant="segmentation"))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_match_the_reference(name: str) -> None:
    model = build_model(ModelConfig(name=name))
    print(f"{name}: {_count(model):,} parameters")
    assert _count(model) == EXPECTED_PARAMETERS[name]


def test_backbone_is_resnet34() -> None:
    assert _count(build_backbone()) == RESNET34  # ~21.8M


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("size", "batch"), [(224, 1), (112, 2)])
def test_forward_shapes_n7(name: str, size: int, batch: int) -> None:
    """N = 7 frames at the reference's 224 (layer4 7x7) and the demo's 112 (layer4 4x4)."""
    cfg = small_config(name, image_size=size, frames=7)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(make_batch(cfg, batch=batch))
    _check_output(out, cfg, batch)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_input_keys(name: str) -> None:
    expected = {
        "flow": ("flow",),
        "rgb": ("rgb",),
        "rgb_ms": ("rgb", "mmaps"),
        "rgb_ms_feedback": ("rgb", "mmaps"),
        "two_stream": ("flow", "rgb"),
    }
    assert build_model(small_config(name)).input_keys == expected[name]


def _backward(cfg: ModelConfig) -> torch.nn.Module:
    """One training-mode forward and backward of L_cls (+ L_ms) on a batch; the model with its grads."""
    model = build_model(cfg).train()
    batch = make_batch(cfg)
    out = model(batch)
    loss = F.cross_entropy(out.logits, batch["label"])
    if out.ms_logits is not None:
        loss = loss + F.cross_entropy(out.ms_logits.flatten(0, 1), batch["mmaps"].flatten(0, 1))
    loss.backward()
    assert torch.isfinite(loss)
    return model


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_backward_reaches_every_trainable_parameter(name: str) -> None:
    """Every parameter gets a finite gradient that is non-zero somewhere, except exactly those
    listed in NO_GRADIENT (no gradient at all) and ZERO_GRADIENT_AT_T2 (all zeros, see there)."""
    model = _backward(small_config(name))  # T = 2 frames
    zero = ZERO_GRADIENT_AT_T2[name]
    for key, param in model.named_parameters():
        if key in NO_GRADIENT:
            assert param.grad is None, f"{key} got a gradient"
            continue
        assert param.grad is not None, f"{key} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{key} has a non-finite gradient"
        if key in zero:
            assert not param.grad.any(), f"{key}: expected an all-zero gradient at T=2 and initialisation"
        else:
            assert param.grad.any(), f"{key}: all-zero gradient"


def test_output_gate_recurrent_conv_gets_gradient_from_three_frames() -> None:
    """At T = 3 h_1 != 0 reaches step 2's output gate, and h_2 feeds step 3: the zero is T = 2's."""
    model = _backward(small_config("rgb", frames=3))
    assert model.get_parameter(OUTPUT_GATE_H_CONV).grad.any()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_is_deterministic(name: str) -> None:
    """In eval mode an output depends on its own input only: not on the RNG (dropout off), not on
    the rest of the batch (batch norm uses its running statistics), and the forward changes no
    buffer (running statistics stay put)."""
    cfg = small_config(name)
    model = build_model(cfg).eval()
    batch = make_batch(cfg, batch=3)
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    with torch.no_grad():
        torch.manual_seed(1)
        first = model(batch)
        torch.manual_seed(2)
        second = model(batch)
        alone = model({k: v[:1] for k, v in batch.items()})
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.feature_maps, second.feature_maps)
    # a batch of 1 runs other conv kernels: float rounding differs slightly, batch statistics would not
    torch.testing.assert_close(alone.logits, first.logits[:1], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(alone.feature_maps, first.feature_maps[:1], atol=1e-3, rtol=1e-3)
    for key, value in model.named_buffers():
        assert torch.equal(value, buffers[key]), f"{key} changed in an eval forward"


def test_ms_regression_variant() -> None:
    cfg = small_config("rgb_ms", ms_variant="regression")
    with torch.no_grad():
        out = build_model(cfg).eval()(make_batch(cfg))
    assert out.ms_logits.shape == (2, cfg.frames, 1, layer4_side(64), layer4_side(64))


def test_ms_head_refuses_another_input_size() -> None:
    cfg = small_config("rgb_ms", image_size=64)
    model = build_model(cfg).eval()
    with pytest.raises(FparError, match="resize the input"):
        model(make_batch(dataclasses.replace(cfg, image_size=112), batch=1))


def test_attention_is_a_softmax_of_the_cam_over_layer4_positions() -> None:
    cfg = small_config("rgb", image_size=112)
    model = build_model(cfg).eval()
    batch = make_batch(cfg, batch=2)
    with torch.no_grad():
        out = model(batch)
        backbone = model.streams.rgb.backbone
        features = backbone(batch["rgb"][:, 1])
        top = features.logits.argmax(dim=1)
        cam = torch.einsum("bc,bchw->bhw", backbone.fc.weight[top], features.layer4)
    expected = torch.softmax(cam.flatten(1), dim=1).view(2, 4, 4)
    torch.testing.assert_close(out.attention[:, 1], expected)
    torch.testing.assert_close(out.attention.sum(dim=(2, 3)), torch.ones(2, cfg.frames))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_channels_last(name: str) -> None:
    cfg = small_config(name)
    model = build_model(cfg).eval()
    batch = make_batch(cfg)
    inputs = {k: channels_last_input(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.no_grad():
        expected = model(batch)
        out = channels_last_model(model)(inputs)  # as the trainer runs it
        everything = model.to(memory_format=torch.channels_last)(inputs)
    torch.testing.assert_close(out.logits, expected.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(everything.logits, expected.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bf16_autocast_forward_backward(name: str) -> None:
    """Mixed precision as the training loop may use it on CPU."""
    cfg = small_config(name)
    model = build_model(cfg).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_batch(cfg))
    out.logits.float().sum().backward()
    assert torch.isfinite(out.logits.float()).all()
    fc = model.classifier.fc
    # d(sum of logits)/d(bias) is the batch size for every class, exactly (2 is exact in bf16)
    assert torch.equal(fc.bias.grad, torch.full_like(fc.bias, 2.0))
    assert torch.isfinite(fc.weight.grad).all() and fc.weight.grad.any()


def _compiled_step(name: str, backend: str, **options: str) -> None:
    """Compiled forward matches eager and its backward runs; a new batch of the same shapes (other labels and
    sample ids) reuses the compiled graph."""
    cfg = small_config(name, **options)
    model = build_model(cfg).eval()  # eval: dropout would make eager and compiled differ
    batch = make_batch(cfg)
    expected = model(batch)
    compiled = torch.compile(model, backend=backend)
    torch._dynamo.reset()
    out = compiled(batch)
    torch.testing.assert_close(out.logits, expected.logits, rtol=1e-4, atol=1e-4)
    out.logits.sum().backward()
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled(make_batch(cfg, seed=1))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_compile_aot_eager(name: str) -> None:
    _compiled_step(name, "aot_eager")


def test_compile_aot_eager_previous_frame_feedback() -> None:
    _compiled_step("rgb_ms_feedback", "aot_eager", feedback_mode="previous_frame")


@pytest.mark.slow
def test_compile_inductor() -> None:
    _compiled_step("rgb_ms_feedback", "inductor")


def test_num_classes_is_configurable() -> None:
    cfg = small_config("two_stream")
    assert build_model(cfg).classifier.fc.out_features == NUM_CLASSES
