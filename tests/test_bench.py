"""`fpar bench`: the quick run's report is whole, the baseline computes what fpar computes, and the
timing rule (warm-up excluded, candidates in turns) holds. No speed is asserted: figures depend on
the machine and its load, and speed targets live in the bench, not in tests."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fpar.bench.reference import ReferenceStyle
from fpar.bench.run import DEMO, SECTIONS, problems
from fpar.bench.timing import Repeats, interleaved
from fpar.bench.table import tables
import fpar.bench.training as training
from fpar.bench.training import STAGES, Scale, feedback_costs, feedback_turns
from fpar.cli import app
from fpar.config import ModelConfig, load_recipe
from fpar.data.datasets import DATASETS
from fpar.data.frame_cache import ENV_CACHE_DIR
from fpar.explain.cam import METHODS
from fpar.models.registry import build_model, list_models


@pytest.mark.slow
def test_quick_bench_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    user_cache = set(Path(os.environ[ENV_CACHE_DIR]).rglob("*.npy"))
    result = CliRunner().invoke(app, ["bench", "--quick", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "incomplete" not in result.output
    report = json.loads(out.read_text())
    assert problems(report) == []
    assert report["quick"] is True and report["machine"]["timed_repeats"] == 1
    prepare = {(r["method"], r["workers"]) for r in report["prepare"]["rows"]}
    assert prepare == {("dis", 1), ("dis", 2)}
    assert all(set(r["share"]) == {"decode", "homography", "dense_flow", "motion_maps", "image_writes"}
               and math.isclose(sum(r["share"].values()), 1.0) for r in report["prepare"]["rows"])
    loading = {(r["dataset"], r["workers"]) for r in report["loading"]["rows"]}
    assert loading == {(kind.__name__, w) for kind in DATASETS.values() for w in (0, 1, 2)}
    assert all({"no_cache_clips_per_s", "no_cache_speedup"} <= set(r) for r in report["loading"]["rows"])
    assert 0 < report["loading"]["loader_wait"]["wait_share"] < 1
    assert set(Path(os.environ[ENV_CACHE_DIR]).rglob("*.npy")) == user_cache  # the bench caches in its own folder
    trained = {(r["model"], r["stage"], r["feedback_mode"] or "two_pass") for r in report["training"]}
    assert trained == {(name, stage, mode) for name, mode, stage, _ in STAGES}
    rgb_rows = [r for r in report["training"] if r["model"].startswith("rgb")]
    assert rgb_rows and all(r["equal_within_tolerance"] and "reference" in r["step_s"] for r in rgb_rows)
    assert set(report["feedback"]) == {"quick/two_pass", "quick/previous_frame"}
    assert all({"ratio_fp32", "ratio_bf16"} <= set(e) for e in report["feedback"].values())  # every variant timed
    assert {"floor_fp32", "floor_bf16"} <= set(report["feedback"]["quick/previous_frame"])
    assert {r["model"] for r in report["inference"]["rows"]} == set(list_models())
    assert {r["method"] for r in report["cam"]["rows"]} == set(METHODS)


def test_feedback_costs_divide_the_steps_timed_in_one_set_of_turns() -> None:
    """x rgb_ms per variant from `feedback_turns` (the three steps in the same turns), not from the
    rows of (c), timed apart; the floor adds the frame chain's extra forward to rgb_ms's step."""
    def row(model: str, mode: str | None, stage: str, step_s: dict, **extra: float) -> dict:
        return {"model": model, "feedback_mode": mode, "stage": stage, "scale": "s", "step_s": step_s,
                "saved_activations_mb": 10.0, **extra}

    rows = [row("rgb", None, "stage1", {"reference": 1.0, "fp32": 1.0, "compile": 0.5}),
            row("rgb_ms", None, "stage3_set", {"reference": 2.0, "fp32": 9.0, "bf16": 9.0}),
            row("rgb_ms_feedback", "two_pass", "stage3", {"reference": 3.0, "fp32": 1.5, "bf16": 0.8}, pass1_s=0.3),
            row("rgb_ms_feedback", "previous_frame", "stage3", {"reference": 2.5, "fp32": 1.2, "bf16": 0.7},
                frame_chain={"fp32": {"chain_s": 0.5, "batched_s": 0.4}, "bf16": {"chain_s": 0.3, "batched_s": 0.2},
                             "channels_last": {"chain_s": 0.3, "batched_s": 0.2}})]
    turns = {"s": {"fp32": {"rgb_ms": 1.0, "two_pass": 1.5, "previous_frame": 1.2},
                   "bf16": {"rgb_ms": 0.5, "two_pass": 0.8, "previous_frame": 0.7}}}
    costs = feedback_costs(rows, turns)
    assert set(costs) == {"s/two_pass", "s/previous_frame"}
    two_pass, previous = costs["s/two_pass"], costs["s/previous_frame"]
    assert {k for k in two_pass if k.startswith("ratio_")} == {"ratio_fp32", "ratio_bf16"}
    assert two_pass["ratio_fp32"] == pytest.approx(1.5) and two_pass["ratio_bf16"] == pytest.approx(1.6)
    assert two_pass["step_s"]["bf16"] == {"rgb_ms": 0.5, "two_pass": 0.8}
    assert two_pass["pass1_share_fp32"] == pytest.approx(0.2)
    assert previous["ratio_bf16"] == pytest.approx(1.4)
    # the floor: rgb_ms's step plus the frame chain's extra forward; none where no turns were timed
    assert {k for k in previous if k.startswith("floor_")} == {"floor_fp32", "floor_bf16"}
    assert previous["floor_fp32"] == pytest.approx(1.1) and previous["floor_bf16"] == pytest.approx(1.2)
    assert not any(k.startswith("floor_") for k in two_pass)
    [table] = tables({"feedback": costs})
    assert [c.header for c in table.columns][1:3] == ["x rgb_ms fp32", "x rgb_ms bf16"]
    assert list(table.columns[2].cells) == ["1.60", "1.40 (>= 1.20)"]


def test_feedback_turns_time_the_three_steps_of_each_variant_together(monkeypatch: pytest.MonkeyPatch) -> None:
    turns: list[list[str]] = []

    def spy(candidates, repeats, sync):
        turns.append(list(candidates))
        return {key: 1.0 for key in candidates}

    monkeypatch.setattr(training, "interleaved", spy)
    torch.set_num_threads(1)
    scale = Scale("tiny", image_size=64, frames=2, batch=1, mem_size=8)
    timed = feedback_turns(scale, torch.device("cpu"), Repeats(0, 1), ("fp32", "bf16_channels_last", "compile"))
    assert turns == [["rgb_ms", "two_pass", "previous_frame"]] * 2
    assert set(timed) == {"fp32", "bf16_channels_last"}


def test_problems_names_missing_sections_and_figures_that_are_not_positive() -> None:
    report = {name: {"x": 1.0} for name in SECTIONS}
    assert problems(report) == []
    report["cam"] = {"rows": [{"seconds": 0.0}, {"seconds": float("nan")}]}
    report["machine"] = {"load_average_start": 0.0}  # a label, not a figure: zero is fine
    del report["feedback"]
    found = problems(report)
    assert found[0] == "section 'feedback' is missing or empty"
    assert any(p.startswith("cam.rows[0].seconds") for p in found)
    assert any(p.startswith("cam.rows[1].seconds") for p in found)
    assert len(found) == 3


def test_interleaved_times_candidates_in_turns_after_their_warm_up() -> None:
    calls: list[str] = []
    seconds = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, Repeats(2, 3))
    assert calls == ["a", "b"] * 5
    assert set(seconds) == {"a", "b"} and all(s >= 0 for s in seconds.values())


@pytest.mark.parametrize(("name", "mode"), [("rgb", "two_pass"), ("rgb_ms", "two_pass"),
                                            ("rgb_ms_feedback", "two_pass"), ("rgb_ms_feedback", "previous_frame")])
def test_reference_style_baseline_computes_what_the_model_computes(name: str, mode: str) -> None:
    """Frame by frame with eight gate convs (the baseline) vs batched frames and fused gates (fpar)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, num_classes=5, frames=3, image_size=64, mem_size=16,
                                    feedback_mode=mode)).eval()
    for param in model.parameters():  # wake the zero-initialised feedback convs, spread the logits
        param.data.add_(0.05 * torch.randn_like(param))
    batch = {"rgb": torch.randn(2, 3, 3, 64, 64)}
    with torch.no_grad():
        ours, theirs = model(batch), ReferenceStyle(model)(batch)
    assert ours.logits.std() > 1e-3  # outputs that vary, so equality means something
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.attention, theirs.attention, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.feature_maps, theirs.feature_maps, rtol=1e-4, atol=1e-5)
    if ours.ms_logits is not None:
        torch.testing.assert_close(ours.ms_logits, theirs.ms_logits, rtol=1e-4, atol=1e-5)


