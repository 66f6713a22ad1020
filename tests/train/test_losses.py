"""L_cls, L_ms (per-pixel CE and the regression variant) and L_tot = L_cls + alpha * L_ms."""

from __future__ import annotations

import math

import torch

from fpar.models.model import ModelOutput
from fpar.train.losses import compute_losses, motion_targets, ms_loss


def test_motion_targets_resize_nearest_keeps_labels() -> None:
    maps = torch.zeros(1, 1, 8, 8, dtype=torch.int64)
    maps[0, 0, :4, 4:] = 1  # the top-right quarter moves
    targets = motion_targets(maps, 2)
    assert targets.dtype == torch.int64 and targets.shape == (1, 1, 2, 2)
    assert targets[0, 0].tolist() == [[0, 1], [0, 0]]


def test_motion_targets_read_the_centre_of_each_cell_as_pil_does() -> None:
    # 224 -> 7: the label of cell (i, j) is the map's pixel (16 + 32 i, 16 + 32 j), as PIL's nearest
    # resize of the reference's mode-"1" maps gives it, not the cell's top-left pixel
    import numpy as np
    from PIL import Image

    maps = torch.zeros(1, 1, 224, 224, dtype=torch.int64)
    maps[0, 0, 16::32, 48::32] = 1  # centres of the cells from column 1 on
    maps[0, 0, 0::32, 0::32] = 1  # top-left corners of every cell
    targets = motion_targets(maps, 7)[0, 0]
    expected = torch.zeros(7, 7, dtype=torch.int64)
    expected[:, 1:] = 1
    assert torch.equal(targets, expected)
    pil = Image.fromarray(maps[0, 0].numpy().astype("uint8") * 255).convert("1").resize((7, 7))
    assert torch.equal(targets, torch.from_numpy(np.array(pil)).long())


def test_ms_cross_entropy_is_the_mean_over_batch_frames_positions() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 2, 2, 2)  # B, T, K, s, s
    maps = torch.randint(0, 2, (2, 3, 2, 2))  # already s x s: resizing keeps them
    expected = 0.0
    for b in range(2):
        for t in range(3):
            for y in range(2):
                for x in range(2):
                    p = torch.log_softmax(logits[b, t, :, y, x], dim=0)
                    expected -= float(p[maps[b, t, y, x]])
    assert math.isclose(float(ms_loss(logits, maps)), expected / 24, rel_tol=1e-5)


def test_ms_regression_variant_is_sigmoid_mse() -> None:
    logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 1, 2).expand(1, 1, 1, 2, 2).contiguous()
    maps = torch.tensor([[[[1, 0], [0, 1]]]])
    probs = torch.sigmoid(logits[0, 0, 0])
    expected = float(((probs - maps[0, 0].float()) ** 2).mean())
    assert math.isclose(float(ms_loss(logits, maps)), expected, rel_tol=1e-6)


def test_total_is_cls_plus_alpha_ms_and_cls_alone_without_head() -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(2, 4), torch.tensor([1, 3])
    ms_logits, maps = torch.randn(2, 3, 2, 4, 4), torch.randint(0, 2, (2, 3, 16, 16))
    batch = {"label": labels, "mmaps": maps}
    out = ModelOutput(logits=logits, features=torch.zeros(2, 1), feature_maps=torch.zeros(2, 1, 1, 1),
                      ms_logits=ms_logits)
    losses = compute_losses(out, batch, alpha=0.25)
    cls = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(losses.cls, cls)
    assert torch.allclose(losses.ms, ms_loss(ms_logits, maps))
    assert torch.allclose(losses.total, cls + 0.25 * losses.ms)
    plain = compute_losses(ModelOutput(logits, out.features, out.feature_maps), {"label": labels}, alpha=0.25)
    assert plain.ms is None and torch.equal(plain.total, plain.cls)
