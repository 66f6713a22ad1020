"""Data preparation: raw videos -> frames, warp optical flow and motion maps (DESIGN section 6).

    from fpar.prepare import PrepareSettings, prepare, evaluate
    report = prepare("raw/labels.csv", "data/root", PrepareSettings(flow="dis"), workers=4)
    quality = evaluate("raw/labels.csv", "data/root")   # synthetic data only: needs gt/

`pipeline` runs the jobs, `video` decodes, `flow` computes and quantises warp flow,
`motion_maps` thresholds it, `quality` scores a root against ground truth, `benchmark` times the
flow methods.
"""

from fpar.prepare.flow import FLOW_METHODS, FlowComputer, dequantise, quantise
from fpar.prepare.motion_maps import MotionRule, motion_map
from fpar.prepare.pipeline import PrepareReport, PrepareSettings, parse_shard, prepare
from fpar.prepare.quality import Quality, evaluate

__all__ = [
    "FLOW_METHODS",
    "FlowComputer",
    "MotionRule",
    "PrepareReport",
    "PrepareSettings",
    "Quality",
    "dequantise",
    "evaluate",
    "motion_map",
    "parse_shard",
    "prepare",
    "quantise",
]