def test_bench_refuses_an_unknown_section_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "fpar.cli", "bench", "--only", "loading,nope"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "--only loading,nope: expected some of prepare,loading,training,inference,cam" in result.stdout


def test_repeats_sets_the_timed_repeats_and_keeps_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from fpar.bench import run

    monkeypatch.setattr(run, "_run", lambda plan, *args: plan)  # the plan the sections would run with
    assert run.run_bench(quick=True, repeats=5).repeats == Repeats(warmup=run.QUICK.repeats.warmup, repeats=5)
    assert run.run_bench(quick=False).repeats == run.FULL.repeats


def test_bench_refuses_zero_repeats_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "fpar.cli", "bench", "--quick", "--repeats", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "--repeats 0: expected at least 1" in result.stdout


@pytest.mark.slow
def test_only_runs_the_asked_sections_and_checks_just_those(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "loading", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {key for key in SECTIONS if report.get(key)} == {"machine", "loading"}
    assert problems(report) == []
    report["sections"] = ["loading", "cam"]
    assert problems(report) == ["section 'cam' is missing or empty"]


def test_demo_scale_is_the_demo_recipes_size() -> None:
    """The bench's "demo" rows time what `fpar demo` trains: the RGB recipe's frames, side, batch and
    ConvLSTM size (a mismatch once had the bench time a 64-channel cell against the demo's 128)."""
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "configs" / "demo" / "rgb.yaml")
    assert (DEMO.frames, DEMO.image_size, DEMO.batch, DEMO.mem_size) == (
        recipe.data.frames, recipe.data.image_size, recipe.data.batch_size, recipe.model.mem_size)
