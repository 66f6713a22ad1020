"""previous_frame's weight gradients computed once over all frames (`models.batched_weight_grads`):
the same gradients as autograd's per-frame ones, and only where the deferral is meant to act."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from model_testkit import make_batch, small_config
from torch import nn

import fpar.models.batched_weight_grads as deferral
from fpar.models import build_model
from fpar.models.batched_weight_grads import batched_weight_grads
from fpar.train.losses import compute_losses
from fpar.train.stages import freeze_all_but, select, set_modes

STAGE3 = ["lstm", "classifier", "layer4_convs", "backbone_fc", "ms_head", "conv1", "feedback"]


class _FrameNet(nn.Module):
    """Convolutions of every kind the deferral meets: a module with bias, stride 2 and padding, a
    frozen one, a grouped one, and one called functionally with keyword arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.frozen = nn.Conv2d(8, 8, 1).requires_grad_(False)
        self.grouped = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False)
        self.last = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        x = self.a(x if state is None else x + state)
        x = self.grouped(F.relu(self.frozen(x)))
        return F.conv2d(input=x, weight=self.last.weight, bias=self.last.bias * 2)


def _chained(net: _FrameNet, clip: torch.Tensor, defer: bool) -> dict[str, torch.Tensor | None]:
    """previous_frame's pattern: each frame's input gets the last frame's (detached) output."""
    net.zero_grad(set_to_none=True)
    outputs, state = [], None
    with batched_weight_grads(net) if defer else torch.enable_grad():
        for frame in clip.unbind(1):
            out = net(frame, state)
            state = F.interpolate(out.detach().mean(1, keepdim=True), size=frame.shape[-2:]).expand_as(frame)
            outputs.append(out)
    (torch.stack(outputs, 1) ** 2).sum().backward()
    return {name: None if p.grad is None else p.grad.clone() for name, p in net.named_parameters()}


def _spy_gathers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes of the weights whose gradient the deferral gathered, in order."""
    gathered: list[tuple[int, ...]] = []
    weight_grad = deferral._Deferred.weight_grad

    def spy(self: deferral._Deferred) -> torch.Tensor:
        gathered.append(tuple(self.compute_weight.shape))
        return weight_grad(self)

    monkeypatch.setattr(deferral._Deferred, "weight_grad", spy)
    return gathered


def test_gathered_weight_gradients_equal_autograds_per_frame_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    net = _FrameNet().double()
    clip = torch.randn(2, 4, 3, 8, 8, dtype=torch.float64)
    expected = _chained(net, clip, defer=False)
    gathered = _spy_gathers(monkeypatch)
    got = _chained(net, clip, defer=True)
    assert sorted(gathered) == sorted([(8, 3, 3, 3), (8, 4, 3, 3), (4, 8, 1, 1)])  # once each, not per frame
    assert got["frozen.weight"] is None and got["frozen.bias"] is None
    for name, grad in expected.items():
        if grad is not None:
            torch.testing.assert_close(got[name], grad, rtol=1e-12, atol=1e-12, msg=name)


def test_large_convolutions_keep_autograds_per_frame_weight_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    net, clip = _FrameNet(), torch.randn(2, 3, 3, 8, 8)
    monkeypatch.setattr(deferral, "DEFER_BELOW_POSITIONS", 2 * 4 * 4)  # `a` and `grouped` give 2x4x4 outputs
    gathered = _spy_gathers(monkeypatch)
    _chained(net, clip, defer=True)
    assert gathered == []
    monkeypatch.setattr(deferral, "DEFER_BELOW_POSITIONS", 2 * 4 * 4 + 1)
    _chained(net, clip, defer=True)
    assert sorted(gathered) == sorted([(8, 3, 3, 3), (8, 4, 3, 3), (4, 8, 1, 1)])


def test_under_autocast_the_gradient_keeps_the_parameters_dtype() -> None:
    torch.manual_seed(0)
    net, clip = _FrameNet(), torch.randn(2, 3, 3, 8, 8)
    expected = _chained(net, clip, defer=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _chained(net, clip, defer=True)
    for name, grad in expected.items():
        if grad is not None:
            assert got[name].dtype == torch.float32
            torch.testing.assert_close(got[name], grad, rtol=0.05, atol=0.05 * grad.abs().max().item(), msg=name)


def test_a_backward_over_part_of_the_graph_leaves_nothing_for_the_next() -> None:
    """torch.autograd.grad on `last`'s bias runs `last`'s tap but not its gather: the full backward
    after it must gather its own pairs only; a retained graph's second backward gathers again."""
    torch.manual_seed(0)
    net, clip = _FrameNet().double(), torch.randn(2, 3, 3, 8, 8, dtype=torch.float64)
    twin = copy.deepcopy(net)
    sum((twin(frame, None) ** 2).sum() for frame in clip.unbind(1)).backward()
    with batched_weight_grads(net):
        loss = sum((net(frame, None) ** 2).sum() for frame in clip.unbind(1))
    torch.autograd.grad(loss, [net.last.bias], retain_graph=True)
    loss.backward(retain_graph=True)
    expected = dict(twin.named_parameters())
    for name, param in net.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, expected[name].grad, msg=name)
    first = net.last.weight.grad.clone()
    loss.backward()
    torch.testing.assert_close(net.last.weight.grad, 2 * first)


