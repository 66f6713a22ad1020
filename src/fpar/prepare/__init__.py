"""Data preparation: raw videos -> frames, warp optical flow and motion maps (DESIGN section 6).

    from fpar.prepare import PrepareSettings, prepare, evaluate
    report = prepare("raw/labels.csv", "data/root", PrepareSettings(flow="dis"), workers=4)
    quality = evaluate("raw/labels.csv", "data/root")   # synthetic data only: needs gt/

`pipeline` runs the jobs (videos are decoded by `fpar.io.video`): `settings` (what a run writes),
`manifest` (the manifest and its journal), `writer` (one sample), `video_run` (one video), `pool`
(work folders, worker processes), `locks`. `flow` computes and quantises warp flow
(`warp_flow_images`: prepare's flow without the pipeline), `motion_maps` thresholds it, `quality`
scores a root against ground truth, `benchmark` times the flow methods.

The names below resolve on first use, so importing one submodule (e.g. `fpar.prepare.motion_maps`)
does not load OpenCV, PyAV or the synthetic renderer (`quality` needs it).
"""

from __future__ import annotations

from fpar.lazy import lazy_exports

_SOURCES = {
    "FLOW_METHODS": "flow",
    "FlowComputer": "flow",
    "dequantise": "flow",
    "quantise": "flow",
    "MotionRule": "motion_maps",
    "motion_map": "motion_maps",
    "PrepareReport": "pipeline",
    "PrepareSettings": "settings",
    "parse_shard": "settings",
    "prepare": "pipeline",
    "Quality": "quality",
    "evaluate": "quality",
}

__all__ = sorted(_SOURCES)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
