"""The report's feedback branch (issue 4, point 4): identity at initialisation, and which loss
reaches which parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_testkit import make_batch, small_config

from fpar.models import build_model
from fpar.models.checkpoints import load_partial_state
from fpar.models.heads import FeedbackBranch

MODES = ["two_pass", "previous_frame"]


def _losses(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """L_cls and L_ms computed inline (the training issue owns the real loss module)."""
    out = model(batch)
    l_cls = F.cross_entropy(out.logits, batch["label"])
    l_ms = F.cross_entropy(out.ms_logits.flatten(0, 1), batch["mmaps"].flatten(0, 1))
    return l_cls, l_ms


def _grads(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor | None]:
    return {k: p.grad for k, p in model.named_parameters() if k.startswith(prefix)}


@pytest.mark.parametrize("mode", MODES)
def test_at_initialisation_feedback_equals_rgb_ms(mode: str) -> None:
    cfg = small_config("rgb_ms", frames=3, feedback_mode=mode)
    plain = build_model(cfg).eval()
    feedback = build_model(small_config("rgb_ms_feedback", frames=3, feedback_mode=mode)).eval()
    report = load_partial_state(feedback, plain.state_dict())
    assert report.unexpected == [] and report.mismatched == []
    assert report.missing and all(k.startswith("streams.rgb.feedback.") for k in report.missing)
    batch = make_batch(cfg)
    with torch.no_grad():
        expected, out = plain(batch), feedback(batch)
    torch.testing.assert_close(out.logits, expected.logits)
    torch.testing.assert_close(out.ms_logits, expected.ms_logits)
    torch.testing.assert_close(out.attention, expected.attention)


@pytest.mark.parametrize("mode", MODES)
def test_each_loss_reaches_the_branch_and_only_l_ms_the_ms_head(mode: str) -> None:
    cfg = small_config("rgb_ms_feedback", feedback_mode=mode, frames=3)
    model = build_model(cfg).train()
    batch = make_batch(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    l_cls, l_ms = _losses(model, batch)
    (l_cls + l_ms).backward()
    optimizer.step()  # moves the zero-initialised last convs, so gradient reaches the first ones

    for loss_index in (0, 1):
        optimizer.zero_grad(set_to_none=True)
        _losses(model, batch)[loss_index].backward()
        branch = _grads(model, "streams.rgb.feedback.")
        assert len(branch) == 8
        for key, grad in branch.items():
            assert grad is not None and grad.abs().sum() > 0, f"{key}: no gradient from loss {loss_index}"
        ms_head = _grads(model, "streams.rgb.ms_head.")
        if loss_index == 0:  # L_cls never reaches the MS head (so pass 1 / frame t-1 kept no graph)
            assert all(g is None or not g.any() for g in ms_head.values())
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in ms_head.values())



def _constant_modulation(model: torch.nn.Module, scale: float, shift: float) -> None:
    """Branch biases set so that delta_beta = scale - 1 and gamma = shift everywhere (weights stay 0)."""
    feedback = model.streams.rgb.feedback
    with torch.no_grad():
        feedback.delta_beta[2].bias.fill_(scale - 1)
        feedback.gamma[2].bias.fill_(shift)


def _maxpool_inputs(model: torch.nn.Module, batch: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per backbone call: bn1's output and the max-pool's input (what feedback may modulate)."""
    backbone = model.streams.rgb.backbone
    bn1_outputs: list[torch.Tensor] = []
    maxpool_inputs: list[torch.Tensor] = []
    hooks = [
        backbone.bn1.register_forward_hook(lambda m, args, out: bn1_outputs.append(out)),
        backbone.maxpool.register_forward_pre_hook(lambda m, args: maxpool_inputs.append(args[0])),
    ]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    return bn1_outputs, maxpool_inputs