def test_a_weight_called_with_two_geometries_gets_each_calls_gradient() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)

    def loss() -> torch.Tensor:
        strided = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
        return (conv(x) ** 2).sum() + (strided ** 3).sum()

    loss().backward()
    expected = conv.weight.grad.clone()
    conv.zero_grad(set_to_none=True)
    with batched_weight_grads(conv):
        out = loss()
    out.backward()
    torch.testing.assert_close(conv.weight.grad, expected)


def test_outputs_may_be_changed_in_place_and_no_grad_calls_inside_pass_through() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    (conv(x).relu() * 3).sum().backward()
    expected = conv.weight.grad.clone()
    conv.zero_grad(set_to_none=True)
    with batched_weight_grads(conv):
        with torch.no_grad():
            conv(x)  # must not leave a gradient-less token behind for the calls below
        out = conv(x)
        out.relu_()  # in place on the conv's output: fine on autograd's own, so on ours too
    (out * 3).sum().backward()
    torch.testing.assert_close(conv.weight.grad, expected)


def test_nothing_outlives_the_graph_without_the_garbage_collector() -> None:
    import gc
    import weakref

    net, clip = _FrameNet(), torch.randn(1, 2, 3, 8, 8)
    gc.disable()
    try:
        with batched_weight_grads(net) as _, torch.enable_grad():
            out = net(clip[:, 0], None)
            mode = torch.overrides._get_current_function_mode()
            kept = [weakref.ref(deferred) for deferred, _token in mode.deferred.values()]
        assert kept and all(ref() is not None for ref in kept)
        out.sum().backward()
        del out, mode
        assert all(ref() is None for ref in kept)
    finally:
        gc.enable()


def test_without_grad_nothing_is_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    net, clip = _FrameNet(), torch.randn(1, 2, 3, 8, 8)
    monkeypatch.setattr(deferral, "_Tap", None)  # any routed convolution would fail
    with torch.no_grad(), batched_weight_grads(net):
        net(clip[:, 0], None)


@pytest.mark.parametrize("channels_last", [False, True])
def test_previous_frame_stage3_gradients_equal_the_per_frame_ones(monkeypatch: pytest.MonkeyPatch,
                                                                  channels_last: bool) -> None:
    """The whole model in fp64: the feedback branch woken (so frames really chain), stage 3's set."""
    cfg = small_config("rgb_ms_feedback", frames=3, feedback_mode="previous_frame")
    torch.manual_seed(0)
    model = build_model(cfg).double()
    with torch.no_grad():
        for p in model.streams.rgb.feedback.parameters():
            p.normal_(0, 0.1)
    if channels_last:
        model.streams.rgb.backbone.to(memory_format=torch.channels_last)
    trained = select(model, STAGE3, "stage3")
    freeze_all_but(model, set(trained))
    batch = make_batch(cfg)
    batch["rgb"] = batch["rgb"].double()

    def gradients(threshold: int) -> dict[str, torch.Tensor]:
        monkeypatch.setattr(deferral, "DEFER_BELOW_POSITIONS", threshold)
        twin = copy.deepcopy(model)
        set_modes(twin, set(trained), "eval")
        torch.manual_seed(1)  # the classifier's dropout
        compute_losses(twin(batch), batch, alpha=1.0).total.backward()
        return {k: p.grad for k, p in twin.named_parameters() if p.requires_grad}

    expected = gradients(0)  # nothing deferred: autograd's per-frame gradients
    gathered = _spy_gathers(monkeypatch)
    got = gradients(10**9)  # everything deferred, conv1 and the branch's full-size convolutions too
    convolutions = [k for k, p in model.named_parameters()
                    if p.requires_grad and p.dim() == 4 and not k.startswith("streams.rgb.lstm.")]
    assert len(gathered) == len(convolutions) == 12  # conv1, layer4's six 3x3, Conv100, the branch's 4
    for name, grad in expected.items():
        if grad is None:
            assert got[name] is None, name
        else:
            torch.testing.assert_close(got[name], grad, rtol=1e-10, atol=1e-10 * grad.abs().max().item(), msg=name)


def test_under_torch_compile_nothing_is_routed_and_gradients_equal_eagers(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config("rgb_ms_feedback", frames=2, feedback_mode="previous_frame")
    torch.manual_seed(0)
    model = build_model(cfg).double().eval()  # eval: dropout would make eager and compiled differ
    with torch.no_grad():
        for p in model.streams.rgb.feedback.parameters():
            p.normal_(0, 0.1)
    batch = make_batch(cfg)
    batch["rgb"] = batch["rgb"].double()  # fp64: the compiled graph's own rounding stays far below a wrong gradient
    twin = copy.deepcopy(model)
    model(batch).logits.sum().backward()
    gathered = _spy_gathers(monkeypatch)
    torch._dynamo.reset()
    torch.compile(twin, backend="aot_eager")(batch).logits.sum().backward()
    assert gathered == []
    expected = dict(model.named_parameters())
    for name, param in twin.named_parameters():
        if expected[name].grad is not None:
            torch.testing.assert_close(param.grad, expected[name].grad, rtol=1e-9, atol=1e-9 * expected[name].grad.abs().max().item(), msg=name)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
def test_on_a_gpu_nothing_is_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager on a GPU the mode's Python costs more than it saves (module doc)."""
    torch.manual_seed(0)
    net = _FrameNet().to("cuda", torch.float64)
    clip = torch.randn(2, 3, 3, 8, 8, device="cuda", dtype=torch.float64)
    gathered = _spy_gathers(monkeypatch)
    got = _chained(net, clip, defer=True)
    assert gathered == [] and got["a.weight"] is not None
