"""Import of the state dicts published with Ego-RNN (rgb, flow, two-stream) into fpar's models.

Ego-RNN saves `model.state_dict()` of its own modules; this maps each key onto fpar's names:

| Ego-RNN                                  | fpar                                          |
|------------------------------------------|-----------------------------------------------|
| `resNet.<torchvision name>`              | `streams.rgb.backbone.<same>`                 |
| `lstm_cell.conv_{i,f,c,o}_xx.{weight,bias}` | `streams.rgb.lstm.x_convs.{i,f,c,o}.*`     |
| `lstm_cell.conv_{i,f,c,o}_hh.weight`     | `streams.rgb.lstm.h_convs.{i,f,c,o}.weight`   |
| `classifier.1.*` (rgb), `fc_action.*` (flow), `fc2.*` (two-stream) | `classifier.fc.*`   |
| flow `conv1`, `bn1`, `layer1..4`         | `streams.flow.backbone.<same>`                |
| two-stream `frameModel.` / `flowModel.` prefix | the rgb / flow rules                    |

Aliases the reference registers twice (`weight_softmax` is `resNet.fc.weight`, `fc` is
`classifier.1`) and the per-stream classifiers a two-stream model never uses are dropped by name.
Anything else unknown, or any fpar key left unfilled, is a CheckpointError listing the keys.
BN's `num_batches_tracked` may be absent (PyTorch before 0.4.1 did not save it); it is not
used in eval mode, so fpar's own value is kept. The reference feeds clips as (T, B, ...); fpar
takes (B, T, ...), which only matters to whoever compares the two (the tests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from fpar.config import ModelConfig
from fpar.data.transforms import NORMALIZATION
from fpar.errors import CheckpointError, ConfigError, FparError
from fpar.models.checkpoints import CheckpointMeta, key_report, save_checkpoint
from fpar.models.registry import build_model
from fpar.models.safe_load import load_state_dict

# (pattern, replacement): a replacement of None drops the key on purpose.
Rule = tuple[str, str | None]


def _rgb_rules(prefix: str, classifier: str | None) -> list[Rule]:
    return [
        (rf"{prefix}resNet\.(.+)", r"streams.rgb.backbone.\1"),
        (rf"{prefix}lstm_cell\.conv_([ifco])_xx\.(weight|bias)", r"streams.rgb.lstm.x_convs.\1.\2"),
        (rf"{prefix}lstm_cell\.conv_([ifco])_hh\.weight", r"streams.rgb.lstm.h_convs.\1.weight"),
        (rf"{prefix}classifier\.1\.(weight|bias)", classifier),
        (rf"{prefix}weight_softmax", None),  # alias of resNet.fc.weight
        (rf"{prefix}fc\.(weight|bias)", None),  # alias of classifier.1
    ]


def _flow_rules(prefix: str, classifier: str | None) -> list[Rule]:
    return [
        (rf"{prefix}(conv1|bn1|layer[1-4])\.(.+)", r"streams.flow.backbone.\1.\2"),
        (rf"{prefix}fc_action\.(weight|bias)", classifier),
    ]


RULES: dict[str, list[Rule]] = {
    "rgb": _rgb_rules("", r"classifier.fc.\1"),
    "flow": _flow_rules("", r"classifier.fc.\1"),
    "two_stream": [
        *_rgb_rules(r"frameModel\.", None),
        *_flow_rules(r"flowModel\.", None),
        (r"fc2\.(weight|bias)", r"classifier.fc.\1"),
        (r"classifier\.1\.(weight|bias)", None),  # alias of fc2
    ],
}


def _rules(model_name: str) -> list[Rule]:
    if model_name not in RULES:
        raise ConfigError(f"Ego-RNN import: model {model_name!r}; expected one of {', '.join(RULES)}")
    return RULES[model_name]


def rename_egornn_keys(state: Mapping[str, Tensor], model_name: str) -> tuple[dict[str, Tensor], list[str]]:
    """Ego-RNN keys renamed to fpar's, and the keys no rule knows (unexpected)."""
    rules = _rules(model_name)
    renamed: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        for pattern, replacement in rules:
            match = re.fullmatch(pattern, key)
            if match:
                if replacement is not None:
                    renamed[match.expand(replacement)] = value
                break
        else:
            unknown.append(key)
    return renamed, unknown


