"""Synthetic egocentric videos with ground truth of what moves (DESIGN section 5).

A table top seen from the head: a skin-coloured hand takes, puts, shakes, stirs or pours a cup,
box or bottle, while the head-mounted camera pans, rolls, zooms and shakes. Users differ in table,
skin, sleeve and light, so leaving one out is a real domain shift. Classes are `verb_object`;
`class_pairs` names the pairs only temporal order separates (take_X / put_X, the same frames
reversed) and the pairs only the object separates (same verb).

    from fpar.data.synthetic import SynthConfig, synthesize, load_ground_truth
    summary = synthesize("runs/synth", SynthConfig.tiny())
"""

from fpar.data.synthetic.dataset import (
    DEFAULT_CLASSES,
    LABELS_FILE,
    TINY_CLASSES,
    SynthConfig,
    SynthSummary,
    config_from_options,
    ground_truth_path,
    load_ground_truth,
    read_video,
    synthesize,
)
from fpar.data.synthetic.motion import OBJECTS, VERBS, class_pairs, split_class

__all__ = [
    "DEFAULT_CLASSES",
    "LABELS_FILE",
    "OBJECTS",
    "TINY_CLASSES",
    "VERBS",
    "SynthConfig",
    "SynthSummary",
    "class_pairs",
    "config_from_options",
    "ground_truth_path",
    "load_ground_truth",
    "read_video",
    "split_class",
    "synthesize",
]
