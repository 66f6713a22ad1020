"""`fpar eval --fuse` over saved scores and `fpar report`'s table, warnings and figures."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from eval_kit import default_metrics_rows, make_group, make_run, write_metrics_csv
from fpar.errors import DataError, FparError
from fpar.evaluate.evaluation import evaluate_run
from fpar.evaluate.fusion import fuse_runs
from fpar.evaluate.metrics import accuracy
from fpar.evaluate.outputs import read_scores
from fpar.evaluate.report import build_report, mean_std


def test_fuse_evaluates_missing_runs_and_averages_probabilities(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow", seed=1)
    result = fuse_runs([rgb.root, flow.root], tmp_path / "fused", [1.0, 1.5], progress=False)
    a, b = (read_scores(run.eval_dir() / "scores.csv") for run in (rgb, flow))  # written by the fusion's evals
    expected = (1.0 * a.probabilities() + 1.5 * b.probabilities()) / 2.5
    np.testing.assert_allclose(result.scores.probabilities(), expected, rtol=1e-9)
    metrics = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert metrics["accuracy"] == accuracy(result.scores)
    assert metrics["fusion"]["weights"] == [1.0, 1.5] and metrics["model"] == "rgb+flow"
    assert (tmp_path / "fused" / "confusion.png").is_file()


def test_fusing_runs_of_other_test_samples_names_the_scores_file(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    fewer = make_run(tmp_path / "fewer", prepared_root, "flow", test_ids=["S2/take_cup/1", "S2/put_cup/1"])
    with pytest.raises(FparError, match=r"fewer/eval/best-test/scores\.csv: its 2 samples are not the 8"):
        fuse_runs([rgb.root, fewer.root], tmp_path / "fused", progress=False)
    assert not (tmp_path / "fused" / "metrics.json").exists()


def test_report_table_groups_published_column_and_warnings(tmp_path, prepared_root) -> None:
    single = make_run(tmp_path / "rgb_run", prepared_root, "rgb")
    single.warnings.write_text("test class put_cup never seen in training\n")
    seeds = make_group(tmp_path / "ms_seeds", "seeds", ["seed0", "seed1"])
    for seed in (0, 1):
        make_run(seeds / f"seed{seed}", prepared_root, "rgb_ms", seed=seed)
    assert not single.eval_dir().exists()  # the report evaluates what was not evaluated yet

    report = build_report([single.root, seeds], tmp_path / "report", progress=False)
    assert (single.eval_dir() / "metrics.json").is_file()
    table = report.table_md.read_text()
    rgb_line = next(line for line in table.splitlines() if line.startswith("| rgb_run "))
    ms_line = next(line for line in table.splitlines() if line.startswith("| ms_seeds "))
    # published GTEA61 numbers: rgb's in the last column, none for rgb_ms, and marked as not ours
    assert rgb_line.rstrip(" |").endswith("52.56") and ms_line.rstrip(" |").endswith("-")
    assert "published GTEA61 (%), seed report, not ours" in table
    # the group: mean ± sample std of its two runs' accuracies, training time summed over both
    accs = [100 * json.loads((seeds / s / "eval/best-test/metrics.json").read_text())["accuracy"]
            for s in ("seed0", "seed1")]
    mean, std = mean_std(accs)
    assert f"{mean:.2f} ± {std:.2f} (n=2) | {accs[0]:.1f} / {accs[1]:.1f} |" in ms_line  # and run by run
    assert "1m 20s" in ms_line and "0m 40s" in rgb_line  # 4 epochs x 10 s per run
    assert "val (checkpoint chosen on a validation part)" in rgb_line
    assert "- rgb_run: rgb_run: test class put_cup never seen in training" in table

    with report.table_csv.open() as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert rows["ms_seeds"]["runs"] == "2" and rows["ms_seeds"]["kind"] == "seeds"
    assert float(rows["ms_seeds"]["test_accuracy_mean"]) == pytest.approx(mean)
    assert rows["ms_seeds"]["published_gtea61"] == "" and float(rows["rgb_run"]["published_gtea61"]) == 52.56
    assert float(rows["rgb_run"]["training_seconds"]) == 40.0
    names = sorted(p.name for p in report.figures)
    assert names == ["curves.png", "ms_seeds-seed0.png", "ms_seeds-seed1.png", "rgb_run.png"]
    assert all(p.stat().st_size > 0 for p in report.figures)


def test_report_reevaluates_a_changed_checkpoint(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    evaluate_run(run.root, progress=False)
    stale = json.loads((run.eval_dir() / "metrics.json").read_text())["checkpoint_sha256"]
    make_run(tmp_path / "rgb", prepared_root, "rgb", seed=5)  # "training went on": new weights
    build_report([run.root], tmp_path / "report", progress=False)
    assert json.loads((run.eval_dir() / "metrics.json").read_text())["checkpoint_sha256"] != stale


def test_report_shows_a_fused_folder_as_a_row(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    fused = fuse_runs([rgb.root, flow.root], tmp_path / "fused", progress=False)
    table = build_report([tmp_path / "fused"], tmp_path / "report").table_md.read_text()
    line = next(line for line in table.splitlines() if line.startswith("| fused (fusion) "))
    assert f"{100 * fused.metrics['accuracy']:.2f}" in line and "rgb+flow" in line


def test_a_fusion_of_retrained_runs_is_fused_again_in_the_report(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    old = fuse_runs([rgb.root, flow.root], tmp_path / "fused", progress=False).metrics
    make_run(tmp_path / "rgb", prepared_root, "rgb", seed=5)  # "training went on": new weights
    build_report([tmp_path / "fused"], tmp_path / "report", progress=False)
    new = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert new["fusion"]["checkpoint_sha256"][0] != old["fusion"]["checkpoint_sha256"][0]
    assert new["fusion"]["checkpoint_sha256"][1] == old["fusion"]["checkpoint_sha256"][1]
    assert new["fusion"]["checkpoint_sha256"][0] == json.loads((rgb.eval_dir() / "metrics.json").read_text())[
        "checkpoint_sha256"]


def test_fusing_without_segments_keeps_a_flow_runs_windows(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow", seed=1)
    evaluate_run(flow.root, segments=3, progress=False)
    saved = (flow.eval_dir() / "scores.csv").read_bytes()
    fuse_runs([rgb.root, flow.root], tmp_path / "fused", progress=False)
    assert json.loads((flow.eval_dir() / "metrics.json").read_text())["segments"] == 3
    assert (flow.eval_dir() / "scores.csv").read_bytes() == saved


def test_a_fusion_whose_source_is_gone_is_shown_as_saved_with_a_warning(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    fused = fuse_runs([rgb.root, flow.root], tmp_path / "fused", progress=False).metrics
    rgb.checkpoint("best").unlink()
    report = build_report([tmp_path / "fused"], tmp_path / "report", progress=False)
    assert report.rows[0].evaluations[0]["accuracy"] == fused["accuracy"]
    assert report.rows[0].warnings == [f"fused from {rgb.root}, whose best checkpoint is gone: shown as fused then"]


def test_a_fusion_of_another_split_is_refused_not_shown_under_the_tables_heading(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    fuse_runs([rgb.root, flow.root], tmp_path / "fused", split="val", progress=False)
    with pytest.raises(FparError, match="fused: a fusion of the best checkpoints on the val split, but the table "
                                        "is of best on test"):
        build_report([tmp_path / "fused"], tmp_path / "report", progress=False)
    assert not (tmp_path / "report").exists()


def test_runs_of_one_folder_name_keep_their_own_rows_curves_and_columns(tmp_path, prepared_root) -> None:
    first = make_run(tmp_path / "a" / "rgb", prepared_root, "rgb")
    second = make_run(tmp_path / "b" / "rgb", prepared_root, "rgb", seed=1)
    for run in (first, second):
        write_metrics_csv(run, default_metrics_rows())
    report = build_report([first.root, second.root], tmp_path / "report", split="val", progress=False)
    assert [row.name for row in report.rows] == ["a/rgb", "b/rgb"]
    assert sorted(p.name for p in (tmp_path / "report" / "curves").iterdir()) == ["a-rgb.png", "b-rgb.png"]
    with report.table_csv.open() as handle:
        header = next(csv.reader(handle))
    assert "val_accuracy_mean" in header and "test_accuracy_mean" not in header


def test_metrics_csv_with_other_columns_is_refused(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    run.metrics.write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(DataError, match=r"metrics\.csv: columns"):
        build_report([run.root], tmp_path / "report", progress=False)


def test_mean_std_uses_the_sample_deviation() -> None:
    mean, std = mean_std([50.0, 60.0])
    assert mean == 55.0 and std == pytest.approx(math.sqrt(50.0))
    assert mean_std([42.0]) == (42.0, None)


def test_curves_skip_a_run_without_metrics_rows(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb", metrics_rows=[])
    report = build_report([run.root], tmp_path / "report", progress=False)
    assert report.figures == [] and "| rgb |" in report.table_md.read_text()
    write_metrics_csv(run, default_metrics_rows())
    assert len(build_report([run.root], tmp_path / "report2", progress=False).figures) == 2


def test_wrong_weight_count_is_refused_before_any_run_is_evaluated(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    with pytest.raises(FparError, match="3 weights for 2 runs"):
        fuse_runs([rgb.root, flow.root], tmp_path / "fused", [1.0, 1.0, 1.0], progress=False)
    assert not rgb.eval_dir().exists() and not flow.eval_dir().exists()


@pytest.mark.parametrize("weights", [[math.nan, 1.0], [math.inf, 1.0], [-1.0, 2.0]])
def test_weights_that_are_not_finite_and_non_negative_are_refused(tmp_path, prepared_root, weights) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    with pytest.raises(FparError, match="need finite, non-negative weights"):
        fuse_runs([rgb.root, flow.root], tmp_path / "fused", weights, progress=False)


def test_fusing_with_segments_averages_windows_of_the_flow_run_only(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow", seed=1)
    evaluate_run(flow.root, progress=False)  # a current evaluation, but over one window
    fuse_runs([rgb.root, flow.root], tmp_path / "fused", segments=3, progress=False)
    windows = [json.loads((run.eval_dir() / "metrics.json").read_text())["segments"] for run in (rgb, flow)]
    assert windows == [1, 3]  # the flow run was evaluated again, with the windows asked for


def test_report_with_a_bad_argument_writes_nothing(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(DataError, match=r"not_a_run/recipe\.yaml: not found"):
        build_report([rgb.root, tmp_path / "not_a_run"], tmp_path / "report", progress=False)
    assert not (tmp_path / "report").exists()  # no curves of the good run left behind


def test_comparison_figure_keeps_a_runs_colour_in_every_panel(tmp_path, monkeypatch) -> None:
    """The L_ms panel has only the MS runs: their colours must still be those of the other panels."""
    from matplotlib.axes import Axes

    from fpar.evaluate import figures

    row = {"stage": "s1", "train_loss_cls": 1.0, "val_acc": 0.5}
    runs = [("rgb", [{**row, "train_loss_ms": math.nan}] * 2), ("rgb_ms", [{**row, "train_loss_ms": 0.3}] * 2)]
    drawn: dict[str, set[str]] = {}
    real_plot = Axes.plot

    def spy(self, *args, **kwargs):
        if "label" in kwargs:
            drawn.setdefault(kwargs["label"], set()).add(str(kwargs.get("color")))
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    figures.comparison_figure(runs, tmp_path / "curves.png")
    assert set(drawn) == {"rgb", "rgb_ms"}
    assert all(len(colours) == 1 for colours in drawn.values()) and drawn["rgb"] != drawn["rgb_ms"]


def test_each_model_is_evaluated_as_ego_rnn_does_by_default(tmp_path, prepared_root) -> None:
    # eval-run-flow.py averages 5 flow windows; the RGB and joint two-stream evaluations read one
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    report = build_report([rgb.root, flow.root], tmp_path / "report", progress=False)
    saved = {run.root.name: json.loads((run.eval_dir() / "metrics.json").read_text()) for run in (rgb, flow)}
    assert (saved["rgb"]["segments"], saved["flow"]["segments"]) == (1, 5)
    table = report.table_md.read_text()
    flow_line = next(line for line in table.splitlines() if line.startswith("| flow "))
    rgb_line = next(line for line in table.splitlines() if line.startswith("| rgb "))
    assert "5 flow windows averaged" in flow_line and "windows" not in rgb_line
    assert f"{100 * saved['flow']['accuracy']:.2f}" in flow_line
    evaluate_run(flow.root, segments=1, progress=False)  # the user's own count is shown as it is
    table = build_report([flow.root], tmp_path / "report", progress=False).table_md.read_text()
    assert json.loads((flow.eval_dir() / "metrics.json").read_text())["segments"] == 1
    assert "windows" not in next(line for line in table.splitlines() if line.startswith("| flow "))
    fuse_runs([rgb.root, flow.root], tmp_path / "fused", progress=False)  # a fusion gives its sources' windows
    evaluate_run(flow.root, progress=False)
    fuse_runs([rgb.root, flow.root], tmp_path / "fused5", progress=False)
    table = build_report([tmp_path / "fused", tmp_path / "fused5"], tmp_path / "report", progress=False).table_md.read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if "(fusion)" in line}
    assert "windows" not in rows["fused (fusion)"] and "5 flow windows averaged" in rows["fused5 (fusion)"]