def test_two_pass_modulates_conv1_after_bn1_relu_before_maxpool() -> None:
    """Pass 1 is unmodulated; pass 2 feeds (1 + delta_beta) * relu(bn1(conv1)) + gamma to the max-pool.

    Both passes start from one stem: conv1 and bn1 run once.
    """
    cfg = small_config("rgb_ms_feedback", frames=2)
    model = build_model(cfg).eval()
    _constant_modulation(model, scale=1.5, shift=0.25)
    bn1_outputs, maxpool_inputs = _maxpool_inputs(model, make_batch(cfg))
    assert len(bn1_outputs) == 1 and len(maxpool_inputs) == 2  # pass 1, pass 2 (all B*T frames in one batch each)
    torch.testing.assert_close(maxpool_inputs[0], F.relu(bn1_outputs[0]))
    torch.testing.assert_close(maxpool_inputs[1], 1.5 * F.relu(bn1_outputs[0]) + 0.25)


def test_two_pass_branch_reads_the_unmodulated_conv100() -> None:
    cfg = small_config("rgb_ms_feedback", frames=2, image_size=112)
    model = build_model(cfg).eval()
    stream = model.streams.rgb
    seen: dict[str, torch.Tensor] = {}
    stream.feedback.delta_beta[0].register_forward_pre_hook(lambda m, args: seen.update(source=args[0]))
    batch = make_batch(cfg)
    with torch.no_grad():
        model(batch)
        frames = batch["rgb"].flatten(0, 1)
        conv100 = stream.ms_head.embed(stream.backbone(frames).layer4)  # (B*T, 100, 4, 4)
    torch.testing.assert_close(seen["source"], conv100)  # the branch upsamples after its first conv


@pytest.mark.parametrize(("source_side", "stem_side"), [((4, 4), (56, 56)), ((7, 7), (112, 112)), ((3, 5), (17, 23))])
def test_branch_equals_the_design_formula_on_the_upsampled_source(source_side, stem_side) -> None:
    """F' = (1 + delta_beta(up(s))) * F + gamma(up(s)), though the branch convolves before upsampling."""
    torch.manual_seed(0)
    branch = FeedbackBranch()
    with torch.no_grad():
        for conv in (branch.delta_beta[2], branch.gamma[2]):  # both start at zero: give them values
            conv.weight.normal_(std=0.1)
            conv.bias.normal_(std=0.1)
    source, features = torch.randn(2, 100, *source_side), torch.randn(2, 64, *stem_side)
    upsampled = F.interpolate(source, size=stem_side, mode="bilinear", align_corners=False)
    expected = (1 + branch.delta_beta(upsampled)) * features + branch.gamma(upsampled)
    torch.testing.assert_close(branch(source, features), expected, rtol=1e-5, atol=1e-5)


def test_previous_frame_leaves_frame_one_unmodulated() -> None:
    cfg = small_config("rgb_ms_feedback", frames=3, feedback_mode="previous_frame")
    model = build_model(cfg).eval()
    _constant_modulation(model, scale=0.5, shift=-0.1)
    bn1_outputs, maxpool_inputs = _maxpool_inputs(model, make_batch(cfg))
    assert len(maxpool_inputs) == 3  # one pass per frame
    torch.testing.assert_close(maxpool_inputs[0], F.relu(bn1_outputs[0]))
    for bn1, pooled in zip(bn1_outputs[1:], maxpool_inputs[1:]):
        torch.testing.assert_close(pooled, 0.5 * F.relu(bn1) - 0.1)


def test_two_pass_pass_one_leaves_bn_running_statistics_to_pass_two() -> None:
    """Under `bn: train`, only the modulated pass counts as a batch for BN's running statistics."""
    cfg = small_config("rgb_ms_feedback", frames=2)
    model = build_model(cfg).train()
    _constant_modulation(model, scale=1.5, shift=0.25)
    bn = model.streams.rgb.backbone.layer4[-1].bn2
    before = bn.running_mean.clone()
    inputs: list[torch.Tensor] = []
    hook = bn.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
    model(make_batch(cfg))
    hook.remove()
    assert len(inputs) == 2  # pass 1, pass 2
    expected = (1 - bn.momentum) * before + bn.momentum * inputs[1].mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected)
    assert int(bn.num_batches_tracked) == 1