def egornn_config(renamed: Mapping[str, Tensor], model_name: str, frames: int) -> ModelConfig:
    """The ModelConfig the weights imply: classes, memory size and L read from the shapes of the
    state dict `renamed` by `rename_egornn_keys`."""
    needed = {"num_classes": ("classifier.fc.weight", 2, 0, 1)}  # field: (key, its dims, dim read, divisor)
    if model_name != "flow":
        needed["mem_size"] = ("streams.rgb.lstm.h_convs.i.weight", 4, 0, 1)
    if model_name != "rgb":
        needed["flow_stack"] = ("streams.flow.backbone.conv1.weight", 4, 1, 2)  # conv1 takes 2L channels
    values: dict[str, int] = {}
    for field_name, (key, dims, dim, divisor) in needed.items():
        if key not in renamed:
            raise CheckpointError(f"not an Ego-RNN {model_name} state dict: nothing maps to {key}")
        if renamed[key].dim() != dims:
            raise CheckpointError(f"not an Ego-RNN {model_name} state dict: {key} has shape {tuple(renamed[key].shape)}")
        values[field_name] = renamed[key].shape[dim] // divisor
    return ModelConfig(name=model_name, frames=frames, **values)


def check_egornn_fit(model: nn.Module, renamed: Mapping[str, Tensor], unknown: list[str], model_name: str) -> None:
    """CheckpointError unless `rename_egornn_keys`' output (renamed state, unknown Ego-RNN keys)
    fits `model` (on the meta device will do: only shapes are read) strictly, up to
    `num_batches_tracked`, which Ego-RNN's PyTorch did not save."""
    report = key_report(model, renamed)
    report.unexpected = sorted(unknown) + report.unexpected
    report.missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    if report.missing or report.unexpected or report.mismatched:
        raise CheckpointError(f"Ego-RNN {model_name} state dict does not fit fpar's model: {report}")


def import_egornn(
    checkpoint: str | Path,
    model_name: str,
    out: str | Path,
    frames: int = 25,
    class_names: list[str] | None = None,
) -> CheckpointMeta:
    """Convert an Ego-RNN state dict file into an fpar checkpoint at `out`; returns its header.

    `frames` (N) is stored for CAM and the app (Ego-RNN trained with 25); `class_names` default to
    `class_00`, ... since Ego-RNN's files carry none. Image size 224 and Ego-RNN's normalisation.
    """
    _rules(model_name)  # an unknown model name fails before any file is read
    path = Path(checkpoint)
    state = load_state_dict(path, "Ego-RNN state dict")
    renamed, unknown = rename_egornn_keys(state, model_name)
    try:
        cfg = egornn_config(renamed, model_name, frames)
        with torch.device("meta"):  # shapes first: weights that do not fit cost no memory
            check_egornn_fit(build_model(cfg), renamed, unknown, model_name)
    except FparError as exc:  # also a size over the model config's bounds
        raise CheckpointError(f"{path}: {exc}") from exc
    model = build_model(cfg)
    model.load_state_dict(renamed, strict=False)
    names = class_names or [f"class_{i:02d}" for i in range(cfg.num_classes)]
    if len(names) != cfg.num_classes:
        raise CheckpointError(f"{path}: {len(names)} class names given for {cfg.num_classes} classes")
    normalization = {key: NORMALIZATION[key] for key in model.input_keys}  # the reference's: ImageNet's
    meta = CheckpointMeta(config=cfg, class_names=names, normalization=normalization)
    save_checkpoint(out, model, meta)
    return meta
