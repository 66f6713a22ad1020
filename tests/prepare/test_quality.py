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
    alone = evaluate(tmp_path / "synth" / "labels.csv", root, workers=1)  # the same scores without a pool
    for name, value in quality.to_dict().items():
        assert value == alone.to_dict()[name] or abs(value - alone.to_dict()[name]) <= 1e-9 * abs(value), name


def test_prepare_bench_shows_progress_over_methods_and_pairs(capsys) -> None:
    from fpar.prepare.benchmark import benchmark

    result = benchmark(size=(64, 48), pairs=2, methods=("dis", "farneback"), progress=True)
    assert [s.method for s in result.speeds] == ["dis", "farneback"]
    err = capsys.readouterr().err
    assert "6/6" in err and "farneback" in err  # (homography + 2 methods) x 2 pairs


def test_evaluate_scores_a_segment_against_its_own_frames_of_the_ground_truth(tmp_path: Path) -> None:
    """The blob appears at frame 6; the segment is frames 6-11. Scored against frames 0-5 of the
    ground truth (segment start dropped), nothing would move and the IoU would be 0."""
    import numpy as np

    from prepare_helpers import camera, render, write_video
    from fpar.data.layout import SYNTH_GT_DIR, SYNTH_VIDEOS_DIR
    from fpar.data.synthetic.dataset import save_ground_truth

    still, _ = render(12, blob=False)
    moving_frames, masks = render(12)
    frames = still[:6] + moving_frames[6:]
    masks[:6] = False
    (tmp_path / SYNTH_VIDEOS_DIR).mkdir()
    (tmp_path / SYNTH_GT_DIR).mkdir()
    write_video(tmp_path / SYNTH_VIDEOS_DIR / "x.mp4", frames)
    save_ground_truth(tmp_path / SYNTH_GT_DIR / "x.npz", masks, np.stack([camera(t) for t in range(12)]))
    (tmp_path / "labels.csv").write_text(f"video,user,label,start,end\n{SYNTH_VIDEOS_DIR}/x.mp4,S1,x,6,11\n")
    root = tmp_path / "root"
    assert prepare(tmp_path / "labels.csv", root, PrepareSettings(size=None), workers=1, progress=False).done == 1
    quality = evaluate(tmp_path / "labels.csv", root)
    assert (quality.samples, quality.pairs) == (1, 5)
    assert quality.iou > 0.3 and quality.recall > 0.3
    assert quality.homography_error < 1.0
