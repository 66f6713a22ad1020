"""The report's feedback branch (issue 4, point 4): identity at initialisation, and which loss
reaches which parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_testkit import make_batch, small_config

from fpar.models import build_model
from fpar.models.checkpoints import load_partial_state

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

