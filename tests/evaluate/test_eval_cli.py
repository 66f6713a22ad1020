"""The `fpar eval` and `fpar report` verbs: results printed, user errors in one line with exit 1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from eval_kit import make_run
from fpar.cli import app, main
from fpar.errors import FparError
from fpar.evaluate.evaluation import evaluate_run

runner = CliRunner()


def test_eval_verb_prints_accuracy_and_pairs(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    result = runner.invoke(app, ["eval", str(run.root), "--device", "cpu"], terminal_width=300)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run.eval_dir() / "metrics.json").read_text())
    assert f"accuracy {100 * metrics['accuracy']:.2f}%" in result.output
    assert "order-only pairs" in result.output and "(protocol: val)" in result.output


def test_fuse_verb_needs_out_and_parses_weights(tmp_path, prepared_root) -> None:
    rgb = make_run(tmp_path / "rgb", prepared_root, "rgb")
    flow = make_run(tmp_path / "flow", prepared_root, "flow")
    args = ["eval", "--fuse", str(rgb.root), str(flow.root), "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 1  # FparError: --fuse needs --out
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "f"), "--weights", "1,x"])
    assert bad.exit_code == 1 and "x" in str(bad.exception)
    good = runner.invoke(app, [*args, "--out", str(tmp_path / "f"), "--weights", "1,1.5"], terminal_width=300)
    assert good.exit_code == 0, good.output
    assert json.loads((tmp_path / "f" / "metrics.json").read_text())["fusion"]["weights"] == [1.0, 1.5]


def test_fusion_options_without_fuse_are_refused_not_ignored(tmp_path) -> None:
    # refused before any run is read: the user meant to fuse and forgot --fuse
    for extra in (["--weights", "1,1.5"], ["--out", str(tmp_path / "f")]):
        result = runner.invoke(app, ["eval", str(tmp_path / "a"), str(tmp_path / "b"), *extra])
        assert result.exit_code == 1 and not (tmp_path / "f").exists()
        assert str(result.exception).startswith(f"{extra[0]} needs --fuse (late fusion of the runs)")
    both = runner.invoke(app, ["eval", str(tmp_path / "a"), "--weights", "1,1.5", "--out", str(tmp_path / "f")])
    assert str(both.exception).startswith("--weights and --out need --fuse")


def test_a_batch_size_under_one_is_refused(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    for size in ("0", "-1"):  # 0 used to mean the recipe's batch size; -1 reached the DataLoader
        result = runner.invoke(app, ["eval", str(run.root), "--device", "cpu", "--batch-size", size])
        assert result.exit_code == 2 and "--batch-size" in result.output and not run.eval_dir().exists()
    with pytest.raises(FparError, match="^batch size must be at least 1, got 0$"):
        evaluate_run(run.root, batch_size=0, progress=False)


def test_report_verb_writes_the_table(tmp_path, prepared_root) -> None:
    run = make_run(tmp_path / "rgb", prepared_root, "rgb")
    result = runner.invoke(app, ["report", str(run.root), "--out", str(tmp_path / "report"), "--device", "cpu"],
                           terminal_width=300)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "table.md").is_file() and "52.56" in result.output


def test_eval_of_a_folder_without_a_run_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    monkeypatch.setattr("sys.argv", ["fpar", "eval", str(empty)])
    try:
        main()
    except SystemExit as exit_:
        assert exit_.code == 1
    else:
        raise AssertionError("fpar eval of an empty folder did not fail")
    out = capsys.readouterr().out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and str(empty / "recipe.yaml") in out.replace("\n", "")


def test_eval_help_names_the_folder_it_writes() -> None:
    """Typer's Markdown help drops bare `<...>` as HTML: the folder pattern must survive."""
    result = runner.invoke(app, ["eval", "--help"], terminal_width=300)
    assert result.exit_code == 0
    assert "RUN/eval/<checkpoint>-<split>/" in result.output


def test_a_checkpoint_file_given_as_a_run_dir_points_at_its_folder(tmp_path) -> None:
    checkpoint = tmp_path / "rgb" / "best.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"PK")
    result = runner.invoke(app, ["eval", str(checkpoint)])
    assert result.exit_code == 1
    assert str(result.exception) == (f"{checkpoint}: a file, not a run dir; give the run's folder ({checkpoint.parent}) "
                                     "and pick its checkpoint with --checkpoint best|last")
