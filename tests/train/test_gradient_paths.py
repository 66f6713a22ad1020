"""DESIGN section 3: the MS head learns from L_ms only; the feedback branch from both losses.

The branch's last convs start at zero, so at initialisation nothing upstream of them in the branch
can get a gradient; the tests look at the last convs as built, and at the whole branch once those
convs are made non-zero.
"""

from __future__ import annotations

import pytest
import torch

from fpar.config import ModelConfig
from fpar.models.registry import build_model
from fpar.train.losses import compute_losses


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"rgb": torch.randn(2, 2, 3, 64, 64), "mmaps": torch.randint(0, 2, (2, 2, 64, 64)),
            "label": torch.tensor([0, 2])}


def grads(model: torch.nn.Module, term: str, prefix: str) -> dict[str, float]:
    """Gradient norm of every parameter under `prefix` from one loss term alone."""
    model.zero_grad(set_to_none=True)
    losses = compute_losses(model(batch()), batch(), alpha=1.0)
    getattr(losses, term).backward()
    return {n: 0.0 if p.grad is None else float(p.grad.norm())
            for n, p in model.named_parameters() if n.startswith(prefix)}


def build(name: str, mode: str = "two_pass") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, num_classes=3, frames=2, image_size=64, mem_size=4,
                                   feedback_mode=mode)).eval()


def wake_feedback(model: torch.nn.Module) -> None:
    """Give the feedback branch's zero-initialised last convs (if any) random weights."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("streams.rgb.feedback.") and ".2." in n:
                p.normal_(0, 0.1)


@pytest.mark.parametrize("name, mode", [("rgb_ms", "two_pass"), ("rgb_ms_feedback", "two_pass"),
                                        ("rgb_ms_feedback", "previous_frame")])
def test_ms_head_gets_gradients_from_l_ms_only(name: str, mode: str) -> None:
    model = build(name, mode)
    wake_feedback(model)  # else the zero convs alone would block L_cls's way back into the head
    assert set(grads(model, "cls", "streams.rgb.ms_head.").values()) == {0.0}
    assert all(g > 0 for g in grads(model, "ms", "streams.rgb.ms_head.").values())
    assert grads(model, "ms", "streams.rgb.backbone.layer4.")["streams.rgb.backbone.layer4.2.conv2.weight"] > 0


@pytest.mark.parametrize("mode", ["two_pass", "previous_frame"])
def test_feedback_branch_gets_gradients_from_both_losses(mode: str) -> None:
    model = build("rgb_ms_feedback", mode)
    last = [f"streams.rgb.feedback.{b}.2.weight" for b in ("delta_beta", "gamma")]
    for term in ("cls", "ms"):
        found = grads(model, term, "streams.rgb.feedback.")
        assert all(found[n] > 0 for n in last), term  # the zero convs themselves learn
        assert found["streams.rgb.feedback.gamma.0.weight"] == 0.0  # behind a zero conv: nothing yet
    wake_feedback(model)
    for term in ("cls", "ms"):
        assert all(g > 0 for g in grads(model, term, "streams.rgb.feedback.").values()), term
