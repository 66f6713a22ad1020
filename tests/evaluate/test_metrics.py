"""Score-based metrics, scores.csv and the fusion rule on hand-made scores (no model, no data)."""

from __future__ import annotations

import numpy as np
import pytest

from fpar.errors import DataError, FparError
from fpar.evaluate.fusion import fuse_scores
from fpar.evaluate.metrics import (
    MotionCounts,
    Scores,
    accuracy,
    classification_metrics,
    confusion_matrix,
    pair_accuracy,
    split_label,
    part_accuracy,
    synthetic_pairs,
)
from fpar.evaluate.outputs import read_scores, write_scores

CLASSES = ["put_cup", "shake_box", "take_box", "take_cup"]


def scores(true: list[str], logits: list[list[float]], ids: list[str] | None = None) -> Scores:
    return Scores(ids or [f"S2/{t}/{i}" for i, t in enumerate(true)], [CLASSES.index(t) for t in true],
                  np.array(logits, dtype=float), CLASSES)


# 4 samples: take_cup called put_cup (same noun, order-only pair), take_box called take_cup (same verb),
# put_cup right, shake_box called take_box (neither verb nor noun... box: same noun).
EXAMPLE = scores(["take_cup", "take_box", "put_cup", "shake_box"],
                 [[3, 0, 0, 1], [0, 0, 1, 2], [2, 0, 1, 0], [0, 1, 2, 0]])


def test_labels_split_at_the_first_underscore() -> None:
    assert split_label("take_cup") == ("take", "cup")
    assert split_label("pour_honey_bread") == ("pour", "honey_bread")
    assert split_label("stir") == ("stir", "")


def test_accuracy_verb_and_noun() -> None:
    assert accuracy(EXAMPLE) == 0.25
    # verbs: take->put wrong, take->take right, put right, shake->take wrong
    assert part_accuracy(EXAMPLE, 0) == 0.5
    # nouns: cup->cup right, box->cup wrong, cup right, box->box right
    assert part_accuracy(EXAMPLE, 1) == 0.75


def test_confusion_rows_are_true_columns_predicted() -> None:
    matrix = confusion_matrix(EXAMPLE)
    assert matrix.sum() == 4
    assert matrix[CLASSES.index("take_cup"), CLASSES.index("put_cup")] == 1
    assert matrix[CLASSES.index("shake_box"), CLASSES.index("take_box")] == 1
    per_class = classification_metrics(EXAMPLE)["per_class"]
    assert per_class["put_cup"] == {"samples": 1, "accuracy": 1.0}
    assert per_class["take_cup"] == {"samples": 1, "accuracy": 0.0}


def test_pair_accuracy_is_the_binary_decision_within_the_pair() -> None:
    """Two take_cup samples: one prefers take_cup to put_cup (3 > 1): right, one put_cup (2 > 0): wrong;
    a put_cup sample prefers put_cup: right. The take_box sample is not in the pair, and the other
    classes' logits (9, larger than both) do not matter."""
    within = scores(["take_cup", "take_cup", "put_cup", "take_box"],
                    [[1, 9, 9, 3], [2, 9, 9, 0], [2, 9, 9, 0], [0, 0, 9, 5]])
    result = pair_accuracy(within, [("put_cup", "take_cup")])
    assert result["samples"] == 3
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["pairs"]["put_cup/take_cup"] == {"samples": 3, "accuracy": pytest.approx(2 / 3)}
    assert accuracy(within) == 1 / 4  # shake_box (9) wins the full argmax of the first three


def test_pairs_found_only_on_synthetic_class_names() -> None:
    pairs = synthetic_pairs(CLASSES)
    assert pairs["order_only"] == [("put_cup", "take_cup")]
    assert ("take_box", "take_cup") in pairs["object_only"]
    assert synthetic_pairs(["close_coffee", "fold_bread", "take_cup"]) is None
    assert classification_metrics(Scores([], [], np.zeros((0, 3)), ["close_coffee", "fold_bread", "open_jam"]))[
        "pairs"] is None


