"""`fpar eval` on hand-made run dirs (the trainer's contract) over a tiny prepared synthetic root."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from eval_kit import data_config, make_group, make_run
from fpar.data.datasets import make_dataset
from fpar.data.layout import discover
from fpar.errors import CheckpointError, DataError, FparError
from fpar.evaluate.evaluation import evaluate_path, evaluate_run
from fpar.evaluate.metrics import accuracy
from fpar.evaluate.outputs import read_scores
from fpar.models import load_model


def _test_samples(run, root, part="test"):
    ids = json.loads(run.split.read_text())[part]
    found = {s.id: s for s in discover(root).samples}
    return [found[i] for i in ids]


def _direct_logits(run, root, segments=1) -> tuple[torch.Tensor, dict]:
    """The checkpoint's logits on the test samples, computed here without fpar.evaluate."""
    model, meta = load_model(run.checkpoint("best"))
    dataset = make_dataset(_test_samples(run, root), meta.class_names, model.input_keys, data_config(root),
                           train=False, segments=segments)
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return model, batch


def test_eval_writes_metrics_that_agree_with_the_models_logits(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    result = evaluate_run(run.root, progress=False)
    folder = run.eval_dir("best", "test")
    assert result.folder == folder
    for name in ("metrics.json", "per_class.csv", "confusion.json", "confusion.csv", "confusion.png", "scores.csv"):
        assert (folder / name).is_file(), name
    assert not (folder / "motion.png").exists()  # rgb has no MS head

    model, batch = _direct_logits(run, prepared_root)
    with torch.no_grad():
        expected = model(batch).logits
    saved = read_scores(folder / "scores.csv")
    assert saved.sample_ids == list(batch["sample_id"])
    np.testing.assert_allclose(saved.logits, expected.numpy(), rtol=1e-5, atol=1e-6)

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["accuracy"] == accuracy(saved)
    assert metrics["samples"] == len(batch["label"]) == 8
    assert (metrics["checkpoint"], metrics["split"], metrics["protocol"], metrics["test_user"]) == \
        ("best", "test", "val", "S2")
    assert metrics["checkpoint_epoch"] == 2 and metrics["model"] == "rgb" and metrics["motion"] is None
    matrix = json.loads((folder / "confusion.json").read_text())
    assert np.array(matrix["matrix"]).sum() == 8 and matrix["classes"] == saved.classes
    assert np.trace(np.array(matrix["matrix"])) == round(8 * metrics["accuracy"])
    # synthetic data: the pairs of the tiny class set are scored on their test samples (2 clips a class)
    assert metrics["pairs"]["order_only"]["pairs"]["put_cup/take_cup"]["samples"] == 4
    assert metrics["pairs"]["object_only"]["samples"] == 4


def test_eval_is_deterministic(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    evaluate_run(run.root, progress=False)
    first = (run.eval_dir() / "scores.csv").read_bytes()
    evaluate_run(run.root, progress=False, batch_size=3)
    assert (run.eval_dir() / "scores.csv").read_bytes() == first


def test_ms_model_scores_motion_maps_against_the_given_ones(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "ms", prepared_root, "rgb_ms")
    metrics = evaluate_run(run.root, progress=False).metrics
    assert (run.eval_dir() / "motion.png").is_file()

    model, batch = _direct_logits(run, prepared_root)
    with torch.no_grad():
        ms = model(batch).ms_logits  # (B, T, 2, s, s)
    given = F.interpolate(batch["mmaps"].float(), size=ms.shape[-2:], mode="nearest-exact").bool()
    predicted = ms.argmax(dim=2) == 1
    motion = metrics["motion"]
    assert motion["pixels"] == given.numel() and motion["frames"] == given.shape[0] * given.shape[1]
    assert motion["pixel_accuracy"] == pytest.approx((predicted == given).float().mean().item())
    assert motion["moving_share_given"] == pytest.approx(given.float().mean().item())
    assert motion["moving_share_predicted"] == pytest.approx(predicted.float().mean().item())


def test_flow_segments_average_the_logits_of_each_window(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "flow", prepared_root, "flow")
    evaluate_run(run.root, progress=False, segments=2)
    model, batch = _direct_logits(run, prepared_root, segments=2)
    assert batch["flow"].shape[1] == 2  # (B, S, 2L, H, W)
    with torch.no_grad():
        per_window = [model({"flow": batch["flow"][:, s]}).logits for s in range(2)]
    expected = (per_window[0] + per_window[1]) / 2
    saved = read_scores(run.eval_dir() / "scores.csv")
    np.testing.assert_allclose(saved.logits, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(per_window[0].numpy(), per_window[1].numpy())  # the windows do differ
    assert json.loads((run.eval_dir() / "metrics.json").read_text())["segments"] == 2


def test_last_checkpoint_on_the_val_split(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    metrics = evaluate_run(run.root, checkpoint="last", split="val", progress=False).metrics
    assert (run.eval_dir("last", "val") / "metrics.json").is_file()
    assert metrics["samples"] == len(json.loads(run.split.read_text())["val"])
    assert (metrics["checkpoint"], metrics["split"]) == ("last", "val")
    assert {sid.split("/")[0] for sid in read_scores(run.eval_dir("last", "val") / "scores.csv").sample_ids} \
        .isdisjoint({"S2"})


def test_group_dir_evaluates_each_run(tmp_path, prepared_root) -> None:
    group = make_group(tmp_path / "all", "splits", ["S1", "S2"])
    for user in ("S1", "S2"):
        make_run(group / user, prepared_root, "rgb", test_user=user)
    results = evaluate_path(group, progress=False)
    assert [r.metrics["test_user"] for r in results] == ["S1", "S2"]
    assert all((group / user / "eval" / "best-test" / "metrics.json").is_file() for user in ("S1", "S2"))


def test_bad_run_dirs_fail_in_one_line_naming_the_file(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    run.checkpoint("last").unlink()
    with pytest.raises(DataError, match=r"last\.pt: checkpoint not found"):
        evaluate_run(run.root, checkpoint="last", progress=False)
    with pytest.raises(FparError, match="segments 2: model 'rgb' reads no flow"):
        evaluate_run(run.root, segments=2, progress=False)
    run.recipe.unlink()
    with pytest.raises(DataError, match=r"recipe\.yaml: not found"):
        evaluate_run(run.root, progress=False)


def test_checkpoint_of_other_classes_is_refused(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    split = json.loads(run.split.read_text())
    split["classes"] = sorted(split["classes"], reverse=True)  # same names, other ids: still wrong
    run.split.write_text(json.dumps(split))
    with pytest.raises(CheckpointError, match=r"best\.pt: its 4 classes differ from the 4 of .*split\.json"):
        evaluate_run(run.root, progress=False)


def test_split_naming_samples_the_root_lacks_is_refused(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb", test_ids=["S2/take_cup/1", "S9/take_cup/1"])
    with pytest.raises(DataError, match=r"split\.json: 1 sample\(s\) not in data root .*S9/take_cup/1"):
        evaluate_run(run.root, progress=False)
