"""Synthetic videos end to end: prepare, pass `data check`, and meet the quality targets' direction."""

from __future__ import annotations

import json
from pathlib import Path

from fpar.data.check import check_root
from fpar.data.synthetic import SynthConfig, synthesize
from fpar.prepare.pipeline import PrepareSettings, prepare
from fpar.prepare.quality import QUALITY_NAME, RESIDUAL_TARGET, evaluate


def test_synthetic_videos_prepare_cleanly_and_warp_flow_removes_the_camera(tmp_path: Path, capsys) -> None:
    cfg = SynthConfig(users=["S1"], classes=["take_cup", "shake_box"], clips_per_class=1, width=128,
                      height=96, frames=8)
    synthesize(tmp_path / "synth", cfg, progress=False)
    root = tmp_path / "root"
    report = prepare(tmp_path / "synth" / "labels.csv", root, PrepareSettings(size=None), workers=1,
                     progress=False)
    assert (report.done, report.failed) == (2, [])
    assert check_root(root, frames=7, flow_stack=5).clean
    quality = evaluate(tmp_path / "synth" / "labels.csv", root, progress=True)
    assert "evaluate" in capsys.readouterr().err  # a progress bar (samples)
    assert json.loads(quality.save(root).read_text()) == json.loads(json.dumps(quality.to_dict()))
    assert quality.save(root) == root / QUALITY_NAME == root / "quality.json"
    assert (quality.samples, quality.pairs) == (2, 14)
    assert quality.camera > 0.5 and quality.plain_residual > 0.5  # the camera moves
    assert quality.residual_ratio < RESIDUAL_TARGET
    assert quality.iou > 0.3  # a loose floor at this tiny size; the real target is measured in docs/prepare.md


def test_prepare_bench_shows_progress_over_methods_and_pairs(capsys) -> None:
    from fpar.prepare.benchmark import benchmark

    result = benchmark(size=(64, 48), pairs=2, methods=("dis", "farneback"), progress=True)
    assert [s.method for s in result.speeds] == ["dis", "farneback"]
    err = capsys.readouterr().err
    assert "6/6" in err and "farneback" in err  # (homography + 2 methods) x 2 pairs