def test_motion_counts_iou() -> None:
    counts = MotionCounts()
    given = np.array([[[1, 1], [0, 0]]], dtype=bool)  # (T=1, 2, 2)
    predicted = np.array([[[1, 0], [1, 0]]], dtype=bool)
    counts.add(predicted[None], given[None])
    summary = counts.summary()
    assert summary["pixel_accuracy"] == 0.5
    assert summary["iou_moving"] == pytest.approx(1 / 3)  # tp 1, fp 1, fn 1
    assert summary["iou_static"] == pytest.approx(1 / 3)
    assert summary["frames"] == 1 and summary["pixels"] == 4
    empty = MotionCounts()
    empty.add(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool))
    assert empty.summary()["iou_moving"] is None  # nothing moves anywhere: no score, not a perfect one


def test_scores_csv_round_trip_is_exact(tmp_path) -> None:
    rng = np.random.default_rng(0)
    original = scores(["take_cup", "put_cup", "take_box"], rng.normal(size=(3, 4)).astype(np.float32).tolist())
    back = read_scores(write_scores(tmp_path / "scores.csv", original))
    assert back.sample_ids == original.sample_ids and back.classes == CLASSES
    np.testing.assert_array_equal(back.labels, original.labels)
    np.testing.assert_array_equal(back.logits, original.logits)


def test_malformed_scores_name_the_file(tmp_path) -> None:
    bad = tmp_path / "scores.csv"
    bad.write_text("id,what\nS2/a/1,x\n")
    with pytest.raises(DataError, match=str(bad)):
        read_scores(bad)


def test_fusion_is_the_weighted_mean_of_probabilities(tmp_path) -> None:
    a = scores(["take_cup", "put_cup"], [[0, 0, 0, 2], [1, 0, 0, 0]], ids=["x", "y"])
    b = scores(["put_cup", "take_cup"], [[0, 3, 0, 0], [0, 0, 0, 1]], ids=["y", "x"])  # other order
    fused = fuse_scores([(tmp_path / "a", a), (tmp_path / "b", b)], [1.0, 3.0])
    expected_x = (1 * a.probabilities()[0] + 3 * b.probabilities()[1]) / 4
    np.testing.assert_allclose(fused.probabilities()[0], expected_x)
    np.testing.assert_allclose(np.exp(fused.logits).sum(axis=1), 1.0)  # stored as log-probabilities
    assert fused.sample_ids == ["x", "y"]
    # a weight of zero leaves the other run's decision alone
    only_b = fuse_scores([(tmp_path / "a", a), (tmp_path / "b", b)], [0.0, 1.0])
    np.testing.assert_allclose(only_b.probabilities(), b.probabilities()[[1, 0]])


def test_fusion_refuses_different_samples_naming_the_file(tmp_path) -> None:
    a = scores(["take_cup"], [[0, 0, 0, 1]], ids=["x"])
    b = scores(["take_cup"], [[0, 0, 0, 1]], ids=["z"])
    with pytest.raises(FparError, match=r"b/scores.csv: its 1 samples are not"):
        fuse_scores([(tmp_path / "a/scores.csv", a), (tmp_path / "b/scores.csv", b)], [1, 1])
    relabelled = scores(["put_cup"], [[0, 0, 0, 1]], ids=["x"])
    with pytest.raises(FparError, match="labels differ"):
        fuse_scores([(tmp_path / "a", a), (tmp_path / "c", relabelled)], [1, 1])
    with pytest.raises(FparError, match="one weight per run"):
        fuse_scores([(tmp_path / "a", a), (tmp_path / "a2", a)], [1])


def test_summary_line_shows_motion_maps_even_when_nothing_moves() -> None:
    from pathlib import Path

    from fpar.evaluate.outputs import summary_line

    metrics = {"model": "rgb_ms", "samples": 8, "accuracy": 0.25, "verb_accuracy": 0.5, "noun_accuracy": 0.75,
               "pairs": {"order_only": {"accuracy": 0.5}, "object_only": {"accuracy": None}}, "protocol": "val",
               "motion": {"pixel_accuracy": 1.0, "iou_moving": None}}
    line = summary_line(Path("run/eval/best-test"), metrics)
    assert line == ("run/eval/best-test: rgb_ms, 8 samples, accuracy 25.00%, verb 50.00%, noun 75.00%, "
                    "order-only pairs 50.00%, motion maps: pixel accuracy 100.0%, IoU n/a (nothing moving) "
                    "(protocol: val)")
    metrics["motion"]["iou_moving"] = 0.5
    assert "motion maps: pixel accuracy 100.0%, IoU 50.0% (protocol: val)" in summary_line(Path("r"), metrics)
