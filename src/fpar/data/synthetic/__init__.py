"""Synthetic egocentric videos with ground truth of what moves (DESIGN section 5).

A table top seen from the head: a skin-coloured hand takes, puts, shakes, stirs or pours a cup,
box or bottle, while the head-mounted camera pans, rolls, zooms and shakes. Users differ in table,
skin, sleeve and light, so leaving one out is a real domain shift. Classes are `verb_object`;
`class_pairs` names the pairs only temporal order separates (take_X / put_X, the same frames
reversed) and the pairs only the object separates (same verb).

    from fpar.data.synthetic import SynthConfig, synthesize, load_ground_truth
    summary = synthesize("runs/synth", SynthConfig.tiny())
"""

from __future__ import annotations

from fpar.lazy import lazy_exports

# Names resolve on first use, so `fpar.data.synthetic.presets` (the CLI's help reads it) can be
# imported without PyAV, OpenCV or numpy.
_SOURCES = {
    "DEFAULT_CLASSES": "presets",
    "TINY_CLASSES": "presets",
    "OBJECTS": "presets",
    "VERBS": "presets",
    "SynthConfig": "presets",
    "split_class": "presets",
    "class_pairs": "motion",
    "SynthSummary": "dataset",
    "config_from_options": "dataset",
    "ground_truth_path": "dataset",
    "load_ground_truth": "dataset",
    "synthesize": "dataset",
}


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)


__all__ = [
    "DEFAULT_CLASSES",
    "OBJECTS",
    "TINY_CLASSES",
    "VERBS",
    "SynthConfig",
    "SynthSummary",
    "class_pairs",
    "config_from_options",
    "ground_truth_path",
    "load_ground_truth",
    "split_class",
    "synthesize",
]
